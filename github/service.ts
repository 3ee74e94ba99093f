/**
 * The GitHub service: the client (ETag cache, throttling), one UpdateWatcher, and the merge use
 * case (describe the PR, check its head, the guards, merge, re-check) and the revert. The hub
 * builds one; a stock Node-RED's lockstep-github node builds its own. Nothing here knows about
 * Node-RED messages. Every merge asked for ends in an audit event: "pr.merged" or
 * "merge.refused" with the reason.
 */
import type { Logger } from "pino";
import { gitHubFailedEvent, mergeRefusedEvent, prMergedEvent, revertMergedEvent } from "../protocol/audit.js";
import { LockstepError } from "../protocol/errors.js";
import type { AuditEvent, PendingUpdate } from "../protocol/schemas.js";
import { GitHubClient } from "./client.js";
import { loadGitHubConfig, type GitHubConfig, type GitHubConfigInput } from "./config.js";
import { changesMoreThanLock, describePendingUpdate, matchRules } from "./detect.js";
import { NotAnUpdateError, type GitHubError } from "./errors.js";
import { assertMergeAllowed, mergeUpdate, MergeRefusedError, type CiGuard, type MergeResult } from "./merge.js";
import { UpdateWatcher } from "./poller.js";
import { revertLockUpdate, type RevertResult } from "./revert.js";
import { describeLockstepRevert, lockstepRevertOf, openLockstepReverts, type RevertMarker } from "./own-revert.js";

export { NotAnUpdateError } from "./errors.js";

export interface MergeGuardOptions {
  ci: CiGuard;
  /** Minimum time since the PR was opened. */
  minAgeMs: number;
}

/** What a revert of a failed rollout needs (the rollout engine's RevertCallback has this shape). */
export interface RolloutRevertRequest {
  rolloutId: string;
  commit: string;
  prNumber?: number;
  reason: string;
}

const FAILURE_AUDIT_EVERY_MS = 10 * 60_000;

export interface GitHubServiceOptions {
  /** Where "pr.merged", "merge.refused" and "github.failed" go (the hub: fleet/events). A failure is logged, never thrown. */
  audit?: (event: AuditEvent) => Promise<void> | void;
}

export class GitHubService {
  readonly config: GitHubConfig;
  readonly client: GitHubClient;
  readonly watcher: UpdateWatcher;
  private readonly log: Logger;

  constructor(
    input: GitHubConfigInput,
    logger: Logger,
    private readonly opts: GitHubServiceOptions = {},
  ) {
    this.config = loadGitHubConfig(input);
    this.log = logger;
    this.client = new GitHubClient(this.config, { logger });
    this.watcher = new UpdateWatcher(this.client, this.config, { logger });
    // Errors are reported through the watcher state and the pr-watch nodes; never crash on them.
    this.watcher.on("error", () => undefined);
    this.client.onFailure((e) => this.auditFailure(e));
  }

  /** When each kind of failure (code + call) was last audited: an outage is one entry per 10 minutes, not one per poll. */
  private readonly lastAudited = new Map<string, number>();

  private auditFailure(e: GitHubError): void {
    const key = `${e.code} ${e.route}`;
    const now = Date.now();
    if (now - (this.lastAudited.get(key) ?? -Infinity) < FAILURE_AUDIT_EVERY_MS) return;
    this.lastAudited.set(key, now);
    this.audit(gitHubFailedEvent(this.repository, { code: e.code, status: e.status, route: e.route, message: e.message }));
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
   * What may be merged as PR `number`: a lock update, or Lockstep's own revert of a failed
   * rollout's update (the fleet's way back; `revert` says what it reverts).
   */
  async describeMergeable(number: number): Promise<{ update: PendingUpdate; revert?: RevertMarker }> {
    const pr = await this.client.getPull(number);
    if (pr.state === "open" && lockstepRevertOf(pr)) {
      const r = await describeLockstepRevert(this.client, this.config, pr);
      return { update: r.update, revert: r.marker };
    }
    return { update: await this.describeUpdate(number) };
  }

  /** The newest open Lockstep revert PR, or undefined. */
  async openRevert(): Promise<{ number: number; marker: RevertMarker } | undefined> {
    return openLockstepReverts(await this.client.listOpenPulls(this.config.baseBranch))[0];
  }

  /**
   * Merge PR `number` if the guards hold for its current state and its head is still
   * `expectedHeadSha` (when given). Throws MergeGuardError / MergeRefusedError / NotAnUpdateError /
   * GitHubError; each refusal is also an audit event with its reason.
   */
  async merge(number: number, guards: MergeGuardOptions, expectedHeadSha?: string, requestedBy = "lockstep"): Promise<{ update: PendingUpdate; result: MergeResult; revert?: RevertMarker }> {
    try {
      const { update, revert } = await this.describeMergeable(number);
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
      const merged = { number, headSha: update.headSha, mergeCommitSha: result.mergeCommitSha };
      this.audit(
        revert
          ? revertMergedEvent(this.repository, { ...merged, revertedCommit: revert.merge, rolloutId: revert.rollout, revertedPr: revert.pr }, requestedBy)
          : prMergedEvent(this.repository, merged, requestedBy),
      );
      void this.watcher.checkNow();
      return { update, result, ...(revert ? { revert } : {}) };
    } catch (err) {
      if (err instanceof LockstepError) this.audit(mergeRefusedEvent(this.repository, number, { code: err.code, reason: err.message }, requestedBy));
      throw err;
    }
  }

  async revert(mergeCommitSha: string, reason: string, opts: { prNumber?: number; requestedBy?: string; rolloutId?: string } = {}): Promise<RevertResult> {
    const result = await revertLockUpdate(this.client, this.config, { mergeCommitSha, reason, ...opts });
    void this.watcher.checkNow();
    return result;
  }

  /** The rollout engine's revert hook: a revert PR (or, in "commit" mode, the commit as its "url"). */
  readonly revertForRollout = async (ctx: RolloutRevertRequest): Promise<{ number: number; url: string; commit?: string }> => {
    const r = await this.revert(ctx.commit, `rollout ${ctx.rolloutId} failed: ${ctx.reason}`, {
      ...(ctx.prNumber ? { prNumber: ctx.prNumber } : {}),
      rolloutId: ctx.rolloutId,
      requestedBy: "lockstep rollout",
    });
    return r.pullRequest ?? { number: 0, url: `commit ${r.commitSha} on ${r.branch}`, commit: r.commitSha };
  };

  private audit(event: AuditEvent): void {
    if (!this.opts.audit) return;
    Promise.resolve()
      .then(() => this.opts.audit!(event))
      .catch((err: unknown) => this.log.error({ err, action: event.action }, "cannot publish a GitHub audit event"));
  }

  async close(): Promise<void> {
    await this.watcher.stop();
  }
}
