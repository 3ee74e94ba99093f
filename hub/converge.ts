/**
 * A failure ends in a green fleet: merging Lockstep's own revert of a failed rollout's update, and
 * the "converge" rollout that follows it, as one use case.
 *
 *   merge-revert   the API / page (POST /api/flake-updates/merge-revert), or automatic mode with
 *                  `automatic.mergeReverts` once the revert's CI passes: check the rollout it would
 *                  start, merge (github/service.ts: guards, head check, "revert.merged"), let the
 *                  watcher publish the revert commit as fleet head, start the converge rollout.
 *   commit mode    a revert committed directly on the base branch has already landed when the
 *                  failed rollout ends: the converge rollout starts right away.
 *
 * The converge rollout deploys the revert commit with `lockHash` set to the restored lock, so hosts
 * that already run what it builds (rolled back, or never switched) are planned "pull only" (see
 * rollout/planner.ts); hosts that kept the update switch back. It links to the failed rollout
 * (`converges`), never reverts itself (a revert of a revert is no way back) and has no canary or
 * soak: it returns the fleet to what it ran before.
 */
import type { Logger } from "pino";
import { z } from "zod";
import { LockstepError, lockHash, type RolloutProgress } from "../protocol/index.js";
import type { CiGuard } from "../github/merge.js";
import { MergeGuardError } from "../github/merge.js";
import { NotAnUpdateError, type GitHubService } from "../github/service.js";
import type { RolloutService } from "../rollout/service.js";
import { mergeSpecLayers, type RolloutSpecInput } from "../rollout/spec.js";
import { apiErrorBody } from "../node-red-nodes/lib/api-errors.js";
import type { RequestHandler } from "./node-red.js";
import type { AutomaticPause } from "../rollout/automatic-pause.js";

/** Stands in for the commit while the plan is checked before the merge that makes it. */
const NOT_YET_MERGED = "0".repeat(40);

export interface ConvergeStarted {
  rolloutId: string;
  commit: string;
  prNumber?: number;
  /** The failed rollout this one converges, when the revert names it. */
  converges?: string;
}

export interface RevertConvergerOptions {
  github: GitHubService;
  rollouts: RolloutService;
  log: Logger;
  /** The hub's rollout defaults (config.rollout), under the converge rollout's own settings. */
  rolloutDefaults?: Record<string, unknown>;
  /** automatic.mergeReverts: merge an open Lockstep revert by itself once its CI passes. */
  mergeAutomatically?: boolean;
}

export class RevertConverger {
  private readonly log: Logger;
  /** Revert PRs automatic mode gave up on (not a revert after all, refused by GitHub): not tried again. */
  private readonly givenUp = new Set<number>();
  private autoMerging = false;
  private readonly unsubscribe: Array<() => void> = [];

  constructor(private readonly o: RevertConvergerOptions) {
    this.log = o.log.child({ component: "converge" });
  }

  /** Watch for reverts that landed by themselves (commit mode) and, with mergeReverts, for revert PRs to merge. */
  start(): void {
    const onDone = (p: RolloutProgress) => void this.afterFailedRollout(p);
    this.o.rollouts.events.on("done", onDone);
    this.unsubscribe.push(() => this.o.rollouts.events.off("done", onDone));
    if (this.o.mergeAutomatically) {
      const onChecked = () => void this.mergeOpenRevert();
      this.o.github.watcher.on("checked", onChecked);
      this.unsubscribe.push(() => this.o.github.watcher.off("checked", onChecked));
    }
  }

  stop(): void {
    for (const u of this.unsubscribe.splice(0)) u();
  }

  /** The converge rollout's spec for `commit` (the revert commit on the base branch). */
  spec(commit: string, extra: Pick<RolloutSpecInput, "prNumber" | "lockDiff" | "lockHash" | "converges">): RolloutSpecInput {
    const own = { onFailure: "halt", revertOnFailure: false, strategy: { canary: 0, soakMs: 0 } };
    const fixed = Object.fromEntries(Object.entries({ commit, ...extra }).filter(([, v]) => v !== undefined));
    return mergeSpecLayers(this.o.rolloutDefaults ?? {}, own, fixed) as RolloutSpecInput;
  }

  /**
   * Merge Lockstep's revert PR `prNumber` (default: the newest open one) and converge the fleet onto
   * it. Throws before merging when it is not such a revert, when a guard fails, or when the rollout
   * could not start (hosts busy, nothing to deploy).
   */
  async mergeRevert(opts: { prNumber?: number; requestedBy: string; ci?: CiGuard }): Promise<ConvergeStarted> {
    const { github, rollouts } = this.o;
    const number = opts.prNumber ?? (await github.openRevert())?.number;
    if (number === undefined) throw new LockstepError("there is no open Lockstep revert PR", "not-found", "a failed rollout with revertOnFailure opens one; nothing to merge now");
    const described = await github.describeMergeable(number);
    if (!described.revert) throw new NotAnUpdateError(number, "it is not Lockstep's revert of a failed rollout: merge lock updates with /api/flake-updates/merge-and-deploy");
    const extra = {
      prNumber: number,
      lockDiff: described.update.lockDiff,
      lockHash: described.update.lockHash,
      ...(described.revert.rollout ? { converges: described.revert.rollout } : {}),
    };
    // The rollout is checked before the merge, so a request that cannot converge never merges.
    rollouts.check(this.spec(NOT_YET_MERGED, extra));
    const { result } = await github.merge(number, { ci: opts.ci ?? "not-failing", minAgeMs: 0 }, described.update.headSha, opts.requestedBy);
    return this.converge(result.mergeCommitSha, extra, opts.requestedBy);
  }

