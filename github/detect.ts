/**
 * Finding THE pending lock update on GitHub, with its lock diff, CI state and mergeability, and
 * what the fleet should run (FleetExpected).
 *
 * Several matching PRs open at once, oldest first (earliest created_at, then lowest number): the
 * oldest is the pending update. A later PR that changes only inputs no earlier one changes (a
 * per-input updater opens one PR per input) joins it as another of its `parts`; a later PR that
 * changes an input an earlier one changes is `superseded` (after the merge its workflow rebases
 * it and it becomes the next pending update). A PR whose flake.lock cannot be read is `broken`:
 * reported, never described from its body text, never deployed. See docs/github.md.
 */
import { diffLocks, FlakeLockError, parseLockUpdateText, lockLastModified, parseFlakeLock, lockHash } from "../protocol/index.js";
import type { BrokenUpdate, CiState, FleetExpected, LockDiff, PendingPart, PendingUpdate } from "../protocol/index.js";
import { LockstepError } from "../protocol/errors.js";
import type { GitHubClient, PullSummary, PullDetail, CombinedStatus, CheckRunList, FileAtRef } from "./client.js";
import type { DetectionRules, GitHubConfig } from "./config.js";

export type MatchRule = "labels" | "title" | "headBranch";

/** `*` in a branch pattern matches any run of characters; everything else is literal. */
export function branchPatternMatches(pattern: string, branch: string): boolean {
  const re = new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
  return re.test(branch);
}

/** What the pure rules read of a PR. */
export interface PullFacts {
  title: string;
  head: { ref: string };
  body?: string | null;
}

/**
 * A PR made with GitHub's Revert button: title `Revert "…"`, head branch `revert-<n>-…`, or a body
 * starting "Reverts owner/repo#n". Reverting a lock update changes only flake.lock, so without
 * this check it would look like the next update.
 */
export function isRevertPull(pr: PullFacts): boolean {
  return /^Revert "/.test(pr.title.trim()) || /^revert-\d+-/.test(pr.head.ref) || /^\s*Reverts [\w.-]+\/[\w.-]+#\d+/.test(pr.body ?? "");
}

/** Which rules a PR matches (pure; the "only flake.lock" rule needs the files API, see below). */
export function matchRules(pr: PullFacts & { labels: { name: string }[] }, rules: DetectionRules): MatchRule[] {
  const matched: MatchRule[] = [];
  if (rules.excludeHeadBranchPatterns.some((p) => branchPatternMatches(p, pr.head.ref))) return matched;
  if (rules.ignoreReverts && isRevertPull(pr)) return matched;
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
  /** THE pending update (oldest matching PR, with the PRs that join it in `parts`), or null. */
  pending: PendingUpdate | null;
  /** Every matching PR whose lock could be read, oldest first (the first one is `pending`). */
  matches: MatchedPull[];
  /** PRs that matched a rule but were set aside (e.g. they touch more than flake.lock). */
  ignored: IgnoredPull[];
  /** Matching PRs whose flake.lock cannot be read: reported, never deployed. */
  broken: BrokenUpdate[];
  /** Head of the base branch when checked. */
  baseHead: string;
  /** The pending PR body's lock-update text parsed (shown beside the real diff), when it has one. */
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
  const candidates: { pr: PullSummary; rules: MatchRule[] }[] = [];
  const ignored: IgnoredPull[] = [];
  for (const pr of open) {
    if (config.detection.ignoreReverts && isRevertPull(pr)) {
      ignored.push({ number: pr.number, reason: "a revert (GitHub's Revert button) is never an update" });
      continue;
    }
    const rules = matchRules(pr, config.detection);
    if (rules.length === 0) continue;
    const notOnlyLock = await changesMoreThanLock(client, config, pr.number);
    if (notOnlyLock) {
      ignored.push({ number: pr.number, reason: notOnlyLock });
      continue;
    }
    candidates.push({ pr, rules });
  }
  candidates.sort((a, b) => (a.pr.created_at === b.pr.created_at ? a.pr.number - b.pr.number : a.pr.created_at < b.pr.created_at ? -1 : 1));

  // Read every candidate's lock diff: a PR whose lock cannot be read is broken, not an update.
  const readable: ({ pr: PullSummary; rules: MatchRule[] } & LockRead)[] = [];
  const broken: BrokenUpdate[] = [];
  for (const c of candidates) {
    const read = await readLockDiff(client, config, c.pr);
    if ("broken" in read) broken.push({ number: c.pr.number, title: c.pr.title, url: c.pr.html_url, reason: read.broken });
    else readable.push({ ...c, ...read });
  }
  const matches: MatchedPull[] = readable.map(({ pr, rules }) => ({ number: pr.number, title: pr.title, url: pr.html_url, headBranch: pr.head.ref, headSha: pr.head.sha, openedAt: pr.created_at, rules }));
  const first = readable[0];
  if (!first) return { pending: null, matches, ignored, broken, baseHead, bodyLockDiff: null, baseLock: null };

  const { together, superseded } = groupUpdates(readable, config.detection.groupDisjointPrs);
  const parts: PendingPart[] = [];
  for (const r of together) parts.push(await describePart(client, config, r.pr, r, opts));
  const pending: PendingUpdate = { ...parts[0]!, superseded: superseded.map((r) => r.pr.number) };
  if (parts.length > 1) pending.parts = parts;
  return { pending, matches, ignored, broken, baseHead, bodyLockDiff: lockDiffFromBody(first.pr.body), baseLock: first.pr.base.sha === baseHead ? first.before : null };
}

