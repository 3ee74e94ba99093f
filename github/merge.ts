/**
 * Merging the pending lock update, safely.
 *
 * The merge call always carries the head sha the caller checked (`sha` parameter): if anybody
 * pushed to the PR since, GitHub refuses with 409 and nothing unreviewed is merged. The result is
 * the merge commit sha on the base branch: exactly what a rollout deploys.
 *
 * Guards the caller checks first (pure functions): CI green, and a minimum age since the PR
 * was opened (a grace period in which a human can look at it).
 */
import { updateParts, type PendingPart, type PendingUpdate } from "../protocol/index.js";
import { LockstepError } from "../protocol/errors.js";
import type { GitHubClient } from "./client.js";
import type { GitHubConfig, MergeMethod } from "./config.js";
import { GitHubError } from "./errors.js";

export type MergeRefusal = "not-mergeable" | "head-moved" | "checks-failed" | "invalid" | "base-modified" | "parts-changed";

/** GitHub refused the merge; `reason` says why in one word, the message in words. */
export class MergeRefusedError extends LockstepError {
  override name = "MergeRefusedError";
  constructor(
    readonly reason: MergeRefusal,
    readonly prNumber: number,
    readonly status: number,
    message: string,
    hint: string,
    options?: { cause?: unknown },
  ) {
    super(message, `merge-${reason}`, hint, options);
  }
}

export type GuardFailure = "ci-not-green" | "too-young" | "not-mergeable" | "mergeability-unknown";

/** One guard that said no; `pr` names the part of a multi-PR update it is about. */
export interface GuardFailureDetail {
  guard: GuardFailure;
  detail: string;
  pr?: number;
}

/** A guard said no before anything was sent to GitHub (for an update of several PRs: before the first merge). */
export class MergeGuardError extends LockstepError {
  override name = "MergeGuardError";
  constructor(
    readonly failures: GuardFailureDetail[],
    readonly prNumber: number,
    /** The CI state that held the merge back ("pending" means: wait, not refuse; any part failing makes it "failure"). */
    readonly ciState?: PendingUpdate["ci"]["state"],
  ) {
    super(`PR #${prNumber} is not ready to merge: ${failures.map((f) => f.detail).join("; ")}`, "merge-guard", "wait for CI and the minimum age, or merge by hand");
  }
}

/**
 * An update of several PRs stopped after some of them were merged: a later part was refused
 * (typically a real conflict, since every per-input PR rewrites flake.lock and GitHub can only
 * tell once the earlier part is on the base branch). `merged` landed and stays; `landedCommit`
 * is the base-branch commit they produced, which is what to deploy; `notMerged` are still open.
 */
export class PartialMergeError extends LockstepError {
  override name = "PartialMergeError";
  constructor(
    readonly merged: MergeResult[],
    readonly notMerged: { number: number; reason: string }[],
    options?: { cause?: unknown },
  ) {
    const landed = merged.at(-1)!.mergeCommitSha;
    const list = (ns: number[]) => ns.map((n) => `#${n}`).join(", ");
    super(
      `merged ${list(merged.map((m) => m.number))} (base branch now at ${landed.slice(0, 12)}), then stopped: ${notMerged.map((p) => p.reason).join("; ")}`,
      "merge-partial",
      `deploy ${landed.slice(0, 12)} (what landed); ${list(notMerged.map((p) => p.number))} stay${notMerged.length === 1 ? "s" : ""} open: once rebased on the new base (its updater does this on its next run, or resolve the conflict by hand) it is the next pending update`,
      options,
    );
  }

  /** The update the parts belong to (set by the merge use case), for each part's lock diff. */
  update?: PendingUpdate;

  /** The base-branch commit the merged parts produced: what the rollout deploys. */
  get landedCommit(): string {
    return this.merged.at(-1)!.mergeCommitSha;
  }
}

/** What CI must say: "success" (default), "not-failing" (pending is fine), or "ignore". */
export type CiGuard = "success" | "not-failing" | "ignore";

export interface MergeGuards {
  ci?: CiGuard;
  /** Minimum time since the PR was opened, in ms. Default 0. */
  minAgeMs?: number;
  /** Refuse when GitHub says mergeable: false, or has not decided (null). Default true. */
  requireMergeable?: boolean;
  now?: Date;
}

