/**
 * Lockstep's own reverts: the fleet's way back after a failed rollout (github/revert.ts opens them).
 *
 * Detection never takes a revert for an update (detect.ts); these are recognised on their own, and
 * only Lockstep's: head branch `lockstep/revert-<sha>` AND the marker revert.ts writes into the PR
 * body (an HTML comment naming the reverted merge commit, the failed rollout and the update PR).
 * A marker is only a claim, so a revert is also checked against the repository before it can be
 * merged: it changes flake.lock alone, and its flake.lock is byte for byte the one before the
 * reverted merge (the lock the fleet ran before). A forged "revert" can therefore only restore a
 * lock the base branch really had.
 */
import { z } from "zod";
import { diffLocks, lockHash } from "../protocol/index.js";
import { CommitSha } from "../protocol/schemas.js";
import type { PendingUpdate } from "../protocol/index.js";
import { LockstepError } from "../protocol/errors.js";
import type { GitHubClient, PullDetail, PullSummary } from "./client.js";
import type { GitHubConfig } from "./config.js";
import { changesMoreThanLock, ciStateFrom, mergeabilityOf, type PullFacts } from "./detect.js";
import { NotAnUpdateError } from "./errors.js";

/** The head branch prefix of every revert PR Lockstep opens. */
export const REVERT_BRANCH_PREFIX = "lockstep/revert-";

/** What a Lockstep revert says about itself (in the PR body, or a commit message in "commit" mode). */
export const RevertMarker = z.object({
  /** The merge commit whose lock update is reverted. */
  merge: CommitSha,
  /** The rollout that failed and asked for the revert. */
  rollout: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/).optional(),
  /** The update PR that was merged. */
  pr: z.number().int().positive().optional(),
});
export type RevertMarker = z.infer<typeof RevertMarker>;

const MARKER_RE = /<!-- lockstep-revert (\{[^\n]{0,400}\}) -->/;

/** The marker line revert.ts puts into a revert PR's body and commit message. */
export function revertMarkerLine(m: RevertMarker): string {
  return `<!-- lockstep-revert ${JSON.stringify(RevertMarker.parse(m))} -->`;
}

/** The marker in a PR body or commit message, or undefined (absent or not valid). */
export function readRevertMarker(text: string | null | undefined): RevertMarker | undefined {
  const m = text ? MARKER_RE.exec(text) : null;
  if (!m) return undefined;
  try {
    const r = RevertMarker.safeParse(JSON.parse(m[1]!));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/** Lockstep's own revert PR (its branch and its marker), or undefined. Pure. */
export function lockstepRevertOf(pr: PullFacts): RevertMarker | undefined {
  if (!pr.head.ref.startsWith(REVERT_BRANCH_PREFIX)) return undefined;
  return readRevertMarker(pr.body);
}

/** A Lockstep revert PR, described like an update (so the same guards and merge apply), with what it reverts. */
export interface RevertDescription {
  update: PendingUpdate;
  marker: RevertMarker;
  /** lockHash of the restored flake.lock: what the fleet runs again once it is merged. */
  restoredLockHash: string;
}

/**
 * Check that open PR `pr` is Lockstep's revert and really restores the lock from before the merge it
 * names; describe it with CI and mergeability. Throws NotAnUpdateError saying what is wrong.
 */
export async function describeLockstepRevert(client: GitHubClient, config: GitHubConfig, pr: PullDetail | PullSummary): Promise<RevertDescription> {
  const marker = lockstepRevertOf(pr);
  if (!marker) throw new NotAnUpdateError(pr.number, `it is not a Lockstep revert (head branch ${REVERT_BRANCH_PREFIX}… with the revert marker in its description)`);
  if (pr.state !== "open") throw new NotAnUpdateError(pr.number, "it is closed");
  if (pr.base.ref !== config.baseBranch) throw new NotAnUpdateError(pr.number, `it targets ${pr.base.ref}, not ${config.baseBranch}`);
  const notOnlyLock = await changesMoreThanLockAlways(client, config, pr.number);
  if (notOnlyLock) throw new NotAnUpdateError(pr.number, `it ${notOnlyLock}`);
  const merge = await client.getCommit(marker.merge);
  const before = merge.parents[0];
  if (!before) throw new NotAnUpdateError(pr.number, `the commit it names (${marker.merge.slice(0, 12)}) has no parent`);
  const [restored, wanted, current] = [await client.getFile(config.lockPath, pr.head.sha), await client.getFile(config.lockPath, before), await client.getFile(config.lockPath, pr.base.sha)];
  if (!restored.bytes.equals(wanted.bytes)) {
    throw new NotAnUpdateError(pr.number, `its ${config.lockPath} is not the one from before ${marker.merge.slice(0, 12)} (${before.slice(0, 12)}): it restores nothing the fleet ran`);
  }
  let lockDiff: PendingUpdate["lockDiff"];
  try {
    lockDiff = diffLocks(current.text, restored.text);
  } catch (e) {
    throw new LockstepError(`PR #${pr.number}: cannot read ${config.lockPath}: ${(e as Error).message}`, "lock-diff", "fix the PR's flake.lock or close it");
  }
  const [combined, checks] = [await client.getCombinedStatus(pr.head.sha), await client.listCheckRuns(pr.head.sha)];
  const { mergeable, mergeableState } = await mergeabilityOf(client, pr.number, config.mergeableRetries, config.mergeableRetryDelayMs, "mergeable" in pr ? pr : undefined);
  const restoredLockHash = lockHash(restored.bytes);
  const update: PendingUpdate = {
    number: pr.number,
    title: pr.title,
    url: pr.html_url,
    headSha: pr.head.sha,
    headBranch: pr.head.ref,
    openedAt: new Date(pr.created_at).toISOString(),
    lockDiff,
    lockHash: restoredLockHash,
    ci: ciStateFrom(combined, checks),
    mergeable,
    mergeableState,
    superseded: [],
  };
  return { update, marker, restoredLockHash };
}

/** "only flake.lock" holds for reverts whatever detection.onlyFlakeLock says. */
function changesMoreThanLockAlways(client: GitHubClient, config: GitHubConfig, number: number): Promise<string | undefined> {
  return changesMoreThanLock(client, { ...config, detection: { ...config.detection, onlyFlakeLock: true } }, number);
}

/** Open Lockstep reverts among `open` PRs (newest first): the ones `merge-revert` without a number may take. */
export function openLockstepReverts(open: PullSummary[]): Array<{ number: number; marker: RevertMarker }> {
  return open
    .flatMap((pr) => {
      const marker = lockstepRevertOf(pr);
      return marker ? [{ number: pr.number, marker }] : [];
    })
    .sort((a, b) => b.number - a.number);
}
