/**
 * GitHubService, what the lockstep-github config node owns and pr-merge / rollback call, against
 * the local GitHub on a real bare repo: a real lock-update PR is described (lock diff, CI), each
 * merge guard refuses with its reason, a PR that is not a lock update is refused, a moved head is
 * refused, a good merge is a real merge commit, and the rollout engine's revert hook opens a PR
 * that restores flake.lock.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import { MergeGuardError, MergeRefusedError } from "../../github/merge.js";
import { GitHubService, NotAnUpdateError } from "../../github/service.js";
import { AuditEvent } from "../../protocol/schemas.js";
import { startGitHubHarness, TEST_TOKEN, type GitHubHarness } from "../github/harness.js";

describe("GitHubService (behind the lockstep-github node)", () => {
  let gh: GitHubHarness;
  let connection: GitHubService;
  let update: { number: number; headSha: string };

  beforeAll(async () => {
    gh = await startGitHubHarness({ hosts: ["alpha"] });
    connection = new GitHubService(
      { owner: "acme", repo: "fleet", token: TEST_TOKEN, apiBaseUrl: gh.server.url, mergeableRetryDelayMs: 10 },
      pino({ level: "silent" }),
    );
    gh.fleet.bumpInput("nixpkgs");
    const branch = gh.fleet.lockUpdateBranch();
    const number = await gh.server.openPullRequest({ head: branch.branch, title: "flake.lock: Update", labels: ["automated", "dependencies"], body: branch.prBody });
    update = { number, headSha: branch.sha };
  });

  afterAll(async () => {
    await connection?.close();
    await gh?.stop();
  });

  it("audits a failed GitHub call once per kind of failure (an outage does not flood the audit log)", async () => {
    const events: AuditEvent[] = [];
    const audited = new GitHubService(
      { owner: "acme", repo: "fleet", token: TEST_TOKEN, apiBaseUrl: gh.server.url, mergeableRetryDelayMs: 10 },
      pino({ level: "silent" }),
      { audit: (e) => void events.push(e) },
    );
    try {
      await audited.describeUpdate(update.number);
      expect(events).toEqual([]);
      for (let i = 0; i < 3; i++) await audited.describeUpdate(9999).catch(() => undefined);
      await new Promise((r) => setImmediate(r));
      expect(events.map((e) => [e.action, e.target, e.details?.code, e.details?.status])).toEqual([["github.failed", "acme/fleet", "github-not-found", 404]]);
      AuditEvent.parse(events[0]);
    } finally {
      await audited.close();
    }
  });

  it("describes a lock-update PR: lock diff, CI state, head", async () => {
    const u = await connection.describeUpdate(update.number);
    expect(u.headSha).toBe(update.headSha);
    expect(u.ci.state).toBe("pending");
    expect(u.lockDiff.updated.map((c) => c.input)).toContain("nixpkgs");
  });

  it("refuses while a guard fails, saying which", async () => {
    const failures = async (p: Promise<unknown>) => {
      const err = await p.then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(MergeGuardError);
      return (err as MergeGuardError).failures.map((f) => f.guard);
    };
    expect(await failures(connection.merge(update.number, { ci: "success", minAgeMs: 0 }))).toEqual(["ci-not-green"]);
    gh.server.setStatus(update.headSha, "failure", "ci/build");
    expect(await failures(connection.merge(update.number, { ci: "not-failing", minAgeMs: 0 }))).toEqual(["ci-not-green"]);
    gh.server.setStatus(update.headSha, "success", "ci/build");
    expect(await failures(connection.merge(update.number, { ci: "success", minAgeMs: 3_600_000 }))).toEqual(["too-young"]);
    expect(gh.server.pullRequest(update.number).merged).toBe(false);
  });

  it("refuses a head that moved since it was checked, and a PR that is not a lock update", async () => {
    const moved = await connection.merge(update.number, { ci: "success", minAgeMs: 0 }, "f".repeat(40)).then(() => null, (e: unknown) => e);
    expect(moved).toBeInstanceOf(MergeRefusedError);
    expect((moved as MergeRefusedError).reason).toBe("head-moved");

    gh.fleet.commit({ "hosts/alpha.nix": "{ fail = false; message = \"tweak\"; }\n" }, "alpha: tweak", "tweak-alpha");
    const other = await gh.server.openPullRequest({ head: "tweak-alpha", title: "alpha: tweak" });
    await expect(connection.describeUpdate(other)).rejects.toBeInstanceOf(NotAnUpdateError);
    expect(gh.server.pullRequest(update.number).merged).toBe(false);
  });

  it("merges for real when the guards hold, and the revert hook restores flake.lock in a PR", async () => {
    const lockBefore = gh.fleet.show(gh.fleet.head(), "flake.lock");
    const { result } = await connection.merge(update.number, { ci: "success", minAgeMs: 0 }, update.headSha);
    expect(gh.server.pullRequest(update.number).merged).toBe(true);
    expect(gh.fleet.head()).toBe(result.mergeCommitSha);
    expect(gh.fleet.show(result.mergeCommitSha, "flake.lock")).not.toBe(lockBefore);

    const pr = await connection.revertForRollout({ rolloutId: "r-test", commit: result.mergeCommitSha, prNumber: update.number, reason: "alpha failed its tests" });
    const revert = gh.server.pullRequest(pr.number);
    expect(revert.state).toBe("open");
    expect(revert.body).toContain("rollout r-test failed: alpha failed its tests");
    expect(gh.fleet.show(revert.headRef, "flake.lock")).toBe(lockBefore);
    expect(gh.violations()).toEqual([]);
  });
});