/** Check the guards against a detected update. Pure; returns the failures (empty = go). */
export function checkMergeGuards(update: PendingUpdate, guards: MergeGuards = {}): { guard: GuardFailure; detail: string }[] {
  const failures: { guard: GuardFailure; detail: string }[] = [];
  const ci = guards.ci ?? "success";
  if ((ci === "success" && update.ci.state !== "success") || (ci === "not-failing" && update.ci.state === "failure")) {
    failures.push({ guard: "ci-not-green", detail: `CI is ${update.ci.state}${update.ci.summary ? ` (${update.ci.summary})` : ""}` });
  }
  const minAge = guards.minAgeMs ?? 0;
  const age = (guards.now ?? new Date()).getTime() - Date.parse(update.openedAt);
  if (age < minAge) {
    failures.push({ guard: "too-young", detail: `opened ${Math.round(age / 60_000)} min ago, minimum is ${Math.round(minAge / 60_000)} min` });
  }
  if (guards.requireMergeable ?? true) {
    if (update.mergeable === false) failures.push({ guard: "not-mergeable", detail: `GitHub says it is not mergeable (${update.mergeableState ?? "?"})` });
    else if (update.mergeable === null || update.mergeable === undefined) failures.push({ guard: "mergeability-unknown", detail: "GitHub has not computed mergeability yet" });
  }
  return failures;
}

/** Throws MergeGuardError when a guard fails. */
export function assertMergeAllowed(update: PendingUpdate, guards: MergeGuards = {}): void {
  const failures = checkMergeGuards(update, guards);
  if (failures.length) throw new MergeGuardError(failures, update.number, update.ci.state);
}

/**
 * The guards for every part of an update at once, before anything is merged: one MergeGuardError
 * lists every part that is not ready ("PR #12: CI is pending"), so an update is never half merged
 * for a reason that was known before the first merge.
 */
export function assertUpdateMergeAllowed(update: PendingUpdate, guards: MergeGuards = {}): void {
  const parts = updateParts(update);
  if (parts.length === 1) return assertMergeAllowed(update, guards);
  const failures: GuardFailureDetail[] = [];
  const notGreen: PendingPart["ci"]["state"][] = [];
  for (const part of parts) {
    const mine = checkMergeGuards({ ...part, superseded: [] }, guards);
    if (mine.some((f) => f.guard === "ci-not-green")) notGreen.push(part.ci.state);
    failures.push(...mine.map((f) => ({ ...f, pr: part.number, detail: `PR #${part.number}: ${f.detail}` })));
  }
  if (failures.length === 0) return;
  const ciState = notGreen.includes("failure") ? "failure" : (notGreen[0] ?? update.ci.state);
  throw new MergeGuardError(failures, update.number, ciState);
}

export interface MergeRequest {
  number: number;
  /** The head sha that was checked (CI, diff). The merge only happens if the head is still this. */
  expectedHeadSha: string;
  method?: MergeMethod;
  commitTitle?: string;
  commitMessage?: string;
}

export interface MergeResult {
  number: number;
  method: MergeMethod;
  /** The new commit on the base branch (merge, squash or last rebased commit): what to deploy. */
  mergeCommitSha: string;
  headSha: string;
}

/**
 * Merge a PR with the head-SHA guard. Throws MergeRefusedError for 405 (not mergeable), 409
 * (head moved / conflict) and 422 (required check failed / invalid request); other failures
 * are GitHubErrors.
 */
export async function mergeUpdate(client: GitHubClient, config: GitHubConfig, req: MergeRequest): Promise<MergeResult> {
  const method = req.method ?? config.mergeMethod;
  const log = client.logger.child({ op: "merge", pr: req.number, method });
  try {
    const sha = await client.mergePull(req.number, { sha: req.expectedHeadSha, method, commitTitle: req.commitTitle, commitMessage: req.commitMessage });
    log.info({ mergeCommit: sha, head: req.expectedHeadSha }, `merged PR #${req.number}`);
    return { number: req.number, method, mergeCommitSha: sha, headSha: req.expectedHeadSha };
  } catch (e) {
    const refused = refusalFor(e, req);
    if (refused) {
      log.warn({ reason: refused.reason, status: refused.status }, refused.message);
      throw refused;
    }
    throw e;
  }
}

