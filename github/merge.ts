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
import type { PendingUpdate } from "../protocol/index.js";
import { LockstepError } from "../protocol/errors.js";
import type { GitHubClient } from "./client.js";
import type { GitHubConfig, MergeMethod } from "./config.js";
import { GitHubError } from "./errors.js";

export type MergeRefusal = "not-mergeable" | "head-moved" | "checks-failed" | "invalid";

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

/** A guard said no before anything was sent to GitHub. */
export class MergeGuardError extends LockstepError {
  override name = "MergeGuardError";
  constructor(
    readonly failures: { guard: GuardFailure; detail: string }[],
    readonly prNumber: number,
    /** The PR's CI state when the guards were checked ("pending" means: wait, not refuse). */
    readonly ciState?: PendingUpdate["ci"]["state"],
  ) {
    super(`PR #${prNumber} is not ready to merge: ${failures.map((f) => f.detail).join("; ")}`, "merge-guard", "wait for CI and the minimum age, or merge by hand");
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

function refusalFor(e: unknown, req: MergeRequest): MergeRefusedError | null {
  if (!(e instanceof GitHubError) || e.status === undefined) return null;
  const n = req.number;
  const said = e.githubMessage ?? "";
  const githubText = said ? ` GitHub said: "${said}"` : "";
  switch (e.status) {
    case 405:
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
