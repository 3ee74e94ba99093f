/**
 * Finding THE pending lock update on GitHub, with its lock diff, CI state and mergeability, and
 * what the fleet should run (FleetExpected).
 *
 * Rule for several matching PRs open at once: the OLDEST matching PR (earliest created_at, then
 * lowest number) is the pending update; the others are listed in `superseded`. Oldest first is
 * deterministic, it is the one that has had the longest time for CI and review, and after it is
 * merged the newer ones are rebased by their workflow (update-flake-lock force-pushes its branch)
 * and become the next pending update. See docs/github.md.
 */
import { diffLocks, parseLockUpdateText, lockLastModified, parseFlakeLock, lockHash } from "../protocol/index.js";
import type { CiState, FleetExpected, LockDiff, PendingUpdate } from "../protocol/index.js";
import { LockstepError } from "../protocol/errors.js";
import type { GitHubClient, PullSummary, PullDetail, CombinedStatus, CheckRunList, FileAtRef } from "./client.js";
import type { DetectionRules, GitHubConfig } from "./config.js";

export type MatchRule = "labels" | "title" | "headBranch";

/** `*` in a branch pattern matches any run of characters; everything else is literal. */
export function branchPatternMatches(pattern: string, branch: string): boolean {
  const re = new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
  return re.test(branch);
}

/** Which rules a PR matches (pure; the "only flake.lock" rule needs the files API, see below). */
export function matchRules(pr: Pick<PullSummary, "title" | "labels" | "head">, rules: DetectionRules): MatchRule[] {
  const matched: MatchRule[] = [];
  if (rules.excludeHeadBranchPatterns.some((p) => branchPatternMatches(p, pr.head.ref))) return matched;
  const names = new Set(pr.labels.map((l) => l.name.toLowerCase()));
  if (rules.labels.length > 0 && rules.labels.every((l) => names.has(l.toLowerCase()))) matched.push("labels");
  const title = pr.title.toLowerCase();
  if (rules.titlePatterns.some((p) => title.includes(p.toLowerCase()))) matched.push("title");
  if (rules.headBranchPatterns.some((p) => branchPatternMatches(p, pr.head.ref))) matched.push("headBranch");
  return matched;
}

/**
 * CI state from both APIs. Statuses (the old API, used by external CI) and check runs (GitHub
 * Actions) are combined: any failure/error/cancelled/timed_out => failure; anything still
 * running or nothing reported at all => pending; otherwise success.
 */
export function ciStateFrom(combined: CombinedStatus, checks: CheckRunList): { state: CiState; summary: string } {
  const failed: string[] = [];
  const running: string[] = [];
  let passed = 0;
  for (const s of combined.statuses) {
    if (s.state === "failure" || s.state === "error") failed.push(s.context);
    else if (s.state === "pending") running.push(s.context);
    else passed++;
  }
  for (const run of checks.check_runs) {
    if (run.status !== "completed") running.push(run.name);
    else if (["failure", "cancelled", "timed_out", "startup_failure"].includes(run.conclusion ?? "")) failed.push(run.name);
    else if (["success", "neutral", "skipped"].includes(run.conclusion ?? "")) passed++;
    else running.push(`${run.name} (${run.conclusion ?? "no conclusion"})`); // action_required, stale: not green yet
  }
  const total = combined.statuses.length + checks.check_runs.length;
  if (failed.length) return { state: "failure", summary: `failing: ${failed.join(", ")}` };
  if (total === 0) return { state: "pending", summary: "no CI has reported yet" };
  if (running.length) return { state: "pending", summary: `waiting for: ${running.join(", ")}` };
  return { state: "success", summary: `${passed} check${passed === 1 ? "" : "s"} passed` };
}

export interface MatchedPull {
  number: number;
  title: string;
  url: string;
  headBranch: string;
  headSha: string;
  openedAt: string;
  rules: MatchRule[];
}

