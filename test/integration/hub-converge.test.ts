/**
 * The converge use case (hub/converge.ts) on the local GitHub and a simulated fleet: a lock update
 * is merged and fails, Lockstep reverts it; merging the revert (by the API's use case, by automatic
 * mode once CI passes) or a revert committed directly converges every host without a switch, since
 * they all run what the restored lock builds. The rollout engine and GitHub service are the real ones.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { GitHubService } from "../../github/service.js";
import { RevertConverger } from "../../hub/converge.js";
import { lockHash, type AuditEvent, type RolloutProgress } from "../../protocol/index.js";
import { RolloutService } from "../../rollout/service.js";
import { RolloutStore } from "../../rollout/store.js";
import { FakeFleet } from "../support/fake-fleet.js";
import { startGitHubHarness, TEST_TOKEN, type GitHubHarness } from "../github/harness.js";

const HOSTS = ["h0", "h1", "h2"];
const FAST = { soakMs: 0, canary: 0, stepTimeouts: { pull: 5000, switch: 5000, test: 5000 }, healthTimeoutMs: 3000 };

describe("converging the fleet after Lockstep's revert (hub/converge.ts)", () => {
  let gh: GitHubHarness;
  const stops: Array<() => Promise<void> | void> = [];
  let date = Date.parse("2026-11-10T12:00:00Z");

  beforeAll(async () => {
    gh = await startGitHubHarness({ hosts: ["alpha"] });
  });
  afterEach(async () => {
    for (const s of stops.splice(0).reverse()) await s();
    for (const n of gh.server.openPullNumbers()) await gh.server.closePullRequest(n);
  });
  afterAll(async () => gh?.stop());

  /** A fleet on the current head whose systems depend on flake.lock only, with real GitHub and rollouts. */
  function world(opts: { revertMode?: "pr" | "commit"; mergeAutomatically?: boolean } = {}) {
    const lockAt = (c: string) => {
      try {
        return lockHash(gh.fleet.show(c, "flake.lock"));
      } catch {
        return undefined;
      }
    };
    const head = gh.fleet.head();
    const fleet = new FakeFleet({
      hosts: HOSTS.map((host, i) => ({ host, priority: i, commit: head })),
      lockOf: lockAt,
      systemOf: (host, c) => `/nix/store/${host}-${c ? lockAt(c) : "none"}`,
    });
    const github = new GitHubService({ owner: "acme", repo: "fleet", token: TEST_TOKEN, apiBaseUrl: gh.server.url, mergeableRetryDelayMs: 10, revertMode: opts.revertMode ?? "pr" }, pino({ level: "silent" }), {
      audit: (e) => void fleet.publishAudit(e),
    });
    // The hub publishes what the watcher says is the head on fleet/expected: the fake fleet's expected head.
    github.watcher.on("expected", (e) => fleet.setExpectedHead(e.headCommit));
    const dir = mkdtempSync(join(tmpdir(), "lockstep-converge-hub-"));
    const rollouts = new RolloutService({ fleet, store: new RolloutStore(dir), revert: github.revertForRollout, progressIntervalMs: 5 });
    const converger = new RevertConverger({ github, rollouts, log: pino({ level: "silent" }), rolloutDefaults: { strategy: FAST }, mergeAutomatically: opts.mergeAutomatically ?? false });
    converger.start();
    // Rollout and GitHub audit events, as the hub publishes them on fleet/events.
    const audits: AuditEvent[] = fleet.audits;
    stops.push(async () => {
      converger.stop();
      await rollouts.close();
      await github.close();
      fleet.close();
      rmSync(dir, { recursive: true, force: true });
    });
    return { fleet, github, rollouts, converger, audits };
  }

  /** Merge an update and deploy it; the canary's build fails, the rollout reverts. Returns the failed rollout. */
  async function failedRollout(w: ReturnType<typeof world>): Promise<RolloutProgress> {
    date += 86_400_000;
    gh.fleet.bumpInput("nixpkgs", new Date(date));
    const upd = gh.fleet.lockUpdateBranch(`update_flake_lock_action_${date}`);
    const n = await gh.server.openPullRequest({ head: upd.branch, title: "flake.lock: Update", labels: ["automated", "dependencies"], body: upd.prBody });
    gh.server.setStatus(upd.sha, "success", "ci/build");
    const { result } = await w.github.merge(n, { ci: "success", minAgeMs: 0 });
    await w.github.watcher.checkNow();
    w.fleet.failBuild("h1");
    const id = w.rollouts.start({ commit: result.mergeCommitSha, prNumber: n, strategy: { ...FAST, canary: ["h1"] }, onFailure: "rollback-all", revertOnFailure: true }, "alice");
    const failed = await w.rollouts.wait(id);
    w.fleet.failBuild("h1", false);
    expect(failed.state, JSON.stringify(failed, null, 1)).toBe("rolled-back");
    return failed;
  }

  it("merge-revert: merges the revert PR and converges every host by pulling only (no switch), linked to the failed rollout", async () => {
    const w = world();
    const failed = await failedRollout(w);
    const revertPr = failed.revertPr!.number;
    expect(revertPr).toBeGreaterThan(0);
    const switchesBefore = HOSTS.map((h) => w.fleet.ran(h, "switch"));
    gh.server.setStatus(gh.fleet.head(gh.server.pullRequest(revertPr).headRef), "success", "ci/build");

    const started = await w.converger.mergeRevert({ requestedBy: "api:admin" });
    expect(started).toMatchObject({ prNumber: revertPr, converges: failed.id });
    const final = await w.rollouts.wait(started.rolloutId);
    expect(final.state, JSON.stringify(final, null, 1)).toBe("completed");
    expect(final.converges).toBe(failed.id);
    expect(HOSTS.map((h) => w.fleet.ran(h, "switch"))).toEqual(switchesBefore);
    for (const h of HOSTS) {
      expect(final.hosts[h]!.reason, h).toMatch(/pull only: system already matches/);
      for (const c of ["git", "lock", "system", "tests"] as const) expect(w.fleet.host(h)!.compartments[c]?.status, `${h} ${c}`).toBe("ok");
    }
    expect(gh.server.pullRequest(revertPr).merged).toBe(true);
    // One story: the failure, the revert, its merge and the convergence, each once, linked by the rollout id.
    const story = w.audits.filter((e) => e.details?.rolloutId === failed.id || e.details?.converges === failed.id);
    const count = (action: string) => story.filter((e) => e.action === action).length;
    expect(count("revert.opened")).toBe(1);
    expect(count("revert.merged")).toBe(1);
    expect(story.filter((e) => e.action === "rollout.started" && e.details?.converges === failed.id)).toHaveLength(1);
  });

  it("refuses to merge a lock update through merge-revert, and says when there is no revert to merge", async () => {
    const w = world();
    await expect(w.converger.mergeRevert({ requestedBy: "api:admin" })).rejects.toMatchObject({ code: "not-found" });
    gh.fleet.bumpInput("nixpkgs", new Date((date += 86_400_000)));
    const upd = gh.fleet.lockUpdateBranch(`update_flake_lock_action_${date}`);
    const n = await gh.server.openPullRequest({ head: upd.branch, title: "flake.lock: Update", labels: ["automated", "dependencies"], body: upd.prBody });
    await expect(w.converger.mergeRevert({ prNumber: n, requestedBy: "api:admin" })).rejects.toMatchObject({ code: "not-an-update" });
    expect(gh.server.pullRequest(n).merged).toBe(false);
  });

  it("automatic.mergeReverts merges the revert once its CI passes, not before", async () => {
    const w = world({ mergeAutomatically: true });
    const failed = await failedRollout(w);
    const revertPr = failed.revertPr!.number;
    const head = gh.fleet.head(gh.server.pullRequest(revertPr).headRef);
    gh.server.setStatus(head, "pending", "ci/build");
    await w.github.watcher.checkNow();
    await new Promise((r) => setImmediate(r));
    expect(gh.server.pullRequest(revertPr).merged).toBe(false);

    const converged = new Promise<RolloutProgress>((resolve) => w.rollouts.events.on("done", (p) => p.converges === failed.id && resolve(p)));
    gh.server.setStatus(head, "success", "ci/build");
    await w.github.watcher.checkNow();
    const final = await converged;
    expect(final.state, JSON.stringify(final, null, 1)).toBe("completed");
    expect(gh.server.pullRequest(revertPr).merged).toBe(true);
    expect(w.audits.find((e) => e.action === "revert.merged")?.actor).toBe("lockstep automatic (mergeReverts)");
  });

  it("a revert committed directly (revertMode commit) converges the fleet as soon as the failed rollout ends", async () => {
    const w = world({ revertMode: "commit" });
    const converged = new Promise<RolloutProgress>((resolve) => w.rollouts.events.on("done", (p) => p.converges !== undefined && resolve(p)));
    const failed = await failedRollout(w);
    expect(failed.revertPr).toMatchObject({ number: 0, commit: gh.fleet.head() });
    const final = await converged;
    expect(final.converges).toBe(failed.id);
    expect(final.commit).toBe(failed.revertPr!.commit);
    expect(final.state, JSON.stringify(final, null, 1)).toBe("completed");
    for (const h of HOSTS) expect(final.hosts[h]!.reason, h).toMatch(/pull only/);
  });
});
