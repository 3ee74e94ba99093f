/**
 * Magic rollback, deploy-rs's dead man's switch for a pull-based fleet. After a switch that moved
 * the generation, the agent persists what it switched from and a deadline (confirmTimeoutSeconds),
 * then waits for the hub's `confirm {job}`. A switch that cut the host off (network, broker
 * credentials, the agent itself) can never be confirmed: at the deadline the agent rolls the
 * system back to the previous generation and the checkout back to the commit it was built from,
 * and reports `rolled-back: no confirmation within N s` once it is connected again.
 *
 * The deadline lives in <stateDir>/awaiting-confirmation.json (confirmation-deadline.ts, shared with
 * the self-update), so an agent restarted (or killed) during the window still rolls back; a
 * confirmation, or a new switch/rollback the hub sends, ends the wait.
 */
import type { AgentContext } from "./context.js";
import { step } from "./context.js";
import { confirmationDeadline, msUntilDeadline, PendingConfirmation, PendingConfirmationFile } from "./confirmation-deadline.js";
import { describeGitFailure } from "./git.js";
import { Rejection, short, type Outcome, type RunningJob } from "./job.js";
import type { InflightJob } from "./state.js";

export class ConfirmationWatch {
  private timer: NodeJS.Timeout | undefined;
  private readonly store: PendingConfirmationFile<typeof PendingConfirmation>;

  constructor(
    private readonly ctx: AgentContext,
    private readonly onExpired: (pending: PendingConfirmation) => void,
  ) {
    this.store = new PendingConfirmationFile(ctx.paths.awaitingConfirmation, PendingConfirmation, (why) =>
      ctx.log.error({ file: ctx.paths.awaitingConfirmation, why }, "the switch awaiting confirmation was unreadable; moved aside, not rolling back"),
    );
    this.adoptLegacy();
  }

  /** An agent before 2026-12 (the one a switch just replaced) kept the deadline in agent-state.json. */
  private adoptLegacy(): void {
    const legacy = this.ctx.state.state.awaitingConfirmation;
    if (legacy === undefined) return;
    const r = PendingConfirmation.safeParse(legacy);
    if (r.success && !this.store.exists()) this.store.write(r.data);
    this.ctx.state.update((s) => delete s.awaitingConfirmation);
  }

  /** The switch waiting for its confirmation, if one is. */
  pending(): PendingConfirmation | undefined {
    return this.store.read();
  }

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
    const deadline = confirmationDeadline(config.confirmTimeoutSeconds);
    const commitBefore = state.state.generations[String(before)]?.commit;
    this.store.write({
      job: job.id,
      deadline,
      timeoutSeconds: config.confirmTimeoutSeconds,
      generationBefore: before,
      generationAfter: after,
      ...(commitBefore ? { commitBefore } : {}),
      ...(rolloutId ? { rolloutId } : {}),
    });
    this.arm();
    return deadline;
  }

  /** (Re)start the timer for the persisted deadline; one already past fires at once. */
  arm(): void {
    this.disarm();
    const pending = this.pending();
    if (!pending) return;
    this.ctx.log.info({ job: pending.job, deadline: pending.deadline }, "waiting for the hub to confirm the switch");
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.pending()?.job !== pending.job || this.ctx.stopping()) return;
      this.ctx.log.warn({ job: pending.job, timeoutSeconds: pending.timeoutSeconds }, "no confirmation in time: rolling back");
      this.onExpired(pending);
    }, msUntilDeadline(pending));
  }

  /** The hub's `confirm {job}`: the switch stays. */
  confirm(jobId: string): string {
    const pending = this.pending();
    if (!pending) throw new Rejection(`switch ${jobId} is not awaiting confirmation (nothing is)`);
    if (pending.job !== jobId) throw new Rejection(`switch ${jobId} is not awaiting confirmation (${pending.job} is)`);
    this.drop();
    return `confirmed switch ${jobId}: keeping generation ${pending.generationAfter}`;
  }

  /** Stop waiting (confirmed, or superseded by the next activation); returns what was pending. */
  drop(): PendingConfirmation | undefined {
    this.disarm();
    const pending = this.pending();
    if (pending) this.store.clear();
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
