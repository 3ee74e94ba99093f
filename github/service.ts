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
import { updateParts } from "../protocol/pending-update.js";
import type { AuditEvent, PendingPart, PendingUpdate } from "../protocol/schemas.js";
import { lockHash } from "../protocol/lock-hash.js";
import { GitHubClient } from "./client.js";
import { loadGitHubConfig, type GitHubConfig, type GitHubConfigInput } from "./config.js";
import { changesMoreThanLock, describePendingUpdate, detectPendingUpdate, matchRules } from "./detect.js";
import { NotAnUpdateError, type GitHubError } from "./errors.js";
import { assertUpdateMergeAllowed, mergeInOrder, MergeRefusedError, PartialMergeError, type CiGuard, type MergeResult } from "./merge.js";
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
  /** An update merged as several PRs: the first one's merge commit; the revert restores the lock from before it. */
  firstMergeCommit?: string;
  prNumber?: number;
  reason: string;
}

/** What the caller checked: the head of the PR it names, and (for an update of several PRs) the parts it saw. */
export interface MergeExpectation {
  headSha?: string;
  parts?: { number: number; headSha?: string }[];
}

/** A merged update: `merged` in order; `result` is the last merge, whose commit has them all (what to deploy). */
export interface UpdateMerge {
  update: PendingUpdate;
  result: MergeResult;
  merged: MergeResult[];
  /** Set when the PR was Lockstep's own revert of a failed rollout's update. */
  revert?: RevertMarker;
  /** sha256 of flake.lock at the last merge commit (when it could be read). */
  mergedLockHash?: string;
}

/** Refuse before any merge when the parts (or a head) are not what the caller checked. */
function assertExpectedParts(number: number, parts: PendingPart[], want: MergeExpectation): void {
  const first = parts[0]!;
  if (want.headSha && first.headSha !== want.headSha) {
    throw new MergeRefusedError(
      "head-moved",
      number,
      409,
      `PR #${number} was not merged: its head moved from ${want.headSha.slice(0, 12)} to ${first.headSha.slice(0, 12)} since it was checked`,
      "check again, review the new lock diff and CI, then merge",
    );
  }
  if (!want.parts) return;
  const list = (ns: number[]) => ns.map((n) => `#${n}`).join(", ");
  const now = parts.map((p) => p.number);
  const seen = want.parts.map((p) => p.number);
  if (now.join() !== seen.join()) {
    throw new MergeRefusedError("parts-changed", number, 409, `the update was not merged: it is now ${list(now)}, not ${list(seen)} as checked`, "check again, review every part's lock diff and CI, then merge");
  }
  const moved = want.parts.find((w, i) => w.headSha && w.headSha !== parts[i]!.headSha);
  if (moved) {
    throw new MergeRefusedError("head-moved", moved.number, 409, `the update was not merged: PR #${moved.number}'s head moved from ${moved.headSha!.slice(0, 12)} since it was checked`, "check again, review the new lock diff and CI, then merge");
  }
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
   * Merge PR `number` if the guards hold for its current state and its head is still the one the
   * caller checked. When `number` is THE pending update and it is made of several PRs (`parts`),
   * every part is merged, oldest first, after the guards and heads of ALL parts were checked;
   * `expected.parts`, when given, must be exactly the parts the caller saw (no part joined or
   * left since). Throws MergeGuardError / MergeRefusedError / NotAnUpdateError / GitHubError with
   * nothing merged, or PartialMergeError when a later part was refused after earlier ones landed
   * (its `landedCommit` is what to deploy). Each merge and each refusal is an audit event.
   */
  async merge(number: number, guards: MergeGuardOptions, expected?: string | MergeExpectation, requestedBy = "lockstep"): Promise<UpdateMerge> {
    const want: MergeExpectation = typeof expected === "string" ? { headSha: expected } : (expected ?? {});
    let update: PendingUpdate | undefined;
    try {
      const target = await this.updateToMerge(number, want);
      const revert = target.revert;
      update = target.update;
      const parts = updateParts(update);
      assertExpectedParts(number, parts, want);
      assertUpdateMergeAllowed(update, { ci: guards.ci, minAgeMs: guards.minAgeMs });
      // GitHub enforces each head too: a push between our check and the merge answers 409.
      const merged = await mergeInOrder(this.client, this.config, parts, {
        onMerged: (r) => {
          const pr = { number: r.number, headSha: r.headSha, mergeCommitSha: r.mergeCommitSha };
          this.audit(revert ? revertMergedEvent(this.repository, { ...pr, revertedCommit: revert.merge, rolloutId: revert.rollout, revertedPr: revert.pr }, requestedBy) : prMergedEvent(this.repository, pr, requestedBy));
        },
      });
      void this.watcher.checkNow();
      // What the merge commit locks: a preview of the PR head carries over to it when the locks are the same.
      const last = merged.at(-1)!;
      const mergedLockHash = await this.client.getFile(this.config.lockPath, last.mergeCommitSha).then(
        (f) => lockHash(f.bytes),
        (err: unknown) => void this.log.warn({ err, commit: last.mergeCommitSha }, "cannot read flake.lock at the merge commit"),
      );
      return { update, result: last, merged, ...(revert ? { revert } : {}), ...(mergedLockHash ? { mergedLockHash } : {}) };
    } catch (err) {
      if (err instanceof PartialMergeError) {
        err.update = update;
        void this.watcher.checkNow();
        for (const p of err.notMerged) this.audit(mergeRefusedEvent(this.repository, p.number, { code: err.code, reason: p.reason }, requestedBy));
      } else if (err instanceof LockstepError) this.audit(mergeRefusedEvent(this.repository, number, { code: err.code, reason: err.message }, requestedBy));
      throw err;
    }
  }

  /**
   * THE pending update (freshly detected) when `number` is its first PR; otherwise PR `number`
   * alone (a lock update or Lockstep's own revert).
   */
  private async updateToMerge(number: number, want: MergeExpectation): Promise<{ update: PendingUpdate; revert?: RevertMarker }> {
    const wantsSeveral = (want.parts?.length ?? 0) > 1;
    if (this.config.detection.groupDisjointPrs || wantsSeveral) {
      const { pending } = await detectPendingUpdate(this.client, this.config);
      if (pending?.number === number) return { update: pending };
    }
    return this.describeMergeable(number);
  }

  async revert(mergeCommitSha: string, reason: string, opts: { prNumber?: number; requestedBy?: string; rolloutId?: string } = {}): Promise<RevertResult> {
    const result = await revertLockUpdate(this.client, this.config, { mergeCommitSha, reason, ...opts });
    void this.watcher.checkNow();
    return result;
  }

  /** The rollout engine's revert hook: a revert PR (or, in "commit" mode, the commit as its "url"). */
  readonly revertForRollout = async (ctx: RolloutRevertRequest): Promise<{ number: number; url: string; commit?: string }> => {
    // Every part of an update merged as several PRs is undone: the lock from before the first merge.
    const r = await this.revert(ctx.firstMergeCommit ?? ctx.commit, `rollout ${ctx.rolloutId} failed: ${ctx.reason}`, {
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