/**
 * The top-level inputs a diff changes ("home-manager" for "home-manager/nixpkgs"). Followers are
 * not changes of their own: their follows entries stay as they are in flake.lock.
 */
export function inputsChanged(diff: LockDiff): Set<string> {
  return new Set([...diff.updated, ...diff.added, ...diff.removed].map((c) => c.input.split("/")[0]!));
}

/**
 * Oldest first: a PR joins the update when it changes none of the inputs the PRs before it in the
 * update change (and changes something); otherwise it is superseded by them.
 */
export function groupUpdates<T extends { diff: LockDiff }>(oldestFirst: T[], groupDisjoint: boolean): { together: T[]; superseded: T[] } {
  const [first, ...rest] = oldestFirst;
  if (!first) return { together: [], superseded: [] };
  const together = [first];
  const superseded: T[] = [];
  const touched = inputsChanged(first.diff);
  for (const r of rest) {
    const mine = inputsChanged(r.diff);
    if (groupDisjoint && mine.size > 0 && touched.size > 0 && [...mine].every((i) => !touched.has(i))) {
      together.push(r);
      for (const i of mine) touched.add(i);
    } else superseded.push(r);
  }
  return { together, superseded };
}

/**
 * Lock diff, CI and mergeability of one PR, as the protocol's PendingUpdate. A PullDetail the
 * caller just fetched is the first mergeability answer (not asked for again). Throws a
 * LockstepError ("lock-diff") when the PR's flake.lock cannot be read.
 */
export async function describePendingUpdate(
  client: GitHubClient,
  config: GitHubConfig,
  pr: PullSummary | PullDetail,
  superseded: number[] = [],
  opts: DetectOptions = {},
): Promise<PendingUpdate> {
  const read = await readLockDiff(client, config, pr);
  if ("broken" in read) throw new LockstepError(`PR #${pr.number} is not a usable lock update: ${read.broken}`, "lock-diff", "fix the PR's flake.lock (nix flake lock) or close the PR");
  return { ...(await describePart(client, config, pr, read, opts)), superseded };
}

/** CI and mergeability of one PR with its lock diff. */
async function describePart(client: GitHubClient, config: GitHubConfig, pr: PullSummary | PullDetail, lock: LockRead, opts: DetectOptions): Promise<PendingPart> {
  const [combined, checks] = [await client.getCombinedStatus(pr.head.sha), await client.listCheckRuns(pr.head.sha)];
  const ci = ciStateFrom(combined, checks);
  const { mergeable, mergeableState } = await mergeabilityOf(client, pr.number, opts.mergeableRetries ?? config.mergeableRetries, opts.mergeableRetryDelayMs ?? config.mergeableRetryDelayMs, "mergeable" in pr ? pr : undefined);
  return {
    number: pr.number,
    title: pr.title,
    url: pr.html_url,
    headSha: pr.head.sha,
    headBranch: pr.head.ref,
    ...(pr.head.repo !== undefined ? { headRepo: pr.head.repo?.full_name ?? null } : {}),
    openedAt: new Date(pr.created_at).toISOString(),
    lockDiff: lock.diff,
    lockHash: lock.afterHash,
    ...(lock.afterLastModified !== undefined ? { lockLastModified: lock.afterLastModified } : {}),
    ci,
    mergeable,
    mergeableState,
  };
}

/**
 * flake.lock at the PR's base sha vs. at its head sha (the real change). A lock that cannot be
 * read makes the PR broken: its body text is never taken instead (it may say anything).
 */
interface LockRead {
  diff: LockDiff;
  before: FileAtRef;
  afterHash: string;
  afterLastModified: number | undefined;
}

async function readLockDiff(client: GitHubClient, config: GitHubConfig, pr: PullSummary): Promise<LockRead | { broken: string }> {
  const before = await client.getFile(config.lockPath, pr.base.sha);
  const after = await client.getFile(config.lockPath, pr.head.sha);
  try {
    const diff = diffLocks(before.text, after.text);
    return { diff, before, afterHash: lockHash(after.bytes), afterLastModified: lockLastModified(parseFlakeLock(after.text)) };
  } catch (e) {
    if (!(e instanceof FlakeLockError)) throw e;
    return { broken: `cannot read ${config.lockPath}: ${e.message}` };
  }
}

/** The PR body's own lock-update text (what Nix printed), when present: for display only. */
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
  extra: { baseHead?: string; agentVersion?: string; now?: Date; /** flake.lock at `baseHead`, when already read. */ baseLock?: FileAtRef | null; /** Detection's broken PRs. */ broken?: BrokenUpdate[] } = {},
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
  if (extra.broken?.length) expected.brokenUpdates = extra.broken;
  return expected;
}
