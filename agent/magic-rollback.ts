/**
 * Magic rollback, deploy-rs's dead man's switch for a pull-based fleet. After a switch that moved
 * the generation, the agent persists what it switched from and a deadline (confirmTimeoutSeconds),
 * then waits for the hub's `confirm {job}`. A switch that cut the host off (network, broker
 * credentials, the agent itself) can never be confirmed: at the deadline the agent rolls the
 * system back to the previous generation and the checkout back to the commit it was built from,
 * and reports `rolled-back: no confirmation within N s` once it is connected again.
 *
 * The deadline lives in agent-state.json, so an agent restarted (or killed) during the window
 * still rolls back; a confirmation, or a new switch/rollback the hub sends, ends the wait.
 */
import type { AgentContext } from "./context.js";
import { step } from "./context.js";
import { describeGitFailure } from "./git.js";
import { Rejection, short, type Outcome, type RunningJob } from "./job.js";
import type { AwaitingConfirmation, InflightJob } from "./state.js";

export class ConfirmationWatch {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ctx: AgentContext,
    private readonly onExpired: (pending: AwaitingConfirmation) => void,
  ) {}

  /**
   * A switch succeeded: persist the deadline (before the job's final state goes out) and arm the
   * timer. Returns the deadline, or undefined when nothing needs confirming (magicRollback off,
   * or the generation did not move).
   */
  expect(job: Pick<RunningJob, "id">, outcome: Outcome, rolloutId?: string): string | undefined {
    const { config, state } = this.ctx;
    const before = outcome.generationBefore;
    const after = outcome.generationAfter;
    if (!config.magicRollback || before === undefined || after === undefined || before === after) return undefined;
    const deadline = new Date(Date.now() + config.confirmTimeoutSeconds * 1000).toISOString();
    const commitBefore = state.state.generations[String(before)]?.commit;
    state.update(
      (s) =>
        (s.awaitingConfirmation = {
          job: job.id,
          deadline,
          timeoutSeconds: config.confirmTimeoutSeconds,
          generationBefore: before,
          generationAfter: after,
          ...(commitBefore ? { commitBefore } : {}),
          ...(rolloutId ? { rolloutId } : {}),
        }),
    );
    this.arm();
    return deadline;
  }

  /** (Re)start the timer for the persisted deadline; one already past fires at once. */
  arm(): void {
    this.disarm();
    const pending = this.ctx.state.state.awaitingConfirmation;
    if (!pending) return;
    const delay = Math.max(0, Date.parse(pending.deadline) - Date.now());
    this.ctx.log.info({ job: pending.job, deadline: pending.deadline }, "waiting for the hub to confirm the switch");
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.ctx.state.state.awaitingConfirmation?.job !== pending.job || this.ctx.stopping()) return;
      this.ctx.log.warn({ job: pending.job, timeoutSeconds: pending.timeoutSeconds }, "no confirmation in time: rolling back");
      this.onExpired(pending);
    }, delay);
  }

  /** The hub's `confirm {job}`: the switch stays. */
  confirm(jobId: string): string {
    const pending = this.ctx.state.state.awaitingConfirmation;
    if (!pending) throw new Rejection(`switch ${jobId} is not awaiting confirmation (nothing is)`);
    if (pending.job !== jobId) throw new Rejection(`switch ${jobId} is not awaiting confirmation (${pending.job} is)`);
    this.drop();
    return `confirmed switch ${jobId}: keeping generation ${pending.generationAfter}`;
  }

  /** Stop waiting (confirmed, or superseded by the next activation); returns what was pending. */
  drop(): AwaitingConfirmation | undefined {
    this.disarm();
    const pending = this.ctx.state.state.awaitingConfirmation;
    if (pending) this.ctx.state.update((s) => delete s.awaitingConfirmation);
    return pending;
  }

  disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** The rollback job the agent starts by itself: an id derived from the switch's (ids are at most 80 chars). */
export function unconfirmedRollbackId(switchJobId: string): string {
  return `${switchJobId.slice(0, 68)}-unconfirmed`;
}

/** After the system rolled back: the checkout goes back too, and the summary says why it all happened. */
export async function finishUnconfirmedRollback(ctx: AgentContext, job: RunningJob, rec: InflightJob, outcome: Outcome): Promise<Outcome> {
  const why = `no confirmation within ${rec.unconfirmedAfterSeconds ?? ctx.config.confirmTimeoutSeconds} s`;
  if (outcome.state !== "succeeded") return { ...outcome, summary: `${why}; rolling back failed: ${outcome.summary}` };
  let checkout: string;
  if (!rec.restoreCommit) {
    checkout = "checkout left as it is (the previous generation's commit is unknown)";
  } else {
    const commit = rec.restoreCommit;
    const r = await ctx.withGit(() => step(ctx, job, ["git", ...ctx.checkout.checkoutArgs(commit)], { cwd: ctx.checkout.dir, timeoutMs: ctx.config.timeouts.pullSeconds * 1000 }));
    checkout = r.exitCode === 0 ? `checkout back at ${short(commit)}` : `checkout not restored: ${describeGitFailure("checkout", r)}`;
  }
  return { ...outcome, summary: `rolled-back: ${why}; ${outcome.summary.replace(/^rolled back: /, "")}; ${checkout}` };
}
