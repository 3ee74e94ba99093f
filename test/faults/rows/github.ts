/**
 * GitHub misbehaving during detection and during a merge, on the local GitHub (a real bare repo,
 * responses checked against GitHub's OpenAPI description) and Lockstep's own client and use cases:
 * 5xx, the primary rate limit (403), the secondary limit (429 with retry-after), a request that
 * never answers. Reads may be retried; a write is sent once unless GitHub said it did nothing.
 */
import { detectPendingUpdate } from "../../../github/detect.js";
import { GitHubError } from "../../../github/errors.js";
import { mergeUpdate } from "../../../github/merge.js";
import type { GitHubClientOptions } from "../../../github/client.js";
import type { FaultSpec } from "../../github/server.js";
import { startGitHubHarness, type GitHubHarness } from "../../github/harness.js";
import { Checks, settle, type FaultRow, type RowContext } from "../row.js";

interface Case {
  /** Fault on the detection's first GET of the open pull requests. */
  detect: Omit<FaultSpec, "path" | "method">;
  /** Fault on the merge (PUT /pulls/N/merge). */
  merge: Omit<FaultSpec, "path" | "method">;
  client?: GitHubClientOptions;
}

const errText = (e: unknown) => (e instanceof GitHubError ? `${e.code}${e.status ? ` ${e.status}` : ""}` : String(e));

/** The local GitHub the GitHub rows (and lock-bombs) share; each row closes its PRs and clears its faults. */
export async function sharedGitHub(ctx: RowContext): Promise<GitHubHarness> {
  const h = await ctx.shared("github", () => startGitHubHarness(), (x) => x.stop());
  ctx.cleanup(async () => {
    h.server.clearFaults();
    for (const n of h.server.openPullNumbers()) await h.server.closePullRequest(n);
  });
  return h;
}

async function runCase(ctx: RowContext, c: Checks, spec: Case, expectMerged: "after-wait" | "not-merged"): Promise<void> {
  const h = await sharedGitHub(ctx);
  const client = h.newClient({ retries: 2, ...spec.client });
  const failures: string[] = [];
  client.onFailure((e) => failures.push(e.code));
  const { upd, n } = await h.newLockUpdate();

  // Detection with the fault: finds the PR (after retries or the wait) or fails with a typed error.
  h.server.injectFault({ path: /\/pulls$/, method: "GET", ...spec.detect });
  const t0 = performance.now();
  const detecting = settle(detectPendingUpdate(client, h.config));
  // While detection hangs, another call must not wait behind it.
  const other = spec.detect.stall ? await settle(client.getBranchHead().then(() => performance.now() - t0)) : undefined;
  const detected = await detecting;
  const tookMs = performance.now() - t0;
  const took = (tookMs / 1000).toFixed(1);
  if (other) {
    c.see(`another call answered after ${other.ok ? (other.value / 1000).toFixed(1) : "never"} s`);
    c.expect(other.ok && other.value < tookMs, "a call made while detection hung waited behind it");
  }
  if (detected.ok) c.see(`detect: PR #${detected.value.pending?.number ?? "none"} in ${took} s`);
  else c.see(`detect: ${errText(detected.error)} in ${took} s`);
  if (spec.detect.stall) c.expect(!detected.ok && detected.error instanceof GitHubError && detected.error.code === "github-timeout", "a stalled detection did not end in github-timeout");
  else c.expect(detected.ok && detected.value.pending?.number === n, "detection did not find the PR through the fault");
  h.server.clearFaults();

  // The merge with the fault.
  const base0 = h.fleet.head();
  h.server.resetStats();
  h.server.injectFault({ path: `/pulls/${n}/merge`, method: "PUT", ...spec.merge });
  const merged = await settle(mergeUpdate(client, h.config, { number: n, expectedHeadSha: upd.sha }));
  const attempts = h.server.requests.filter((r) => r.method === "PUT" && r.path.endsWith(`/pulls/${n}/merge`)).length;
  const pr = h.server.pullRequest(n);
  c.see(`merge: ${merged.ok ? "merged" : errText(merged.error)}, ${attempts} PUT(s), PR ${pr.merged ? "merged" : pr.state}`);
  if (expectMerged === "after-wait") {
    c.expect(merged.ok && pr.merged && h.fleet.head() === merged.value.mergeCommitSha, "the merge did not land after the wait");
  } else {
    c.expect(!merged.ok && merged.error instanceof GitHubError && /not retried/.test(merged.error.hint ?? ""), "the failed merge is not a typed error saying it was not retried");
    c.expect(attempts === 1, `the merge was sent ${attempts} times`);
    c.expect(!pr.merged && h.fleet.head() === base0, "the PR was merged although the call failed");
  }
  h.server.clearFaults();
  c.see(`${failures.length} failure(s) reported for the audit log`);
  c.expect(expectMerged === "after-wait" || failures.length >= 1, "the failures were not reported to the listeners (the hub audits them)");
  const violations = h.violations().filter((v) => !v.startsWith("(injected fault)"));
  c.expect(violations.length === 0, `OpenAPI violations: ${violations.join("; ")}`);
}

export const github5xx: FaultRow = {
  name: "github-5xx",
  scenario: "GitHub answers 502 twice while detection lists PRs, then 502 to the merge",
  expected: "detection retries and finds the PR; the merge fails once with a typed error saying it was not retried, PR left open, failures reported",
  speed: "fast",
  async run(ctx) {
    const c = new Checks();
    await runCase(ctx, c, { detect: { status: 502, times: 2 }, merge: { status: 502 } }, "not-merged");
    return c.outcome();
  },
};

export const github403: FaultRow = {
  name: "github-403-rate-limit",
  scenario: "GitHub's primary rate limit (403, x-ratelimit-remaining 0) during detection and during the merge",
  expected: "the client waits until x-ratelimit-reset, then detection finds the PR and the merge lands exactly once",
  speed: "fast",
  async run(ctx) {
    const c = new Checks();
    await runCase(ctx, c, { detect: { status: 403, rateLimit: "primary", waitSeconds: 2 }, merge: { status: 403, rateLimit: "primary", waitSeconds: 2 }, client: { rateLimitBaseMs: 100 } }, "after-wait");
    return c.outcome();
  },
};

export const githubSecondary: FaultRow = {
  name: "github-secondary-limit",
  scenario: "GitHub's secondary rate limit (429 with retry-after) during detection and during the merge",
  expected: "the client waits retry-after, then detection finds the PR and the merge lands exactly once",
  speed: "fast",
  async run(ctx) {
    const c = new Checks();
    await runCase(ctx, c, { detect: { status: 429, rateLimit: "secondary", waitSeconds: 2 }, merge: { status: 429, rateLimit: "secondary", waitSeconds: 2 }, client: { rateLimitBaseMs: 100 } }, "after-wait");
    return c.outcome();
  },
};

export const githubTimeout: FaultRow = {
  name: "github-timeout",
  scenario: "GitHub never answers detection's PR list, then never answers the merge (1.5 s request timeout)",
  expected: "detection fails with github-timeout after its retries; the merge times out once, is not retried, PR left open",
  speed: "fast",
  async run(ctx) {
    const c = new Checks();
    await runCase(ctx, c, { detect: { stall: true, times: 3 }, merge: { stall: true }, client: { requestTimeoutMs: 1500 } }, "not-merged");
    return c.outcome();
  },
};
