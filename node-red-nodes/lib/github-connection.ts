/**
 * What the lockstep-github config node owns, without Node-RED: the GitHubClient (ETag cache,
 * throttling), one UpdateWatcher shared by every pr-watch node, and the merge and revert steps with
 * their guards. Nodes call these methods; nothing here knows about messages.
 */
import type { Logger } from "pino";
import { GitHubClient } from "../../github/client.js";
import { loadGitHubConfig, type GitHubConfig, type GitHubConfigInput } from "../../github/config.js";
import { changesMoreThanLock, describePendingUpdate, matchRules } from "../../github/detect.js";
import { assertMergeAllowed, mergeUpdate, MergeRefusedError, type CiGuard, type MergeResult } from "../../github/merge.js";
import { UpdateWatcher } from "../../github/poller.js";
import { revertLockUpdate, type RevertResult } from "../../github/revert.js";
import { LockstepError } from "../../protocol/errors.js";
import type { PendingUpdate } from "../../protocol/schemas.js";
import type { RevertCallback } from "../../rollout/engine.js";
import type { Node } from "./red.js";

export interface MergeGuardOptions {
  ci: CiGuard;
  /** Minimum time since the PR was opened. */
  minAgeMs: number;
}

export class NotAnUpdateError extends LockstepError {
  override name = "NotAnUpdateError";
  constructor(number: number, why: string) {
    super(`PR #${number} is not a lock-update PR Lockstep may merge: ${why}`, "not-an-update", "merge it by hand, or adjust the detection rules of the GitHub node");
  }
}

export class GitHubConnection {
  readonly config: GitHubConfig;
  readonly client: GitHubClient;
  readonly watcher: UpdateWatcher;

  constructor(input: GitHubConfigInput, logger: Logger) {
    this.config = loadGitHubConfig(input);
    this.client = new GitHubClient(this.config, { logger });
    this.watcher = new UpdateWatcher(this.client, this.config, { logger });
    // Errors are reported through the watcher state and the pr-watch nodes; never crash on them.
    this.watcher.on("error", () => undefined);
  }

  get repository(): string {
    return `${this.config.owner}/${this.config.repo}`;
  }

  /** A PR as a PendingUpdate (lock diff, CI, mergeability), refusing PRs that are not lock updates. */
  async describeUpdate(number: number): Promise<PendingUpdate> {
    const pr = await this.client.getPull(number);
    if (pr.state !== "open") throw new NotAnUpdateError(number, pr.merged ? "it is already merged" : "it is closed");
    if (pr.base.ref !== this.config.baseBranch) throw new NotAnUpdateError(number, `it targets ${pr.base.ref}, not ${this.config.baseBranch}`);
    if (matchRules(pr, this.config.detection).length === 0) throw new NotAnUpdateError(number, "it matches none of the detection rules (labels, title, head branch)");
    const notOnlyLock = await changesMoreThanLock(this.client, this.config, number);
    if (notOnlyLock) throw new NotAnUpdateError(number, `it ${notOnlyLock}`);
    return describePendingUpdate(this.client, this.config, pr);
  }

  /**
   * Merge PR `number` if the guards hold for its current state and its head is still
   * `expectedHeadSha` (when given). Throws MergeGuardError / MergeRefusedError / GitHubError.
   */
  async merge(number: number, guards: MergeGuardOptions, expectedHeadSha?: string): Promise<{ update: PendingUpdate; result: MergeResult }> {
    const update = await this.describeUpdate(number);
    if (expectedHeadSha && update.headSha !== expectedHeadSha) {
      throw new MergeRefusedError(
        "head-moved",
        number,
        409,
        `PR #${number} was not merged: its head moved from ${expectedHeadSha.slice(0, 12)} to ${update.headSha.slice(0, 12)} since it was checked`,
        "check again, review the new lock diff and CI, then merge",
      );
    }
    assertMergeAllowed(update, { ci: guards.ci, minAgeMs: guards.minAgeMs });
    // GitHub enforces the head too: a push between our check and the merge answers 409.
    const result = await mergeUpdate(this.client, this.config, { number, expectedHeadSha: update.headSha });
    void this.watcher.checkNow();
    return { update, result };
  }

  async revert(mergeCommitSha: string, reason: string, opts: { prNumber?: number; requestedBy?: string } = {}): Promise<RevertResult> {
    const result = await revertLockUpdate(this.client, this.config, { mergeCommitSha, reason, ...opts });
    void this.watcher.checkNow();
    return result;
  }

  /** The rollout engine's revert hook: a revert PR (or, in "commit" mode, the commit as its "url"). */
  readonly revertForRollout: RevertCallback = async (ctx) => {
    const r = await this.revert(ctx.commit, `rollout ${ctx.rolloutId} failed: ${ctx.reason}`, {
      ...(ctx.prNumber ? { prNumber: ctx.prNumber } : {}),
      requestedBy: "lockstep rollout",
    });
    return r.pullRequest ?? { number: 0, url: `commit ${r.commitSha} on ${r.branch}` };
  };

  async close(): Promise<void> {
    await this.watcher.stop();
  }
}

/** The runtime lockstep-github node as other nodes see it. */
export interface GitHubConfigNode extends Node {
  connection?: GitHubConnection;
  configError?: string;
  register(user: Node): void;
  deregister(user: Node): void;
}
