/**
 * GitHub misbehaving: a request that never answers, 5xx on a write, and normal 304s. The client
 * must time a stuck request out without holding up the others, never retry a write (nor claim
 * it did), keep 304s out of the error log, and report each failure (the hub audits them).
 */
import { describe, it, expect, beforeAll, afterAll, afterEach } from "vitest";
import { startGitHubHarness, type GitHubHarness } from "../github/harness.js";
import { detectPendingUpdate } from "../../github/detect.js";
import { mergeUpdate } from "../../github/merge.js";
import { GitHubError } from "../../github/errors.js";

/** pino levels: 40 warn, 50 error. */
const levelOf = (line: string) => (JSON.parse(line) as { level: number }).level;

describe("GitHub faults: timeouts, no serial queue, no write retries, quiet 304s", () => {
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

  it("a stalled GET times out with a typed error, and the requests after it are not held behind it", async () => {
    const client = h.newClient({ requestTimeoutMs: 1500, retries: 1 });
    h.server.injectFault({ path: "/git/ref/", stall: true, times: 2 });
    const order: string[] = [];
    const stuck = client.getBranchHead().then(
      () => order.push("stuck answered"),
      (e: unknown) => {
        order.push("stuck failed");
        return e;
      },
    );
    // The second call starts while the first hangs; with a serial queue it would wait for the timeout.
    await client.listOpenPulls().then(() => order.push("list answered"));
    const err = await stuck;
    expect(order).toEqual(["list answered", "stuck failed"]);
    expect(err).toBeInstanceOf(GitHubError);
    expect((err as GitHubError).code).toBe("github-timeout");
    expect((err as GitHubError).message).toContain("did not answer within 1.5 s");
    expect((err as GitHubError).hint).toContain("retried 1 time with backoff");
    expect(h.server.requests.filter((r) => r.route === "(stalled)")).toHaveLength(2);
  });

  it("a stalled write times out once and is not retried", async () => {
    const { upd, n } = await h.newLockUpdate();
    const client = h.newClient({ requestTimeoutMs: 800 });
    h.server.injectFault({ path: "/merge", method: "PUT", stall: true, times: 5 });
    h.server.resetStats();
    const err = await mergeUpdate(client, h.config, { number: n, expectedHeadSha: upd.sha }).catch((e: unknown) => e);
    expect((err as GitHubError).code).toBe("github-timeout");
    expect(h.server.requests.filter((r) => r.path.endsWith("/merge"))).toHaveLength(1);
    expect((err as GitHubError).hint).toMatch(/not retried/);
  });

  it("a 5xx on a write says it was not retried; no log line claims a retry", async () => {
    const { upd, n } = await h.newLockUpdate();
    const before = h.logs.lines.length;
    h.server.injectFault({ path: "/merge", status: 502, times: 5 });
    const err = (await mergeUpdate(h.client, h.config, { number: n, expectedHeadSha: upd.sha }).catch((e: unknown) => e)) as GitHubError;
    expect([err.code, err.status]).toEqual(["github-server-error", 502]);
    expect(err.hint).not.toMatch(/retried with backoff/);
    expect(err.hint).toMatch(/not retried/);
    expect(h.logs.lines.slice(before).join("\n")).not.toMatch(/retried with backoff/);
    // A read that failed after its retries does say so.
    h.server.injectFault({ path: "/git/ref/", status: 503, times: 10 });
    const read = (await h.newClient({ retries: 1 }).getBranchHead().catch((e: unknown) => e)) as GitHubError;
    expect(read.hint).toMatch(/retried 1 time/);
  });

  it("304 answers of unchanged polls are not warnings or errors in the log", async () => {
    const client = h.newClient();
    await detectPendingUpdate(client, h.config);
    const before = h.logs.lines.length;
    await detectPendingUpdate(client, h.config);
    await detectPendingUpdate(client, h.config);
    expect(client.stats.notModified).toBeGreaterThan(0);
    const loud = h.logs.lines.slice(before).filter((l) => levelOf(l) >= 40);
    expect(loud).toEqual([]);
  });

  it("every failed call is reported to the failure listeners (the hub audits them), 304s are not", async () => {
    const client = h.newClient({ retries: 0 });
    const failures: GitHubError[] = [];
    client.onFailure((e) => failures.push(e));
    await detectPendingUpdate(client, h.config);
    await detectPendingUpdate(client, h.config);
    expect(failures).toEqual([]);
    h.server.injectFault({ path: "/git/ref/", status: 500 });
    await client.getBranchHead().catch(() => undefined);
    expect(failures.map((f) => [f.code, f.status, f.route])).toEqual([["github-server-error", 500, "GET /repos/{owner}/{repo}/git/ref/{ref}"]]);
  });

  it("every answer is reported to the response listeners (the hub's metrics): 200s, 304s, 5xx and no answer", async () => {
    // One answer per call, after the retry plugin: the 502 below is retried and answered 304.
    const client = h.newClient({ retries: 1, retryBaseMs: 10, requestTimeoutMs: 800 });
    const answers: Array<[number | undefined, number | undefined]> = [];
    client.onResponse((status, remaining) => answers.push([status, remaining]));
    await client.getBranchHead();
    await client.getBranchHead(); // unchanged: 304 from the ETag
    h.server.injectFault({ path: "/git/ref/", status: 502 });
    await client.getBranchHead();
    h.server.injectFault({ path: "/git/ref/", stall: true, times: 2 });
    await client.getBranchHead().catch(() => undefined); // no answer
    const once = h.newClient({ retries: 0 });
    once.onResponse((status, remaining) => answers.push([status, remaining]));
    h.server.injectFault({ path: "/git/ref/", status: 502 });
    await once.getBranchHead().catch(() => undefined);
    expect(answers.map(([status]) => status)).toEqual([200, 304, 304, undefined, 502]);
    // Each answer carries the rate limit GitHub reported with it; a 304 costs none.
    const remaining = answers.filter(([status]) => status !== undefined).map(([, r]) => r);
    expect(remaining.every((r) => typeof r === "number")).toBe(true);
    expect(remaining[0]! - remaining[1]!).toBe(0);
  });
});