export interface IgnoredPull {
  number: number;
  reason: string;
}

export interface Detection {
  /** THE pending update (oldest matching PR), or null. */
  pending: PendingUpdate | null;
  /** Every matching PR, oldest first (the first one is `pending`). */
  matches: MatchedPull[];
  /** PRs that matched a rule but were set aside (e.g. they touch more than flake.lock). */
  ignored: IgnoredPull[];
  /** Head of the base branch when checked. */
  baseHead: string;
  /** The pending PR body's "Flake lock file updates:" block parsed, when the body has one. */
  bodyLockDiff: LockDiff | null;
  /** flake.lock at `baseHead`, when detection already read it (the pending PR's base is the base head). */
  baseLock: FileAtRef | null;
}

export interface DetectOptions {
  /** Re-asks while mergeable is null. Default from config. */
  mergeableRetries?: number;
  mergeableRetryDelayMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** List open PRs on the base branch and pick the pending lock update (see the rule above). */
/**
 * With `detection.onlyFlakeLock`: why a PR is not a lock update ("changes X, not only flake.lock"),
 * or undefined when it changes flake.lock alone (or the rule is off).
 */
export async function changesMoreThanLock(client: GitHubClient, config: GitHubConfig, number: number): Promise<string | undefined> {
  if (!config.detection.onlyFlakeLock) return undefined;
  const names = (await client.listPullFiles(number)).map((f) => f.filename);
  if (names.length === 1 && names[0] === config.lockPath) return undefined;
  return `changes ${names.length === 0 ? "no files" : names.slice(0, 5).join(", ")}, not only ${config.lockPath}`;
}

export async function detectPendingUpdate(client: GitHubClient, config: GitHubConfig, opts: DetectOptions = {}): Promise<Detection> {
  const baseHead = await client.getBranchHead(config.baseBranch);
  const open = await client.listOpenPulls(config.baseBranch);
  const matches: MatchedPull[] = [];
  const ignored: IgnoredPull[] = [];
  for (const pr of open) {
    const rules = matchRules(pr, config.detection);
    if (rules.length === 0) continue;
    const notOnlyLock = await changesMoreThanLock(client, config, pr.number);
    if (notOnlyLock) {
      ignored.push({ number: pr.number, reason: notOnlyLock });
      continue;
    }
    matches.push({ number: pr.number, title: pr.title, url: pr.html_url, headBranch: pr.head.ref, headSha: pr.head.sha, openedAt: pr.created_at, rules });
  }
  matches.sort((a, b) => (a.openedAt === b.openedAt ? a.number - b.number : a.openedAt < b.openedAt ? -1 : 1));
  const first = matches[0];
  if (!first) return { pending: null, matches, ignored, baseHead, bodyLockDiff: null, baseLock: null };
  const pr = open.find((p) => p.number === first.number)!;
  const { pending, before } = await describe(client, config, pr, matches.slice(1).map((m) => m.number), opts);
  return { pending, matches, ignored, baseHead, bodyLockDiff: lockDiffFromBody(pr.body), baseLock: pr.base.sha === baseHead ? before : null };
}

/**
 * Lock diff, CI and mergeability of one PR, as the protocol's PendingUpdate. A PullDetail the
 * caller just fetched is the first mergeability answer (not asked for again).
 */
export async function describePendingUpdate(
  client: GitHubClient,
  config: GitHubConfig,
  pr: PullSummary | PullDetail,
  superseded: number[] = [],
  opts: DetectOptions = {},
): Promise<PendingUpdate> {
  return (await describe(client, config, pr, superseded, opts)).pending;
}

/** describePendingUpdate, also handing back flake.lock at the PR's base sha (read for the diff). */
async function describe(client: GitHubClient, config: GitHubConfig, pr: PullSummary | PullDetail, superseded: number[], opts: DetectOptions): Promise<{ pending: PendingUpdate; before: FileAtRef }> {
  const { diff: lockDiff, before } = await readLockDiff(client, config, pr);
  const [combined, checks] = [await client.getCombinedStatus(pr.head.sha), await client.listCheckRuns(pr.head.sha)];
  const ci = ciStateFrom(combined, checks);
  const { mergeable, mergeableState } = await mergeabilityOf(client, pr.number, opts.mergeableRetries ?? config.mergeableRetries, opts.mergeableRetryDelayMs ?? config.mergeableRetryDelayMs, "mergeable" in pr ? pr : undefined);
  const pending: PendingUpdate = {
    number: pr.number,
    title: pr.title,
    url: pr.html_url,
    headSha: pr.head.sha,
    headBranch: pr.head.ref,
    openedAt: new Date(pr.created_at).toISOString(),
    lockDiff,
    ci,
    mergeable,
    mergeableState,
    superseded,
  };
  return { pending, before };
}

/**
 * flake.lock at the PR's base sha vs. at its head sha (the real change). Falls back to the PR
 * body's "Flake lock file updates:" text only when the files cannot be diffed (e.g. unparseable).
 */
async function readLockDiff(client: GitHubClient, config: GitHubConfig, pr: PullSummary): Promise<{ diff: LockDiff; before: FileAtRef }> {
  const before = await client.getFile(config.lockPath, pr.base.sha);
  const after = await client.getFile(config.lockPath, pr.head.sha);
  try {
    return { diff: diffLocks(before.text, after.text), before };
  } catch (e) {
    const fromBody = lockDiffFromBody(pr.body);
    if (fromBody) return { diff: fromBody, before };
    throw new LockstepError(`cannot diff ${config.lockPath} of PR #${pr.number}: ${(e as Error).message}`, "lock-diff", "check that the PR's flake.lock is valid JSON", { cause: e });
  }
}

/** The PR body's own "Flake lock file updates:" block (what Nix printed), when present. */
export function lockDiffFromBody(body: string | null): LockDiff | null {
  return body ? parseLockUpdateText(body) : null;
}

/** GET the PR (unless `first` is that answer) until mergeable is not null ("computing"), at most `retries` extra times. */
export async function mergeabilityOf(client: GitHubClient, number: number, retries: number, delayMs: number, first?: PullDetail): Promise<{ mergeable: boolean | null; mergeableState: string }> {
  let pr = first ?? (await client.getPull(number));
  for (let i = 0; pr.mergeable === null && pr.state === "open" && i < retries; i++) {
    await sleep(delayMs);
    pr = await client.getPull(number);
  }
  return { mergeable: pr.mergeable, mergeableState: pr.mergeable_state };
}

/** What the fleet should run: base head, the lock's hash and age there, and the pending update. */
export async function fleetExpected(
  client: GitHubClient,
  config: GitHubConfig,
  pending: PendingUpdate | null,
  extra: { baseHead?: string; agentVersion?: string; now?: Date; /** flake.lock at `baseHead`, when already read. */ baseLock?: FileAtRef | null } = {},
): Promise<FleetExpected> {
  const head = extra.baseHead ?? (await client.getBranchHead(config.baseBranch));
  const lock = (extra.baseHead !== undefined ? extra.baseLock : null) ?? (await client.getFile(config.lockPath, head));
  let lastModified: number | undefined;
  try {
    lastModified = lockLastModified(parseFlakeLock(lock.text));
  } catch {
    lastModified = undefined; // an unreadable lock still has a hash; the Lock compartment reports it
  }
  const expected: FleetExpected = {
    repo: `${config.owner}/${config.repo}`,
    branch: config.baseBranch,
    headCommit: head,
    lockHash: lockHash(lock.bytes),
    pendingUpdate: pending,
    updatedAt: (extra.now ?? new Date()).toISOString(),
  };
  if (lastModified !== undefined) expected.lockLastModified = lastModified;
  if (extra.agentVersion !== undefined) expected.agentVersion = extra.agentVersion;
  return expected;
}
