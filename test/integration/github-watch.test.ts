import { describe, it, expect, beforeAll, afterAll, afterEach } from "vitest";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { startGitHubHarness, TEST_TOKEN, type GitHubHarness } from "../github/harness.js";
import { UpdateWatcher, type PendingClosed } from "../../github/poller.js";
import { createWebhookHandler, type WebhookEvent } from "../../github/webhooks.js";
import { mergeUpdate } from "../../github/merge.js";
import { revertLockUpdate } from "../../github/revert.js";
import { detectPendingUpdate } from "../../github/detect.js";
import type { FleetExpected, PendingUpdate } from "../../protocol/index.js";

const WEBHOOK_SECRET = "whsec-lockstep-test-7f3a";

function until(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => (pred() ? resolve() : Date.now() > end ? reject(new Error("timed out waiting")) : setTimeout(tick, 10));
    tick();
  });
}

describe("watching GitHub: cheap polls, events, webhooks", () => {
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

  it("N polls of an unchanged repo cost the first poll's requests, then 0 (all 304)", async () => {
    h.fleet.bumpInput("nixpkgs", new Date("2026-11-08T12:00:00Z"));
    const upd = h.fleet.lockUpdateBranch();
    const n = await h.server.openPullRequest({ head: upd.branch, title: "flake.lock: Update", labels: ["automated", "dependencies"], body: upd.prBody });
    h.server.setStatus(upd.sha, "success", "ci/build");
    const client = h.newClient();
    const watcher = new UpdateWatcher(client, h.config, { intervalMs: 60_000 });
    h.server.resetStats();
    await watcher.checkNow();
    const first = h.server.stats();
    const N = 10;
    for (let i = 1; i < N; i++) await watcher.checkNow();
    const after = h.server.stats();
    // A poll makes 8 GETs: base ref, open PRs, PR files, lock@base, lock@head, statuses,
    // check runs, the PR (mergeable). FleetExpected reuses lock@base (the PR's base is the base
    // head) instead of asking for it again. 8 distinct resources cost rate limit once, ever.
    expect(first.requests).toBe(8);
    expect(first.rateLimited).toBe(8);
    expect(after.requests).toBe(8 * N);
    expect(after.rateLimited).toBe(first.rateLimited);
    expect(after.notModified).toBe(8 * N - 8);
    expect(client.stats.notModified).toBe(after.notModified);
    expect(watcher.state.pending?.number).toBe(n);
    await watcher.stop();
    await h.server.closePullRequest(n);
  });

  it("emits update / head / expected / closed as the PR is opened, goes green, merges", async () => {
    const watcher = new UpdateWatcher(h.newClient(), h.config, { intervalMs: 60_000, agentVersion: "0.1.0" });
    const updates: PendingUpdate[] = [];
    const closed: PendingClosed[] = [];
    const heads: string[] = [];
    const expected: FleetExpected[] = [];
    watcher.on("update", (u) => updates.push(u));
    watcher.on("closed", (c) => closed.push(c));
    watcher.on("head", (x) => heads.push(x.sha));
    watcher.on("expected", (e) => expected.push(e));
    await watcher.checkNow();
    expect(updates).toHaveLength(0);
    expect(heads).toEqual([h.fleet.head()]);
    expect(expected).toHaveLength(1);
    expect(expected[0]!.pendingUpdate).toBeNull();
    expect(expected[0]!.agentVersion).toBe("0.1.0");

    h.fleet.bumpInput("tools", new Date("2026-11-12T12:00:00Z"));
    const upd = h.fleet.lockUpdateBranch();
    const n = await h.server.openPullRequest({ head: upd.branch, title: "flake.lock: Update", labels: ["automated", "dependencies"] });
    await watcher.checkNow();
    expect(updates.map((u) => [u.number, u.ci.state])).toEqual([[n, "pending"]]);
    expect(expected.at(-1)!.pendingUpdate?.number).toBe(n);

    await watcher.checkNow(); // nothing changed: no event
    expect(updates).toHaveLength(1);

    const run = h.server.addCheckRun(upd.sha, { name: "nix flake check", status: "in_progress" });
    await watcher.checkNow();
    expect(updates.map((u) => u.ci)).toEqual([
      { state: "pending", summary: "no CI has reported yet" },
      { state: "pending", summary: "waiting for: nix flake check" },
    ]);
    h.server.updateCheckRun(run, { status: "completed", conclusion: "success" });
    await watcher.checkNow();
    expect(updates.map((u) => u.ci.state)).toEqual(["pending", "pending", "success"]);

    const merged = await mergeUpdate(h.client, h.config, { number: n, expectedHeadSha: upd.sha });
    await watcher.checkNow();
    expect(closed).toEqual([{ number: n, merged: true, mergeCommitSha: merged.mergeCommitSha }]);
    expect(heads.at(-1)).toBe(merged.mergeCommitSha);
    expect(expected.at(-1)!.headCommit).toBe(merged.mergeCommitSha);
    expect(expected.at(-1)!.pendingUpdate).toBeNull();
    await watcher.stop();
  });

  it("polls on its interval and reports errors without stopping", async () => {
    const watcher = new UpdateWatcher(h.newClient({ retries: 0 }), h.config, { intervalMs: 30 });
    const errors: Error[] = [];
    watcher.on("error", (e) => errors.push(e));
    h.server.injectFault({ path: "/git/ref/", status: 500, times: 1 });
    watcher.start();
    await until(() => watcher.state.checks >= 2);
    await watcher.stop();
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toContain("failed on GitHub's side (500)");
  });

  it("backs off on a 403 primary rate limit for as long as x-ratelimit-reset says, then succeeds", async () => {
    const client = h.newClient({ rateLimitBaseMs: 10 });
    h.server.injectFault({ path: "/pulls", status: 403, rateLimit: "primary", waitSeconds: 3 });
    const started = Date.now();
    const d = await detectPendingUpdate(client, h.config);
    expect(d.pending).toBeNull();
    // Throttling waits ceil(reset - now) + 1 seconds (scaled by rateLimitBaseMs in tests).
    expect(client.stats.rateLimitWaits).toHaveLength(1);
    expect(client.stats.rateLimitWaits[0]).toBeGreaterThanOrEqual(3);
    expect(client.stats.rateLimitWaits[0]).toBeLessThanOrEqual(4);
    expect(Date.now() - started).toBeGreaterThanOrEqual(30);

    h.server.injectFault({ path: "/pulls", status: 429, rateLimit: "secondary", waitSeconds: 2 });
    await detectPendingUpdate(client, h.config);
    expect(client.stats.rateLimitWaits[1]).toBe(2);

    // Too long a wait: give up with a clear error instead of hanging the hub.
    const impatient = h.newClient({ maxRateLimitWaitSeconds: 5 });
    h.server.injectFault({ path: "/pulls", status: 403, rateLimit: "primary", waitSeconds: 600 });
    const err = await detectPendingUpdate(impatient, h.config).catch((e) => e);
    expect([err.code, err.status]).toEqual(["github-rate-limited", 403]);
    expect(err.message).toContain("rate limit exceeded (403)");
  });

  it("a signed webhook triggers an immediate re-check; a bad or missing signature is refused (401)", async () => {
    const watcher = new UpdateWatcher(h.newClient(), h.config, { intervalMs: 3_600_000 });
    await watcher.checkNow();
    const events: WebhookEvent[] = [];
    const handler = createWebhookHandler({ secret: WEBHOOK_SECRET, watcher, repository: "acme/fleet", onEvent: (e) => events.push(e), logger: h.client.logger });
    const receiver: Server = createServer((req, res) => void handler(req, res));
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/github`;
    try {
      // Bad signature
      const body = JSON.stringify({ ref: "refs/heads/main", after: "0".repeat(40), repository: { full_name: "acme/fleet" } });
      let r = await fetch(url, { method: "POST", headers: { "content-type": "application/json", "x-github-event": "push", "x-hub-signature-256": "sha256=" + "ab".repeat(32) }, body });
      expect(r.status).toBe(401);
      expect((await r.json()).error).toContain("signature does not match");
      r = await fetch(url, { method: "POST", headers: { "content-type": "application/json", "x-github-event": "push" }, body });
      expect(r.status).toBe(401);
      expect(events).toHaveLength(0);
      const checksBefore = watcher.state.checks;
      await new Promise((res) => setTimeout(res, 50));
      expect(watcher.state.checks).toBe(checksBefore);

      // GitHub (the local server) delivers signed events: opening a PR re-checks at once.
      h.server.addWebhook(url, WEBHOOK_SECRET);
      h.fleet.bumpInput("nixpkgs", new Date("2026-11-20T12:00:00Z"));
      const upd = h.fleet.lockUpdateBranch();
      const seen: PendingUpdate[] = [];
      watcher.on("update", (u) => seen.push(u));
      const n = await h.server.openPullRequest({ head: upd.branch, title: "flake.lock: Update", labels: ["automated", "dependencies"] });
      await until(() => seen.some((u) => u.number === n));
      expect(events.map((e) => e.summary)).toContain(`pull_request opened #${n}`);
      h.server.setStatus(upd.sha, "failure", "ci/test");
      await until(() => seen.some((u) => u.number === n && u.ci.state === "failure"));
      expect(events.map((e) => e.name)).toContain("status");
      await h.server.closePullRequest(n);
    } finally {
      await watcher.stop();
      receiver.closeAllConnections();
      await new Promise<void>((r) => receiver.close(() => r()));
    }
  });

  it("the token never appears in any log line of a full run, even at trace level", async () => {
    // Everything this file did (polls, merges, 401/403/5xx, rate-limit waits, webhooks) logged
    // into h.logs at trace level; add a revert and a 401 to be sure.
    h.fleet.bumpInput("nixpkgs", new Date("2026-11-25T12:00:00Z"));
    const upd = h.fleet.lockUpdateBranch();
    const n = await h.server.openPullRequest({ head: upd.branch, title: "flake.lock: Update" });
    const m = await mergeUpdate(h.client, h.config, { number: n, expectedHeadSha: upd.sha });
    await revertLockUpdate(h.client, h.config, { mergeCommitSha: m.mergeCommitSha, reason: "test", mode: "commit" });
    const e401 = await h.newClient({}, { token: `${TEST_TOKEN}-wrong` }).getBranchHead().catch((e: unknown) => e);
    // Errors carry Octokit's request (headers included) as their cause: logging them is safe too.
    h.client.logger.error({ err: e401 }, "GitHub call failed");
    const ok = await h.client.getBranchHead().catch((e: unknown) => e);
    h.client.logger.debug({ result: ok, client: h.client }, "client dump");
    // A careless log call with the config or the token object must not leak it either.
    h.client.logger.info({ config: h.config, token: h.config.token }, "config dump");
    expect(h.logs.lines.length).toBeGreaterThan(20);
    const leaked = h.logs.lines.filter((l) => l.includes(TEST_TOKEN) || l.includes(WEBHOOK_SECRET));
    expect(leaked).toEqual([]);
    expect(h.logs.lines.some((l) => l.includes("[REDACTED]"))).toBe(true);
    expect(h.logs.lines.find((l) => l.includes("GitHub call failed"))).toContain("refused the token (401)");
    expect(h.logs.lines.find((l) => l.includes("client dump"))?.length).toBeGreaterThan(500);
  });
});
