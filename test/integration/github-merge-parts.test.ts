/**
 * One pending update made of several per-input PRs (Mic92/update-flake-inputs style) is merged
 * as a whole by the merge use case (GitHubService.merge, behind the API, the page and the
 * pr-merge node): every part's guards and head are checked before the first merge, the parts are
 * merged oldest first, and the commit to deploy is the last merge. A part that GitHub refuses
 * after an earlier one landed (a real conflict in flake.lock) stops the merge with a
 * PartialMergeError naming what landed and what did not.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import pino from "pino";
import { MergeGuardError, MergeRefusedError, PartialMergeError } from "../../github/merge.js";
import { GitHubService } from "../../github/service.js";
import { parseFlakeLock, type AuditEvent } from "../../protocol/index.js";
import { startGitHubHarness, TEST_TOKEN, type GitHubHarness } from "../github/harness.js";

const parents = (repo: string, sha: string) => execFileSync("git", ["rev-list", "--parents", "-n", "1", sha], { cwd: repo, encoding: "utf8" }).trim().split(" ").slice(1);
const rev = (lockText: string, input: string) => (parseFlakeLock(lockText).nodes[input]?.locked as { rev?: string } | undefined)?.rev;

describe("merging a pending update made of several PRs", () => {
  let h: GitHubHarness;
  let service: GitHubService;
  const events: AuditEvent[] = [];
  const guards = { ci: "success" as const, minAgeMs: 0 };
  let clock = Date.parse("2026-11-20T12:00:00Z");

  /** Two per-input PRs off the same base (nixpkgs, then tools), CI green on both. */
  const perInputPair = async () => {
    const a = await h.newLockUpdate({ branch: "update-nixpkgs", bump: ["nixpkgs", "tools"], inputs: ["nixpkgs"], title: "Update flake input: nixpkgs", labels: ["dependencies"], createdAt: new Date((clock += 60_000)) });
    const b = await h.newLockUpdate({ branch: "update-tools", bump: [], inputs: ["tools"], title: "Update flake input: tools", labels: ["dependencies"], createdAt: new Date((clock += 60_000)) });
    for (const { upd } of [a, b]) h.server.addCheckRun(upd.sha, { name: "nix flake check", conclusion: "success" });
    return { a, b };
  };
  const audited = async () => {
    await new Promise((r) => setImmediate(r));
    return events.splice(0).map((e) => [e.action, e.details?.prNumber, e.details?.code]);
  };

  beforeAll(async () => {
    h = await startGitHubHarness();
    service = new GitHubService({ owner: "acme", repo: "fleet", token: TEST_TOKEN, apiBaseUrl: h.server.url, mergeableRetryDelayMs: 10 }, pino({ level: "silent" }), { audit: (e) => void events.push(e) });
  });
  afterEach(async () => {
    h.server.clearFaults();
    for (const n of h.server.openPullNumbers()) await h.server.closePullRequest(n);
    events.splice(0);
    expect(h.violations()).toEqual([]);
  });
  afterAll(async () => {
    await service?.close();
    await h?.stop();
  });

  it("merges two disjoint per-input PRs in order; the last merge is the commit to deploy and has both", async () => {
    const { a, b } = await perInputPair();
    const base = h.fleet.head();
    const done = await service.merge(a.n, guards, { parts: [{ number: a.n, headSha: a.upd.sha }, { number: b.n, headSha: b.upd.sha }] }, "api:admin");

    expect(done.merged.map((m) => m.number)).toEqual([a.n, b.n]);
    expect(done.update.parts?.map((p) => p.number)).toEqual([a.n, b.n]);
    const [first, last] = done.merged;
    expect(done.result).toEqual(last);
    expect(last!.mergeCommitSha).toBe(h.fleet.head());
    // Oldest first: the second merge sits on the first, which sits on the old base.
    expect(parents(h.fleet.origin, first!.mergeCommitSha)).toEqual([base, a.upd.sha]);
    expect(parents(h.fleet.origin, last!.mergeCommitSha)).toEqual([first!.mergeCommitSha, b.upd.sha]);
    const lock = h.fleet.show(last!.mergeCommitSha, "flake.lock");
    expect(rev(lock, "nixpkgs")).toBe(rev(h.fleet.show(a.upd.sha, "flake.lock"), "nixpkgs"));
    expect(rev(lock, "tools")).toBe(rev(h.fleet.show(b.upd.sha, "flake.lock"), "tools"));
    expect([h.server.pullRequest(a.n).merged, h.server.pullRequest(b.n).merged]).toEqual([true, true]);
    expect(await audited()).toEqual([
      ["pr.merged", a.n, undefined],
      ["pr.merged", b.n, undefined],
    ]);

    // The rollout of the last merge fails: the revert undoes both parts (the lock from before the first
    // merge), and it is a revert the merge use case accepts as Lockstep's own.
    const lockBefore = h.fleet.show(base, "flake.lock");
    const revert = await service.revertForRollout({ rolloutId: "r-parts", commit: last!.mergeCommitSha, firstMergeCommit: first!.mergeCommitSha, prNumber: a.n, reason: "canary failed" });
    expect(revert.number).toBeGreaterThan(b.n);
    const back = await service.merge(revert.number, { ci: "ignore", minAgeMs: 0 });
    expect(back.revert?.merge).toBe(first!.mergeCommitSha);
    expect(h.fleet.show(h.fleet.head(), "flake.lock")).toBe(lockBefore);
  });

  it("a failing pre-check of part 2 (CI) merges nothing, and names the part", async () => {
    const { a, b } = await perInputPair();
    h.server.addCheckRun(b.upd.sha, { name: "nix build tools", conclusion: "failure" });
    const base = h.fleet.head();
    const err = (await service.merge(a.n, guards).catch((e: unknown) => e)) as MergeGuardError;
    expect(err).toBeInstanceOf(MergeGuardError);
    expect(err.failures).toEqual([{ guard: "ci-not-green", pr: b.n, detail: `PR #${b.n}: CI is failure (failing: nix build tools)` }]);
    expect(err.ciState).toBe("failure");
    expect(h.fleet.head()).toBe(base);
    expect([h.server.pullRequest(a.n).merged, h.server.pullRequest(b.n).merged]).toEqual([false, false]);
    expect(await audited()).toEqual([["merge.refused", a.n, "merge-guard"]]);
  });

  it("part 2 not mergeable, or a part that joined after the check, merges nothing", async () => {
    const { a, b } = await perInputPair();
    const base = h.fleet.head();
    h.server.setMergeable(b.n, false);
    const dirty = (await service.merge(a.n, guards).catch((e: unknown) => e)) as MergeGuardError;
    expect(dirty.failures.map((f) => [f.guard, f.pr])).toEqual([["not-mergeable", b.n]]);
    h.server.setMergeable(b.n, true);

    // The caller saw only #a; #b is part of the update now: nothing unreviewed is merged.
    const grown = (await service.merge(a.n, guards, { parts: [{ number: a.n }] }).catch((e: unknown) => e)) as MergeRefusedError;
    expect(grown).toBeInstanceOf(MergeRefusedError);
    expect(grown.reason).toBe("parts-changed");
    expect(grown.message).toContain(`it is now #${a.n}, #${b.n}, not #${a.n} as checked`);
    // Part 2's head is not the one the caller checked.
    const moved = (await service.merge(a.n, guards, { parts: [{ number: a.n, headSha: a.upd.sha }, { number: b.n, headSha: "f".repeat(40) }] }).catch((e: unknown) => e)) as MergeRefusedError;
    expect([moved.reason, moved.prNumber]).toEqual(["head-moved", b.n]);
    expect(h.fleet.head()).toBe(base);
    expect([h.server.pullRequest(a.n).merged, h.server.pullRequest(b.n).merged]).toEqual([false, false]);
  });

  it("GitHub's transient 'Base branch was modified' between the parts is asked again", async () => {
    const { a, b } = await perInputPair();
    h.server.injectFault({ path: `/pulls/${b.n}/merge`, status: 405, message: "Base branch was modified. Review and try the merge again.", times: 2 });
    const done = await service.merge(a.n, guards);
    expect(done.merged.map((m) => m.number)).toEqual([a.n, b.n]);
    expect(done.result.mergeCommitSha).toBe(h.fleet.head());
    expect(h.server.requests.filter((r) => r.path.endsWith(`/pulls/${b.n}/merge`)).map((r) => r.status)).toEqual([405, 405, 200]);
  });

  it("a real conflict after part 1 landed: PartialMergeError names what landed (to deploy) and what did not", async () => {
    const { a, b } = await perInputPair();
    // Part 2 as a differently formatting updater writes it: only tools changes in the lock's data, but
    // the line of nixpkgs' rev is rewritten too, so once part 1 changed that line git cannot merge it.
    const text = h.fleet.show(b.upd.sha, "flake.lock");
    const nixpkgsRev = rev(text, "nixpkgs")!;
    const reformatted = text.replace(`"rev": "${nixpkgsRev}"`, `"rev":  "${nixpkgsRev}"`);
    expect(reformatted).not.toBe(text);
    const c = await h.server.git.commitFile("update-tools-2", h.fleet.head(), "flake.lock", Buffer.from(reformatted), "Update flake input: tools");
    await h.server.closePullRequest(b.n);
    const n2 = await h.server.openPullRequest({ head: "update-tools-2", title: "Update flake input: tools", labels: ["dependencies"], createdAt: new Date((clock += 60_000)) });
    h.server.addCheckRun(c.commit, { name: "nix flake check", conclusion: "success" });

    const err = (await service.merge(a.n, guards).catch((e: unknown) => e)) as PartialMergeError;
    expect(err).toBeInstanceOf(PartialMergeError);
    expect(err.code).toBe("merge-partial");
    expect(err.merged.map((m) => m.number)).toEqual([a.n]);
    expect(err.landedCommit).toBe(h.fleet.head());
    expect(err.notMerged.map((p) => p.number)).toEqual([n2]);
    expect(err.notMerged[0]!.reason).toContain(`PR #${n2} is not mergeable (405)`);
    expect(err.message).toContain(`merged #${a.n} (base branch now at ${err.landedCommit.slice(0, 12)})`);
    expect(err.message).toContain(`deploy ${err.landedCommit.slice(0, 12)} (what landed)`);
    expect([h.server.pullRequest(a.n).merged, h.server.pullRequest(n2).merged, h.server.pullRequest(n2).state]).toEqual([true, false, "open"]);
    expect(await audited()).toEqual([
      ["pr.merged", a.n, undefined],
      ["merge.refused", n2, "merge-partial"],
    ]);
  });
});