export interface MergeInOrderOptions {
  method?: MergeMethod;
  /** Told after each merge, in order (the service audits each one). */
  onMerged?: (result: MergeResult) => void;
  /** How often, and how far apart, a "base branch was modified" answer is retried. Default: the config's mergeableRetries / mergeableRetryDelayMs. */
  retries?: number;
  retryDelayMs?: number;
}

/**
 * Merge the PRs of one update one after the other, in the order given (oldest first), each with
 * its head guard. A refusal before anything is merged is thrown as is (MergeRefusedError,
 * GitHubError); a refusal after a merge is a PartialMergeError naming what landed and what did
 * not. Returns every merge, in order: the last one's commit has them all.
 */
export async function mergeInOrder(client: GitHubClient, config: GitHubConfig, parts: { number: number; headSha: string }[], opts: MergeInOrderOptions = {}): Promise<MergeResult[]> {
  const merged: MergeResult[] = [];
  for (const [i, part] of parts.entries()) {
    try {
      const req: MergeRequest = { number: part.number, expectedHeadSha: part.headSha, ...(opts.method ? { method: opts.method } : {}) };
      const result = merged.length === 0 ? await mergeUpdate(client, config, req) : await mergeAfterBaseChange(client, config, req, opts);
      merged.push(result);
      opts.onMerged?.(result);
    } catch (e) {
      if (merged.length === 0) throw e;
      const why = e instanceof MergeRefusedError ? e.message : `the merge of PR #${part.number} failed and may or may not have happened (${(e as Error).message}): look at the PR`;
      const notMerged = [{ number: part.number, reason: why }, ...parts.slice(i + 1).map((p) => ({ number: p.number, reason: `PR #${p.number} was not attempted` }))];
      throw new PartialMergeError(merged, notMerged, { cause: e });
    }
  }
  return merged;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** GitHub answers 405 "Base branch was modified" while it takes in the previous merge: ask again, a bounded number of times. */
async function mergeAfterBaseChange(client: GitHubClient, config: GitHubConfig, req: MergeRequest, opts: MergeInOrderOptions): Promise<MergeResult> {
  const retries = opts.retries ?? config.mergeableRetries;
  for (let attempt = 0; ; attempt++) {
    try {
      return await mergeUpdate(client, config, req);
    } catch (e) {
      if (!(e instanceof MergeRefusedError && e.reason === "base-modified") || attempt >= retries) throw e;
      await sleep(opts.retryDelayMs ?? config.mergeableRetryDelayMs);
    }
  }
}

function refusalFor(e: unknown, req: MergeRequest): MergeRefusedError | null {
  if (!(e instanceof GitHubError) || e.status === undefined) return null;
  const n = req.number;
  const said = e.githubMessage ?? "";
  const githubText = said ? ` GitHub said: "${said}"` : "";
  switch (e.status) {
    case 405:
      // Right after another merge GitHub may not have taken in the new base yet: a retry helps.
      if (/base branch was modified/i.test(said)) {
        return new MergeRefusedError("base-modified", n, 405, `PR #${n} was not merged: the base branch had just changed (405).${githubText}`, "try again in a few seconds", { cause: e });
      }
      return new MergeRefusedError("not-mergeable", n, 405, `PR #${n} is not mergeable (405).${githubText}`, "resolve conflicts or satisfy branch protection (reviews, required checks), then try again", { cause: e });
    case 409:
      return new MergeRefusedError(
        "head-moved",
        n,
        409,
        `PR #${n} was not merged: its head is no longer ${req.expectedHeadSha.slice(0, 12)} (409).${githubText}`,
        "someone pushed to the PR after it was checked: detect again, review the new lock diff and CI, then merge",
        { cause: e },
      );
    case 422: {
      const checks = /check|status/i.test(said);
      return new MergeRefusedError(
        checks ? "checks-failed" : "invalid",
        n,
        422,
        checks ? `PR #${n} was not merged: a required check has not passed (422).${githubText}` : `PR #${n} was not merged: GitHub rejected the request (422).${githubText}`,
        checks ? "wait for the required checks to pass" : "check the merge method is allowed in the repository settings",
        { cause: e },
      );
    }
    default:
      return null;
  }
}
