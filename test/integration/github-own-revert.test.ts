/**
 * Lockstep's own revert is the fleet's way back: it is never taken for an update (detection), but
 * the merge use case merges it (with the same guards), records it as "revert.merged" linked to the
 * failed rollout, and refuses look-alikes: GitHub's Revert button, and a "revert" whose lock is not
 * the one from before the merge it names. Local GitHub on a real bare repo.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import { detectPendingUpdate } from "../../github/detect.js";
import { MergeGuardError } from "../../github/merge.js";
import { readRevertMarker } from "../../github/own-revert.js";
import { GitHubService, NotAnUpdateError } from "../../github/service.js";
import { AuditEvent, lockHash } from "../../protocol/index.js";
import { startGitHubHarness, TEST_TOKEN, type GitHubHarness } from "../github/harness.js";

describe("Lockstep's own revert (GitHubService)", () => {
  let gh: GitHubHarness;
  let service: GitHubService;
  const events: AuditEvent[] = [];
  let date = Date.parse("2026-11-10T12:00:00Z");

  /** Open, merge and revert (as a failed rollout would) one lock update; returns the revert PR. */
  async function failedUpdate(rolloutId: string): Promise<{ revertPr: number; mergeCommit: string; updatePr: number; lockBefore: string }> {
    const lockBefore = gh.fleet.show(gh.fleet.head(), "flake.lock");
    date += 86_400_000;
    gh.fleet.bumpInput("nixpkgs", new Date(date));
    const upd = gh.fleet.lockUpdateBranch(`update_flake_lock_action_${rolloutId}`);
    const n = await gh.server.openPullRequest({ head: upd.branch, title: "flake.lock: Update", labels: ["automated", "dependencies"], body: upd.prBody });
    gh.server.setStatus(upd.sha, "success", "ci/build");
    const { result } = await service.merge(n, { ci: "success", minAgeMs: 0 });
    const revert = await service.revertForRollout({ rolloutId, commit: result.mergeCommitSha, prNumber: n, reason: "canary alpha failed" });
    return { revertPr: revert.number, mergeCommit: result.mergeCommitSha, updatePr: n, lockBefore };
  }

  beforeAll(async () => {
    gh = await startGitHubHarness({ hosts: ["alpha"] });
    service = new GitHubService({ owner: "acme", repo: "fleet", token: TEST_TOKEN, apiBaseUrl: gh.server.url, mergeableRetryDelayMs: 10 }, pino({ level: "silent" }), {
      audit: (e) => void events.push(e),
    });
  });
  afterEach(async () => {
    for (const n of gh.server.openPullNumbers()) await gh.server.closePullRequest(n);
  });
  afterAll(async () => {
    await service?.close();
    await gh?.stop();
  });

  it("is never the pending update, and merges as the way back: guards, marker, 'revert.merged' linked to the rollout", async () => {
    const f = await failedUpdate("r-broken1");
    const pr = gh.server.pullRequest(f.revertPr);
    expect(readRevertMarker(pr.body)).toEqual({ merge: f.mergeCommit, rollout: "r-broken1", pr: f.updatePr });
    expect((await detectPendingUpdate(gh.client, gh.config)).pending).toBeNull();
    expect(await service.openRevert()).toMatchObject({ number: f.revertPr, marker: { rollout: "r-broken1" } });

    // The same guards as an update: CI must not be failing / must pass.
    const described = await service.describeMergeable(f.revertPr);
    expect(described.revert?.rollout).toBe("r-broken1");
    expect(described.update.lockHash).toBe(lockHash(f.lockBefore));
    const refused = await service.merge(f.revertPr, { ci: "success", minAgeMs: 0 }).then(() => null, (e: unknown) => e);
    expect(refused).toBeInstanceOf(MergeGuardError);
    gh.server.setStatus(gh.fleet.head(pr.headRef), "success", "ci/build");

    events.length = 0;
    const { result, revert } = await service.merge(f.revertPr, { ci: "success", minAgeMs: 0 }, undefined, "api:admin");
    expect(revert?.rollout).toBe("r-broken1");
    expect(gh.server.pullRequest(f.revertPr).merged).toBe(true);
    expect(gh.fleet.show(result.mergeCommitSha, "flake.lock")).toBe(f.lockBefore);
    await new Promise((r) => setImmediate(r));
    const merged = events.filter((e) => e.action === "revert.merged");
    expect(merged).toHaveLength(1);
    expect(events.filter((e) => e.action === "pr.merged")).toHaveLength(0);
    expect(merged[0]).toMatchObject({ actor: "api:admin", details: { prNumber: f.revertPr, rolloutId: "r-broken1", revertedPr: f.updatePr, revertedCommit: f.mergeCommit, mergeCommitSha: result.mergeCommitSha } });
    AuditEvent.parse(merged[0]);
  });

  it("refuses GitHub's Revert-button PRs and a forged revert whose lock is not the one before the merge it names", async () => {
    const f = await failedUpdate("r-broken2");
    const pr = gh.server.pullRequest(f.revertPr);
    // Same branch prefix and marker, but a lock the base branch never had before that merge.
    const forgedLock = f.lockBefore.replace(/"lastModified": (\d+)/, (_m, v) => `"lastModified": ${Number(v) + 3}`);
    gh.fleet.commit({ "flake.lock": forgedLock }, "forged lock", "lockstep/revert-forged");
    const forged = await gh.server.openPullRequest({ head: "lockstep/revert-forged", title: "Revert flake.lock", body: pr.body ?? "" });
    gh.server.setStatus(gh.fleet.head("lockstep/revert-forged"), "success", "ci/build");
    const err = await service.merge(forged, { ci: "success", minAgeMs: 0 }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(NotAnUpdateError);
    expect((err as Error).message).toMatch(/not the one from before/);

    // GitHub's Revert button: neither an update nor Lockstep's revert.
    gh.fleet.commit({ "flake.lock": f.lockBefore }, `Revert "flake.lock: Update"`, "revert-12-update");
    const button = await gh.server.openPullRequest({ head: "revert-12-update", title: `Revert "flake.lock: Update"`, body: "Reverts acme/fleet#12" });
    const e2 = await service.merge(button, { ci: "ignore", minAgeMs: 0 }).then(() => null, (e: unknown) => e);
    expect(e2).toBeInstanceOf(NotAnUpdateError);
    expect(gh.server.pullRequest(button).merged).toBe(false);
    expect(gh.server.pullRequest(forged).merged).toBe(false);
  });
});
