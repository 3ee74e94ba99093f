import { describe, it, expect, beforeAll, afterAll, afterEach } from "vitest";
import { startGitHubHarness, type GitHubHarness } from "../github/harness.js";
import { detectPendingUpdate, fleetExpected } from "../../github/detect.js";
import { FleetExpected, PendingUpdate, lockHash } from "../../protocol/index.js";

describe("detecting the lock-update PR (local GitHub on a real bare repo)", () => {
  let h: GitHubHarness;
  beforeAll(async () => {
    h = await startGitHubHarness();
  });
  afterEach(() => expect(h.violations()).toEqual([]));
  afterAll(async () => h?.stop());

  it("finds nothing when no PR is open, and says what the fleet should run", async () => {
    const d = await detectPendingUpdate(h.client, h.config);
    expect(d.pending).toBeNull();
    expect(d.baseHead).toBe(h.fleet.head());
    const expected = await fleetExpected(h.client, h.config, d.pending, { baseHead: d.baseHead });
    FleetExpected.parse(expected);
    expect(expected.headCommit).toBe(h.fleet.head());
    expect(expected.lockHash).toBe(lockHash(h.fleet.show(h.fleet.head(), "flake.lock")));
    expect(expected.lockLastModified).toBe(Math.floor(Date.parse("2026-11-01T12:00:00Z") / 1000));
  });

  it("detects by the label rule and diffs the lock of a real `nix flake update` commit", async () => {
    h.fleet.bumpInput("nixpkgs", new Date("2026-11-08T12:00:00Z"));
    const upd = h.fleet.lockUpdateBranch("weekly-refresh");
    const n = await h.server.openPullRequest({ head: upd.branch, title: "chore: weekly refresh", labels: ["automated", "dependencies"], body: upd.prBody });
    const d = await detectPendingUpdate(h.client, h.config);
    expect(d.pending).not.toBeNull();
    const p = PendingUpdate.parse(d.pending);
    expect(p.number).toBe(n);
    expect(d.matches[0]!.rules).toEqual(["labels"]);
    expect(p.headSha).toBe(upd.sha);
    expect(p.lockDiff.updated.map((c) => c.input)).toEqual(["nixpkgs"]);
    expect(p.lockDiff.updated[0]!.followers).toEqual(["tools/nixpkgs"]); // follows nixpkgs: grouped under it
    expect(p.lockDiff.updated[0]!.old!.date).toBe("2026-11-01");
    expect(p.lockDiff.updated[0]!.new!.date).toBe("2026-11-08");
    // The body's Nix text agrees with the file diff
    expect(d.bodyLockDiff?.updated.find((c) => c.input === "nixpkgs")?.new?.rev).toBe(p.lockDiff.updated[0]!.new!.rev);
    expect(p.ci).toEqual({ state: "pending", summary: "no CI has reported yet" });
    expect(p.mergeable).toBe(true);
    expect(p.headRepo).toBe(`${h.config.owner}/${h.config.repo}`);
    await h.server.closePullRequest(n);
  });

  it("carries the repository the PR's head is in: a fork's name", async () => {
    h.fleet.bumpInput("nixpkgs", new Date("2026-11-10T12:00:00Z"));
    const upd = h.fleet.lockUpdateBranch("fork-update");
    const n = await h.server.openPullRequest({ head: upd.branch, title: "flake.lock: Update", headRepo: "mallory/fleet" });
    const d = await detectPendingUpdate(h.client, h.config);
    expect(d.pending).toMatchObject({ number: n, headRepo: "mallory/fleet" });
    await h.server.closePullRequest(n);
  });

  it("detects by the title rule and by the head-branch rule (glob)", async () => {
    h.fleet.bumpInput("tools", new Date("2026-11-09T12:00:00Z"));
    const byTitle = h.fleet.lockUpdateBranch("some-branch");
    const n1 = await h.server.openPullRequest({ head: byTitle.branch, title: "Bump flake inputs" });
    let d = await detectPendingUpdate(h.client, h.config);
    expect(d.pending?.number).toBe(n1);
    expect(d.matches[0]!.rules).toEqual(["title"]);
    await h.server.closePullRequest(n1);

    const byBranch = h.fleet.lockUpdateBranch("update-nixfleet-tools", ["tools"]);
    const n2 = await h.server.openPullRequest({ head: byBranch.branch, title: "tools: new release" });
    d = await detectPendingUpdate(h.client, h.config);
    expect(d.pending?.number).toBe(n2);
    expect(d.matches[0]!.rules).toEqual(["headBranch"]);
    expect(d.pending!.lockDiff.updated.map((c) => c.input)).toEqual(["tools"]);
    await h.server.closePullRequest(n2);
  });

  it("works against a GitHub Enterprise style base URL (/api/v3)", async () => {
    const ghe = h.newClient({}, { apiBaseUrl: `${h.server.url}/api/v3` });
    const d = await detectPendingUpdate(ghe, h.configWith({ apiBaseUrl: `${h.server.url}/api/v3` }));
    expect(d.baseHead).toBe(h.fleet.head());
    expect(h.server.requests.at(-1)!.path).toMatch(/^\/repos\/acme\/fleet\//);
  });

  it("ignores a matching PR that changes more than flake.lock, and unrelated PRs", async () => {
    await h.server.git.commitFile("docs-branch", h.fleet.head(), "README.md", Buffer.from("hello\n"), "docs");
    const docs = await h.server.openPullRequest({ head: "docs-branch", title: "Update flake docs", labels: ["automated", "dependencies"] });
    await h.server.git.commitFile("tweak-branch", h.fleet.head(), "hosts/alpha.nix", Buffer.from("{ fail = false; message = \"x\"; }\n"), "tweak");
    await h.server.openPullRequest({ head: "tweak-branch", title: "alpha: tweak" });
    const d = await detectPendingUpdate(h.client, h.config);
    expect(d.pending).toBeNull();
    expect(d.ignored).toEqual([{ number: docs, reason: "changes README.md, not only flake.lock" }]);
  });

  it("several open at once: the oldest is pending, the others are superseded", async () => {
    h.fleet.bumpInput("nixpkgs", new Date("2026-11-15T12:00:00Z"));
    const a = h.fleet.lockUpdateBranch("update-nixfleet-nixpkgs", ["nixpkgs"]);
    const b = h.fleet.lockUpdateBranch("update_flake_lock_action");
    const newer = await h.server.openPullRequest({ head: b.branch, title: "flake.lock: Update", createdAt: new Date("2026-11-16T00:00:00Z") });
    const older = await h.server.openPullRequest({ head: a.branch, title: "nixpkgs bump", createdAt: new Date("2026-11-15T00:00:00Z") });
    const d = await detectPendingUpdate(h.client, h.config);
    expect(d.pending?.number).toBe(older);
    expect(d.pending?.superseded).toEqual([newer]);
    expect(d.matches.map((m) => m.number)).toEqual([older, newer]);
    await h.server.closePullRequest(older);
    await h.server.closePullRequest(newer);
  });

  it("a PR made with GitHub's Revert button is never an update, though it changes only flake.lock", async () => {
    h.fleet.bumpInput("nixpkgs", new Date("2026-11-17T12:00:00Z"));
    const upd = h.fleet.lockUpdateBranch("revert-154-update_flake_lock_action");
    const n = await h.server.openPullRequest({ head: upd.branch, title: 'Revert "flake.lock: Update (#154)"', body: "Reverts acme/fleet#154", labels: ["automated", "dependencies"] });
    const d = await detectPendingUpdate(h.client, h.config);
    expect(d.pending).toBeNull();
    expect(d.ignored).toContainEqual({ number: n, reason: "a revert (GitHub's Revert button) is never an update" });
    await h.server.closePullRequest(n);
  });

  it("Renovate's lock file maintenance is detected by default", async () => {
    h.fleet.bumpInput("tools", new Date("2026-11-18T12:00:00Z"));
    const upd = h.fleet.lockUpdateBranch("renovate/lock-file-maintenance");
    const n = await h.server.openPullRequest({ head: upd.branch, title: "chore(deps): lock file maintenance" });
    const d = await detectPendingUpdate(h.client, h.config);
    expect(d.pending?.number).toBe(n);
    expect(d.matches[0]!.rules).toEqual(["title", "headBranch"]);
    await h.server.closePullRequest(n);
  });

  it("per-input PRs that change different inputs are one update made of several PRs; one changing the same input is superseded", async () => {
    h.fleet.bumpInput("nixpkgs", new Date("2026-11-21T12:00:00Z"));
    h.fleet.bumpInput("tools", new Date("2026-11-21T13:00:00Z"));
    const np = h.fleet.lockUpdateBranch("update-nixpkgs", ["nixpkgs"]);
    const tools = h.fleet.lockUpdateBranch("update-tools", ["tools"]);
    const all = h.fleet.lockUpdateBranch("update_flake_lock_action");
    const a = await h.server.openPullRequest({ head: np.branch, title: "Update flake input: nixpkgs", labels: ["dependencies"], createdAt: new Date("2026-11-21T14:00:00Z") });
    const b = await h.server.openPullRequest({ head: tools.branch, title: "Update flake input: tools", labels: ["dependencies"], createdAt: new Date("2026-11-21T14:00:01Z") });
    const c = await h.server.openPullRequest({ head: all.branch, title: "flake.lock: Update", createdAt: new Date("2026-11-21T15:00:00Z") });
    try {
      const d = await detectPendingUpdate(h.client, h.config);
      const p = PendingUpdate.parse(d.pending);
      expect(p.number).toBe(a);
      expect(p.parts?.map((x) => x.number)).toEqual([a, b]);
      expect(p.parts?.map((x) => x.lockDiff.updated.map((u) => u.input))).toEqual([["nixpkgs"], ["tools"]]);
      expect(p.parts![1]!.headSha).toBe(tools.sha);
      expect(p.superseded).toEqual([c]);
      const grouped = await detectPendingUpdate(h.client, h.configWith({ detection: { groupDisjointPrs: false } }));
      expect(grouped.pending?.parts).toBeUndefined();
      expect(grouped.pending?.superseded).toEqual([b, c]);
    } finally {
      for (const n of [a, b, c]) await h.server.closePullRequest(n);
    }
  });

  it("a PR whose flake.lock cannot be read is reported broken, never described from its body", async () => {
    const cycle = JSON.stringify({ version: 7, root: "root", nodes: { root: { inputs: { a: ["b"], b: ["a"] } } } });
    await h.server.git.commitFile("bad-lock", h.fleet.head(), "flake.lock", Buffer.from(cycle), "flake.lock: Update");
    const body = h.fleet.lockUpdateBranch("update_flake_lock_action").prBody; // a believable body, from another commit
    const n = await h.server.openPullRequest({ head: "bad-lock", title: "flake.lock: Update", body });
    try {
      const d = await detectPendingUpdate(h.client, h.config);
      expect(d.pending).toBeNull();
      expect(d.broken).toEqual([{ number: n, title: "flake.lock: Update", url: expect.any(String), reason: expect.stringMatching(/cannot read flake\.lock: follows cycle/) }]);
      const expected = FleetExpected.parse(await fleetExpected(h.client, h.config, d.pending, { baseHead: d.baseHead, broken: d.broken }));
      expect(expected.brokenUpdates?.map((b) => b.number)).toEqual([n]);
    } finally {
      await h.server.closePullRequest(n);
    }
  });

  it("finds the lock-update PR behind more than 100 older open PRs, and reads check runs past the first 100", async () => {
    await h.server.git.commitFile("busy-branch", h.fleet.head(), "README.md", Buffer.from("busy\n"), "busy");
    const others: number[] = [];
    for (let i = 0; i < 120; i++) {
      others.push(await h.server.openPullRequest({ head: "busy-branch", title: `feature ${i}`, createdAt: new Date(Date.UTC(2026, 9, 1, 0, i)) }));
    }
    h.fleet.bumpInput("nixpkgs", new Date("2026-11-20T12:00:00Z"));
    const upd = h.fleet.lockUpdateBranch("update_flake_lock_action");
    const lockPr = await h.server.openPullRequest({ head: upd.branch, title: "flake.lock: Update", createdAt: new Date("2026-11-20T13:00:00Z") });
    // 120 check runs: the one that fails is on the second page.
    for (let i = 0; i < 119; i++) h.server.addCheckRun(upd.sha, { name: `build ${i}`, status: "completed", conclusion: "success" });
    h.server.addCheckRun(upd.sha, { name: "build 119", status: "completed", conclusion: "failure" });
    try {
      const d = await detectPendingUpdate(h.client, h.config);
      expect(d.pending?.number).toBe(lockPr);
      expect(d.pending?.ci.state).toBe("failure");
      expect(d.pending?.ci.summary).toMatch(/build 119/);
    } finally {
      for (const n of [...others, lockPr]) await h.server.closePullRequest(n);
    }
  });
});
