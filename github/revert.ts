/**
 * Reverting a merged lock update: put the previous flake.lock back on the base branch, byte for
 * byte. Only the lock file is restored (a lock-update PR changes nothing else; `git revert` of a
 * merge commit is not available through the REST API).
 *
 * Modes:
 * - "pr" (default): branch `lockstep/revert-<short sha>` from the base head (git refs API), commit
 *   the old lock there (contents API PUT), open a PR saying what is reverted and why.
 * - "commit": commit the old lock directly on the base branch (contents API PUT). Needs push
 *   access to the base branch past branch protection.
 */
import { lockHash, diffLocks, formatLockDiff } from "../protocol/index.js";
import { LockstepError } from "../protocol/errors.js";
import type { GitHubClient } from "./client.js";
import type { GitHubConfig, RevertMode } from "./config.js";
import { GitHubError } from "./errors.js";
import { REVERT_BRANCH_PREFIX, revertMarkerLine } from "./own-revert.js";

export class RevertError extends LockstepError {
  override name = "RevertError";
  constructor(message: string, code: "revert-nothing-to-do" | "revert-branch-exists" | "revert-no-parent", hint: string) {
    super(message, code, hint);
  }
}

export interface RevertRequest {
  /** The commit the merge produced (MergeResult.mergeCommitSha): its first parent has the old lock. */
  mergeCommitSha: string;
  /** Why (shown in the commit and PR): e.g. "rollout r-12 failed on alpha: switch exit 1". */
  reason: string;
  mode?: RevertMode;
  /** The PR that was merged, for the message. */
  prNumber?: number;
  /** Who asked (audit). */
  requestedBy?: string;
  /** The rollout that failed: named in the revert's marker, so the revert's merge and the convergence link back to it. */
  rolloutId?: string;
}

export interface RevertResult {
  mode: RevertMode;
  /** The commit that restores the old lock (on the revert branch or the base branch). */
  commitSha: string;
  branch: string;
  pullRequest?: { number: number; url: string };
  /** lockHash of the restored lock: equals the hash before the merge. */
  restoredLockHash: string;
}

/** Restore flake.lock as it was before `mergeCommitSha`. See the module comment for the modes. */
export async function revertLockUpdate(client: GitHubClient, config: GitHubConfig, req: RevertRequest): Promise<RevertResult> {
  const mode = req.mode ?? config.revertMode;
  const log = client.logger.child({ op: "revert", mode, mergeCommit: req.mergeCommitSha });
  const merge = await client.getCommit(req.mergeCommitSha);
  const before = merge.parents[0];
  if (!before) throw new RevertError(`commit ${req.mergeCommitSha.slice(0, 12)} has no parent`, "revert-no-parent", "pass the merge commit of the lock update");
  const oldLock = await client.getFile(config.lockPath, before);
  const baseHead = await client.getBranchHead(config.baseBranch);
  const current = await client.getFile(config.lockPath, baseHead);
  if (current.bytes.equals(oldLock.bytes)) {
    throw new RevertError(`${config.lockPath} on ${config.baseBranch} already equals the lock before ${req.mergeCommitSha.slice(0, 12)}`, "revert-nothing-to-do", "nothing to revert");
  }
  let changes = "";
  try {
    changes = formatLockDiff(diffLocks(current.text, oldLock.text), { separator: "\n- " });
  } catch {
    changes = "(lock diff unavailable)";
  }
  const short = req.mergeCommitSha.slice(0, 12);
  const pr = req.prNumber ? ` (PR #${req.prNumber})` : "";
  const title = `Revert ${config.lockPath} to before ${short}${pr}`;
  // What makes it Lockstep's own revert (github/own-revert.ts): never an update, mergeable as the fleet's way back.
  const marker = revertMarkerLine({ merge: req.mergeCommitSha, ...(req.rolloutId ? { rollout: req.rolloutId } : {}), ...(req.prNumber ? { pr: req.prNumber } : {}) });
  const message = [
    title,
    "",
    `Reason: ${req.reason}`,
    "",
    `Restores ${config.lockPath} byte for byte from ${before} (the first parent of ${req.mergeCommitSha}).`,
    `Input changes undone:\n- ${changes}`,
    req.requestedBy ? `\nRequested by: ${req.requestedBy}` : "",
    marker,
  ].join("\n");

  if (mode === "commit") {
    const put = await client.putFile({ path: config.lockPath, branch: config.baseBranch, bytes: oldLock.bytes, blobSha: current.blobSha, message });
    log.info({ commit: put.commitSha }, `reverted ${config.lockPath} on ${config.baseBranch}`);
    return { mode, commitSha: put.commitSha, branch: config.baseBranch, restoredLockHash: lockHash(oldLock.bytes) };
  }

  const branch = `${REVERT_BRANCH_PREFIX}${short}`;
  try {
    await client.createBranch(branch, baseHead);
  } catch (e) {
    if (e instanceof GitHubError && e.status === 422 && /already exists/i.test(e.githubMessage ?? "")) {
      throw new RevertError(`branch ${branch} already exists: a revert of ${short} is probably open already`, "revert-branch-exists", `look for the open revert PR, or delete the branch ${branch} and try again`);
    }
    throw e;
  }
  const put = await client.putFile({ path: config.lockPath, branch, bytes: oldLock.bytes, blobSha: current.blobSha, message });
  const body = [
    `Lockstep reverts the lock update merged in ${req.mergeCommitSha}${pr}.`,
    "",
    `**Why:** ${req.reason}`,
    "",
    `This restores \`${config.lockPath}\` byte for byte from ${before}. Input changes undone:`,
    "",
    `- ${changes}`,
    req.requestedBy ? `\nRequested by ${req.requestedBy}.` : "",
    "",
    marker,
  ].join("\n");
  const opened = await client.createPull({ title, head: branch, base: config.baseBranch, body });
  log.info({ commit: put.commitSha, pr: opened.number }, `opened revert PR #${opened.number}`);
  return { mode, commitSha: put.commitSha, branch, pullRequest: opened, restoredLockHash: lockHash(oldLock.bytes) };
}