  /** Start the converge rollout once the watcher names `commit` as the fleet head (the health gates compare with it). */
  private async converge(commit: string, extra: Parameters<RevertConverger["spec"]>[1], requestedBy: string): Promise<ConvergeStarted> {
    await this.o.github.watcher.checkNow();
    const rolloutId = this.o.rollouts.start(this.spec(commit, extra), requestedBy);
    this.log.info({ rolloutId, commit, converges: extra.converges, pr: extra.prNumber }, "converging the fleet onto the revert");
    return { rolloutId, commit, ...(extra.prNumber !== undefined ? { prNumber: extra.prNumber } : {}), ...(extra.converges ? { converges: extra.converges } : {}) };
  }

  /** A failed rollout whose revert was committed directly (commit mode): that revert has landed, converge now. */
  private async afterFailedRollout(p: RolloutProgress): Promise<void> {
    const commit = p.revertPr?.commit;
    if (!commit || p.revertPr?.number !== 0) return;
    try {
      const lock = await this.o.github.client.getFile(this.o.github.config.lockPath, commit);
      await this.converge(commit, { lockHash: lockHash(lock.bytes), converges: p.id }, "lockstep revert");
    } catch (err) {
      this.log.error({ err, rolloutId: p.id, commit }, "cannot converge the fleet onto the revert commit: start a rollout of it by hand");
    }
  }

  /** automatic.mergeReverts: after each GitHub check, merge the open Lockstep revert once its CI passes. */
  private async mergeOpenRevert(): Promise<void> {
    if (this.autoMerging) return;
    this.autoMerging = true;
    try {
      const open = await this.o.github.openRevert();
      if (!open || this.givenUp.has(open.number)) return;
      const started = await this.mergeRevert({ prNumber: open.number, requestedBy: "lockstep automatic (mergeReverts)", ci: "success" });
      this.log.info({ ...started }, `merged revert PR #${open.number} automatically`);
    } catch (err) {
      if (err instanceof MergeGuardError) return this.log.debug({ pr: err.prNumber, reason: err.message }, "revert PR not ready to merge yet");
      const code = (err as { code?: string }).code ?? "";
      // Busy hosts or GitHub hiccups: the next check tries again. A PR that is no revert, or that GitHub refuses, is left to people.
      if (err instanceof NotAnUpdateError || code.startsWith("merge-")) {
        const n = /#(\d+)/.exec((err as Error).message)?.[1];
        if (n) this.givenUp.add(Number(n));
      }
      this.log.warn({ err }, "automatic merge of the revert PR failed");
    } finally {
      this.autoMerging = false;
    }
  }
}

const MergeRevertBody = z.strictObject({ pr_number: z.number().int().positive().optional() });

/** `POST /api/flake-updates/merge-revert` {pr_number?}: 202 {rollout_id, commit, pr_number, converges}. Runs after the API auth. */
export function mergeRevertHandler(converger: () => RevertConverger | undefined): RequestHandler {
  return (req, res, next) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(JSON.stringify(body));
    };
    const c = converger();
    if (!c) return send(503, apiErrorBody("no GitHub repository is configured", "config"));
    const parsed = MergeRevertBody.safeParse((req as { body?: unknown }).body ?? {});
    if (!parsed.success) return send(400, apiErrorBody(`send JSON {"pr_number": N} (optional): ${parsed.error.issues[0]?.message ?? "invalid"}`, "message"));
    const user = (req as { lockstepUser?: { name: string } }).lockstepUser;
    c.mergeRevert({ ...(parsed.data.pr_number ? { prNumber: parsed.data.pr_number } : {}), requestedBy: `api:${user?.name ?? "unknown"}` }).then(
      (s) => send(202, { rollout_id: s.rolloutId, commit: s.commit, pr_number: s.prNumber, converges: s.converges }),
      (err: unknown) => next?.(err),
    );
  };
}

/** `POST /api/automatic/resume`: automatic mode merges again after a failed rollout paused it. 200 {resumed, state}. */
export function resumeHandler(automatic: () => AutomaticPause | undefined): RequestHandler {
  return (req, res) => {
    res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
    const a = automatic();
    const user = (req as { lockstepUser?: { name: string } }).lockstepUser;
    const resumed = a ? a.resume(`api:${user?.name ?? "unknown"}`) : false;
    res.end(JSON.stringify({ resumed, state: a?.state ?? null }));
  };
}
