import { describe, it, expect, beforeAll, afterAll, afterEach } from "vitest";
import { execFileSync } from "node:child_process";
import { startGitHubHarness, type GitHubHarness } from "../github/harness.js";
import { detectPendingUpdate } from "../../github/detect.js";
import { mergeUpdate, MergeRefusedError, assertMergeAllowed, MergeGuardError } from "../../github/merge.js";
import { revertLockUpdate } from "../../github/revert.js";
import { GitHubError } from "../../github/errors.js";
import { lockHash } from "../../protocol/index.js";

function git(repo: string, ...args: string[]): string {
  return execFileSync("git", args, { cwd: repo, encoding: "utf8" }).trim();
}

describe("merging and reverting lock updates (real git behind the local GitHub)", () => {
  let h: GitHubHarness;
  beforeAll(async () => {
    h = await startGitHubHarness();
  });
  afterEach(async () => {
    h.server.clearFaults();
    for (const n of h.server.openPullNumbers()) await h.server.closePullRequest(n);
    expect(h.violations()).toEqual([]);
  });
  afterAll(async () => h?.stop());

  it("merges with the head guard into a real merge commit, then reverts by PR byte for byte", async () => {
    const lockBefore = h.fleet.show(h.fleet.head(), "flake.lock");
    const baseBefore = h.fleet.head();
    const { upd, n } = await h.newLockUpdate();
    h.server.addCheckRun(upd.sha, { name: "nix flake check", conclusion: "success" });
    const d = await detectPendingUpdate(h.client, h.config);
    expect(d.pending?.ci.state).toBe("success");
    assertMergeAllowed(d.pending!, { minAgeMs: 0 });

    const result = await mergeUpdate(h.client, h.config, { number: n, expectedHeadSha: d.pending!.headSha });
    expect(result.mergeCommitSha).toBe(h.fleet.head());
    expect(git(h.fleet.origin, "rev-list", "--parents", "-n", "1", result.mergeCommitSha).split(" ").slice(1)).toEqual([baseBefore, upd.sha]);
    expect(h.fleet.show(result.mergeCommitSha, "flake.lock")).toBe(h.fleet.show(upd.sha, "flake.lock"));
    expect(h.server.pullRequest(n).merged).toBe(true);
    expect((await detectPendingUpdate(h.client, h.config)).pending).toBeNull();

    const rev = await revertLockUpdate(h.client, h.config, { mergeCommitSha: result.mergeCommitSha, reason: "rollout r-1 failed on alpha", prNumber: n });
    expect(rev.mode).toBe("pr");
    expect(rev.pullRequest?.number).toBeGreaterThan(n);
    expect(rev.restoredLockHash).toBe(lockHash(lockBefore));
    // The revert branch's lock is the old one, byte for byte; the base is untouched until merged.
    const revertedBytes = execFileSync("git", ["show", `${rev.branch}:flake.lock`], { cwd: h.fleet.origin });
    expect(revertedBytes.equals(Buffer.from(lockBefore))).toBe(true);
    expect(h.fleet.head()).toBe(result.mergeCommitSha);
    const pr = h.server.pullRequest(rev.pullRequest!.number);
    expect(pr.title).toContain(`Revert flake.lock to before ${result.mergeCommitSha.slice(0, 12)} (PR #${n})`);
    expect(pr.body).toContain("rollout r-1 failed on alpha");
    // A revert PR changes only flake.lock... and is not itself taken for a lock update (no rule matches its title/branch/labels).
    expect((await detectPendingUpdate(h.client, h.config)).pending).toBeNull();
    await h.server.closePullRequest(pr.number);
  });

  it("squash merge, then a direct-commit revert restores the lock on the base branch", async () => {
    const lockBefore = h.fleet.show(h.fleet.head(), "flake.lock");
    const { upd, n } = await h.newLockUpdate();
    const result = await mergeUpdate(h.client, h.config, { number: n, expectedHeadSha: upd.sha, method: "squash" });
    expect(git(h.fleet.origin, "rev-list", "--parents", "-n", "1", result.mergeCommitSha).split(" ")).toHaveLength(2);
    expect(h.fleet.show(result.mergeCommitSha, "flake.lock")).not.toBe(lockBefore);

    const rev = await revertLockUpdate(h.client, h.config, { mergeCommitSha: result.mergeCommitSha, reason: "canary failed", mode: "commit" });
    expect(rev.branch).toBe("main");
    expect(h.fleet.head()).toBe(rev.commitSha);
    const restored = execFileSync("git", ["show", "main:flake.lock"], { cwd: h.fleet.origin });
    expect(restored.equals(Buffer.from(lockBefore))).toBe(true);
    expect(git(h.fleet.origin, "log", "-1", "--format=%B", rev.commitSha)).toContain("Reason: canary failed");
  });

  it("rebase merge replays the update commit onto a base that moved on", async () => {
    const { upd, n } = await h.newLockUpdate();
    const baseMoved = h.fleet.commit({ "README.md": "fleet notes\n" }, "docs: notes");
    const result = await mergeUpdate(h.client, h.config, { number: n, expectedHeadSha: upd.sha, method: "rebase" });
    expect(result.method).toBe("rebase");
    expect(git(h.fleet.origin, "rev-list", "--parents", "-n", "1", result.mergeCommitSha).split(" ")).toEqual([result.mergeCommitSha, baseMoved]);
    expect(result.mergeCommitSha).not.toBe(upd.sha); // a new commit, same change
    expect(h.fleet.show(result.mergeCommitSha, "flake.lock")).toBe(h.fleet.show(upd.sha, "flake.lock"));
    expect(h.fleet.show(result.mergeCommitSha, "README.md")).toBe("fleet notes\n");
    expect(git(h.fleet.origin, "log", "-1", "--format=%s", result.mergeCommitSha)).toBe("flake.lock: Update");
  });

  it("mergeable null ('computing') is asked again a bounded number of times", async () => {
    const { n } = await h.newLockUpdate();
    h.server.setMergeable(n, null, 2); // GitHub computes for two answers, then knows
    h.server.resetStats();
    const d = await detectPendingUpdate(h.client, h.config, { mergeableRetries: 3, mergeableRetryDelayMs: 5 });
    expect(d.pending?.mergeable).toBe(true);
    expect(h.server.requests.filter((r) => r.route === "/repos/{owner}/{repo}/pulls/{pull_number}")).toHaveLength(3);
    h.server.setMergeable(n, null, 100);
    h.server.resetStats();
    const stillComputing = await detectPendingUpdate(h.client, h.config, { mergeableRetries: 3, mergeableRetryDelayMs: 5 });
    expect(stillComputing.pending?.mergeable).toBeNull();
    expect(stillComputing.pending?.mergeableState).toBe("unknown");
    expect(h.server.requests.filter((r) => r.route === "/repos/{owner}/{repo}/pulls/{pull_number}")).toHaveLength(4); // 1 + 3 re-asks
    await h.server.closePullRequest(n);
  });

  it("a file changed since it was read is not overwritten (409 from the contents API)", async () => {
    const lock = await h.client.getFile("flake.lock", "main");
    h.fleet.commit({ "flake.lock": lock.text.replace(/"lastModified": (\d+)/, (_m, v) => `"lastModified": ${Number(v) + 7}`) }, "someone else edits the lock");
    const err = await h.client.putFile({ path: "flake.lock", branch: "main", bytes: lock.bytes, blobSha: lock.blobSha, message: "stale write" }).catch((e) => e);
    expect(err).toBeInstanceOf(GitHubError);
    expect([err.code, err.status]).toEqual(["github-conflict", 409]);
  });

  it("a PR whose head moved after it was checked is not merged (409)", async () => {
    const { n } = await h.newLockUpdate();
    const checked = (await detectPendingUpdate(h.client, h.config)).pending!;
    // Someone pushes a new lock update to the same branch after the check.
    h.fleet.bumpInput("tools", new Date("2026-12-31T12:00:00Z"));
    const moved = h.fleet.lockUpdateBranch("update_flake_lock_action");
    expect(moved.sha).not.toBe(checked.headSha);
    const baseBefore = h.fleet.head();
    const err = await mergeUpdate(h.client, h.config, { number: n, expectedHeadSha: checked.headSha }).catch((e) => e);
    expect(err).toBeInstanceOf(MergeRefusedError);
    expect(err.reason).toBe("head-moved");
    expect(err.status).toBe(409);
    expect(err.message).toMatch(/head is no longer [0-9a-f]{12}/);
    expect(err.message).toContain("detect again");
    expect(h.fleet.head()).toBe(baseBefore);
    expect(h.server.pullRequest(n).merged).toBe(false);
    await h.server.closePullRequest(n);
  });

  it("405, 409 and 422 answers become typed refusals with clear text", async () => {
    const { upd, n } = await h.newLockUpdate();
    h.server.injectFault({ path: "/merge", status: 405, message: "Required status check \"nix flake check\" is expected." });
    let err = await mergeUpdate(h.client, h.config, { number: n, expectedHeadSha: upd.sha }).catch((e) => e);
    expect(err).toBeInstanceOf(MergeRefusedError);
    expect([err.reason, err.status]).toEqual(["not-mergeable", 405]);
    expect(err.message).toContain("not mergeable (405)");
    expect(err.message).toContain('GitHub said: "Required status check');

    h.server.injectFault({ path: "/merge", status: 409, message: "Merge conflict" });
    err = await mergeUpdate(h.client, h.config, { number: n, expectedHeadSha: upd.sha }).catch((e) => e);
    expect([err.reason, err.status]).toEqual(["head-moved", 409]);

    h.server.injectFault({ path: "/merge", status: 422, message: "Required status check \"ci/test\" is failing." });
    err = await mergeUpdate(h.client, h.config, { number: n, expectedHeadSha: upd.sha }).catch((e) => e);
    expect([err.reason, err.status]).toEqual(["checks-failed", 422]);
    expect(err.message).toContain("a required check has not passed (422)");
    expect(err.hint).toBe("wait for the required checks to pass");

    err = await mergeUpdate(h.client, h.config, { number: n, expectedHeadSha: upd.sha, method: "octopus" as "merge" }).catch((e) => e);
    expect([err.reason, err.status]).toEqual(["invalid", 422]);
    // The request check saw the invalid body too (and nothing else so far in this test).
    const seen = h.violations();
    expect(seen).toHaveLength(1);
    expect(seen[0]).toContain("request PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge: /merge_method must be equal to one of the allowed values");

    // A real conflict: the base changed flake.lock differently -> GitHub answers 405.
    const lock = h.fleet.show(h.fleet.head(), "flake.lock");
    h.fleet.commit({ "flake.lock": lock.replace(/"lastModified": (\d+)/, (_m, v) => `"lastModified": ${Number(v) + 1}`) }, "hand-edited lock");
    err = await mergeUpdate(h.client, h.config, { number: n, expectedHeadSha: upd.sha }).catch((e) => e);
    expect([err.reason, err.status]).toEqual(["not-mergeable", 405]);
    const d = await detectPendingUpdate(h.client, h.config);
    expect([d.pending?.mergeable, d.pending?.mergeableState]).toEqual([false, "dirty"]);
    await h.server.closePullRequest(n);
  });

  it("guards: CI must be green, the PR old enough, and mergeability known", async () => {
    const { upd, n } = await h.newLockUpdate({ branch: "update-nixfleet-nixpkgs" });
    h.server.setStatus(upd.sha, "failure", "ci/test", "nix build failed");
    h.server.setMergeable(n, null, 100);
    const d = await detectPendingUpdate(h.client, h.config, { mergeableRetries: 2, mergeableRetryDelayMs: 5 });
    expect(d.pending?.mergeable).toBeNull();
    const err = (() => {
      try {
        assertMergeAllowed(d.pending!, { minAgeMs: 3_600_000 });
      } catch (e) {
        return e as MergeGuardError;
      }
    })();
    expect(err).toBeInstanceOf(MergeGuardError);
    expect(err!.failures.map((f) => f.guard)).toEqual(["ci-not-green", "too-young", "mergeability-unknown"]);
    expect(err!.message).toContain("CI is failure (failing: ci/test)");
    await h.server.closePullRequest(n);
  });

  it("other failures are GitHubErrors that say what to do", async () => {
    const bad = h.newClient({}, { token: "ghp_wrong" });
    const e401 = await bad.getBranchHead().catch((e) => e);
    expect(e401).toBeInstanceOf(GitHubError);
    expect([e401.code, e401.status]).toEqual(["github-unauthorized", 401]);
    expect(e401.message).toContain("refused the token (401)");
    const e404 = await h.client.getFile("flake.lock", "no-such-branch").catch((e) => e);
    expect([e404.code, e404.status]).toEqual(["github-not-found", 404]);
    h.server.injectFault({ path: "/git/ref/", status: 503, times: 10 });
    const e5xx = await h.newClient({ retries: 2 }).getBranchHead().catch((e) => e);
    expect([e5xx.code, e5xx.status]).toEqual(["github-server-error", 503]);
    expect(h.server.requests.filter((r) => r.status === 503)).toHaveLength(3); // 1 + 2 retries
    // Writes are not retried: the merge may have happened although the answer failed.
    const { upd, n } = await h.newLockUpdate();
    h.server.injectFault({ path: "/merge", status: 502, times: 5 });
    const e502 = await mergeUpdate(h.client, h.config, { number: n, expectedHeadSha: upd.sha }).catch((e) => e);
    expect([e502.code, e502.status]).toEqual(["github-server-error", 502]);
    expect(h.server.requests.filter((r) => r.path.endsWith("/merge") && r.status === 502)).toHaveLength(1);
  });
});
