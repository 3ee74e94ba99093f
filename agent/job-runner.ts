/**
 * Commands in, jobs out: validates a command, remembers its id (a re-delivery runs once), admits
 * it (admission.ts), and runs it as a quick job beside others or as the one exclusive job, which
 * is persisted as in-flight while it runs. `finish` is the one end-of-job sequence for every
 * exclusive job, including activations resumed after a restart.
 */
import { Command, decodeJson, type CommandOf, type JobState } from "../protocol/index.js";
import { OP_POLICY, admissionRejection, policyOf, readLooseIdentity } from "./admission.js";
import type { Activation } from "./activation.js";
import type { AgentContext } from "./context.js";
import { InterruptedJob, Rejection, newRunningJob, type Outcome, type RunningJob } from "./job.js";
import type { JobInit } from "./job-topics.js";
import type { JobReporter } from "./jobs.js";
import { hold, release } from "./ops/hold.js";
import { preview } from "./ops/preview.js";
import { precheckPull, pull } from "./ops/pull.js";
import type { Refresher } from "./ops/refresh.js";
import { restart } from "./ops/restart.js";
import { precheckRollback, rollback, testAfterRollback } from "./ops/rollback.js";
import { report } from "./ops/report.js";
import { stop } from "./ops/stop.js";
import { precheckSwitch, switchSystem } from "./ops/switch.js";
import { test } from "./ops/test.js";
import { updateInputs } from "./ops/update-inputs.js";
import { ConfirmationWatch, finishUnconfirmedRollback, unconfirmedRollbackId } from "./magic-rollback.js";
import { confirm } from "./ops/confirm.js";
import { selfUpdateInProgress } from "./self-update/lock.js";
import { selfUpdateAwaitingJob } from "./self-update/confirmation.js";
import type { AwaitingConfirmation, InflightJob } from "./state.js";

export interface JobRunnerDeps {
  ctx: AgentContext;
  activation: Activation;
  refresher: Refresher;
  newReporter(init: JobInit): JobReporter;
  /** Publish a job's state again from the job history (`report`); undefined when none is kept. */
  publishAgain(id: string): JobState | undefined;
  /** Why the agent should restart after a successful activation (another agent is installed). */
  restartReason(): Promise<string | undefined>;
  /** Publish retained at QoS 1; true once the broker acknowledged it. */
  publishAcked(topic: string, payload: string, timeoutMs: number): Promise<boolean>;
  jobTopic(id: string): string;
  jobFinished(state: JobState): void;
  requestRestart(): void;
}

export class JobRunner {
  /** The exclusive job the host is busy with. */
  current: RunningJob | undefined;
  /** The switch waiting for the hub's confirmation, if one is (magic rollback). */
  readonly watch: ConfirmationWatch;

  constructor(private readonly d: JobRunnerDeps) {
    this.watch = new ConfirmationWatch(d.ctx, (pending) => void this.rollBackUnconfirmed(pending));
  }

  onCommand(payload: Buffer): void {
    const { ctx } = this.d;
    const decoded = decodeJson(Command, payload);
    if (!decoded.ok) {
      const { id, op } = readLooseIdentity(payload);
      if (!id) {
        ctx.log.warn({ error: decoded.error }, "ignoring a command without a usable id");
        return;
      }
      if (ctx.state.hasSeen(id)) return;
      ctx.state.markSeen(id);
      ctx.log.warn({ id, error: decoded.error }, "rejected malformed command");
      this.d.newReporter({ id, op: op ?? "unknown" }).set("rejected", { summary: "malformed command", error: decoded.error });
      return;
    }
    const cmd = decoded.value;
    if (ctx.state.hasSeen(cmd.id)) {
      ctx.log.info({ id: cmd.id, op: cmd.op }, "command id seen before: not running it again");
      return;
    }
    ctx.state.markSeen(cmd.id);
    if (cmd.op === "confirm" && this.selfUpdateAwaits(cmd.args.job)) {
      // The running `lockstep-agent self-update` waits for this one itself and reports it (self-update/confirmation.ts).
      ctx.log.info({ id: cmd.id, job: cmd.args.job }, "confirmation of a self-update run: left to that run");
      return;
    }
    const reporter = this.d.newReporter({
      id: cmd.id,
      op: cmd.op,
      // A report is an answer to the hub, not part of the host's job history.
      ...(cmd.op === "report" ? { transient: true } : {}),
      requestedBy: cmd.requestedBy,
      ...(cmd.rolloutId ? { rolloutId: cmd.rolloutId } : {}),
      ...(cmd.op === "pull" || (cmd.op === "switch" && cmd.args.commit) ? { commit: cmd.args.commit } : {}),
    });
    // A preview only answers a question about a PR: a job that changes this host (a rollout's pull or
    // switch) goes first, so the preview is cancelled instead of the job being refused as busy.
    const preview = this.current;
    if (preview?.op === "preview" && cmd.op !== "preview" && OP_POLICY[cmd.op].kind !== "quick") {
      ctx.log.info({ preview: preview.id, job: cmd.id, op: cmd.op }, "cancelling a preview for a job that changes the host");
      void stop(preview).then(() => this.admitAndRun(cmd, reporter));
      return;
    }
    this.admitAndRun(cmd, reporter);
  }

  /** Admission (one policy table), then the op: a quick job beside others, or the exclusive job. */
  private admitAndRun(cmd: Command, reporter: JobReporter): void {
    const { ctx } = this.d;
    const log = ctx.log.child({ job: cmd.id, op: cmd.op });
    const why = admissionRejection(cmd, {
      now: Date.now(),
      stopping: ctx.stopping(),
      ...(this.current ? { busyWith: { op: this.current.op, id: this.current.id } } : {}),
      ...(ctx.state.state.hold ? { hold: ctx.state.state.hold } : {}),
      selfUpdateBusy: () => this.selfUpdateBusy(),
    });
    if (why) {
      log.info({ why }, "command rejected");
      reporter.set("rejected", { summary: why, error: why });
      return;
    }
    log.info("command accepted");
    reporter.set("accepted");
    const policy = OP_POLICY[cmd.op];
    // A refresh's evaluation only fills a cache: it must not hold up a job that changes the checkout.
    if (policy.kind !== "quick") this.d.refresher.cancel();
    switch (cmd.op) {
      case "refresh":
        return void this.quickJob(reporter, () => this.d.refresher.run());
      case "hold":
        return void this.quickJob(reporter, async () => hold(ctx, cmd));
      case "release":
        return void this.quickJob(reporter, async () => release(ctx));
      case "stop":
        return void this.quickJob(reporter, () => stop(this.current, cmd.args.job));
      case "report":
        return void this.quickJob(reporter, async () => report(ctx, this.d, cmd));
      case "confirm":
        return void this.quickJob(reporter, async () => confirm(this.watch, cmd));
      case "restart":
        return restart(ctx, cmd, reporter, {
          adopt: (job) => (this.current = job),
          publishState: (done) => void this.d.publishAcked(this.d.jobTopic(cmd.id), JSON.stringify(reporter.state), 5000).then(done),
          requestExit: () => this.d.requestRestart(),
        });
      default:
        return void this.exclusiveJob(cmd, reporter);
    }
  }

  /**
   * Is this confirmation for a self-update run's switch (ids start with "self-update-"): a live run,
   * or one killed while it waited, which the next run finishes from its own MQTT session?
   */
  private selfUpdateAwaits(job: string): boolean {
    if (!job.startsWith("self-update-") || this.watch.pending()?.job === job) return false;
    return selfUpdateInProgress(this.d.ctx.paths.selfUpdateLock) !== null || selfUpdateAwaitingJob(this.d.ctx.config.stateDir) === job;
  }

  /** Why a job must wait for a running `lockstep-agent self-update`, if one runs. */
  private selfUpdateBusy(): string | undefined {
    const run = selfUpdateInProgress(this.d.ctx.paths.selfUpdateLock);
    return run ? `busy with a self-update run${run.pid ? ` (pid ${run.pid})` : ""}: send the command again when it has finished` : undefined;
  }

  /** A job that runs alongside others and touches nothing on the system. */
  private async quickJob(reporter: JobReporter, body: () => Promise<string>): Promise<void> {
    reporter.set("running");
    try {
      reporter.set("succeeded", { summary: await body(), exitCode: 0 });
    } catch (e) {
      reporter.set(e instanceof Rejection ? "rejected" : "failed", { summary: (e as Error).message, error: (e as Error).message });
    }
    this.d.jobFinished(reporter.state);
  }

  /** Op-specific checks before anything is touched (a Rejection ends the job as rejected). */
  private async precheck(cmd: Command, job: RunningJob): Promise<void> {
    const { ctx } = this.d;
    if (cmd.op === "pull") await precheckPull(ctx);
    if (cmd.op === "switch") await precheckSwitch(ctx, cmd, job);
    if (cmd.op === "rollback") await precheckRollback(ctx, cmd);
  }

  private runOp(cmd: Command, job: RunningJob, record: InflightJob): Promise<Outcome> {
    const { ctx, activation } = this.d;
    switch (cmd.op) {
      case "pull":
        return ctx.withGit(() => pull(ctx, cmd, job));
      case "switch":
        return switchSystem(ctx, activation, job, record);
      case "rollback":
        return rollback(ctx, activation, cmd, job, record);
      case "test":
        return test(ctx, job);
      case "update-inputs":
        return ctx.withGit(() => updateInputs(ctx, cmd as CommandOf<"update-inputs">, job));
      case "preview":
        return ctx.withGit(() => preview(ctx, cmd, job, (topic, payload) => this.d.publishAcked(topic, payload, 5000)));
      default:
        throw new Rejection(`op ${cmd.op} cannot run as a job`);
    }
  }

  /**
   * Run a job that needs the host to itself; persists it as in-flight while it runs. `unconfirmed`:
   * the rollback the agent starts by itself when a switch was not confirmed in time.
   */
  private async exclusiveJob(cmd: Command, reporter: JobReporter, unconfirmed?: AwaitingConfirmation): Promise<void> {
    const { ctx } = this.d;
    const { job, end } = newRunningJob({ id: cmd.id, op: cmd.op, reporter, touches: new Set(OP_POLICY[cmd.op].touches) });
    this.current = job;
    const refuse = (e: Error) => {
      this.current = undefined;
      end();
      reporter.set(e instanceof Rejection ? "rejected" : "failed", { summary: e.message, error: e.message });
      this.d.jobFinished(reporter.state);
    };
    try {
      await this.precheck(cmd, job);
    } catch (e) {
      // The rolled-back-to generation is gone or already current: nothing left to roll back.
      if (unconfirmed) this.watch.drop();
      return refuse(e as Error);
    }
    const startedAt = new Date().toISOString();
    const record: InflightJob = {
      id: cmd.id,
      op: cmd.op,
      acceptedAt: reporter.state.acceptedAt,
      startedAt,
      requestedBy: cmd.requestedBy,
      ...(cmd.rolloutId ? { rolloutId: cmd.rolloutId } : {}),
      ...(unconfirmed?.commitBefore ? { restoreCommit: unconfirmed.commitBefore } : {}),
      ...(unconfirmed ? { unconfirmedAfterSeconds: unconfirmed.timeoutSeconds } : {}),
      agentPid: process.pid,
    };
    ctx.inflight.write(record);
    // A self-update takes its lock and then looks for our in-flight record; we write that record and
    // then look for its lock. Whichever comes second sees the other: the two never both run.
    const selfUpdate = this.selfUpdateBusy();
    if (selfUpdate) {
      ctx.inflight.clear();
      if (unconfirmed) this.retryUnconfirmedLater();
      return refuse(new Rejection(selfUpdate));
    }
    // A new activation ends the wait for a confirmation: the hub has moved on (or this is the rollback).
    if (OP_POLICY[cmd.op].activates) this.watch.drop();
    reporter.set("running", { summary: `${cmd.op} running`, startedAt });
    void ctx.remeasure();
    const compute = async () => {
      let outcome = await this.runOp(cmd, job, record);
      if (unconfirmed) outcome = await finishUnconfirmedRollback(ctx, job, record, outcome);
      return cmd.op === "rollback" ? testAfterRollback(ctx, job, outcome) : outcome;
    };
    await this.finish(job, end, compute, OP_POLICY[cmd.op].activates);
  }

  /** No confirmation in time: roll back by itself (after cancelling a job in the way). */
  private async rollBackUnconfirmed(pending: AwaitingConfirmation): Promise<void> {
    const busy = this.current;
    if (busy?.op === "restart") return; // the next agent process re-arms the deadline
    if (busy) {
      busy.cancelled = true;
      busy.cancel();
      await Promise.race([busy.finished, new Promise((r) => setTimeout(r, 15_000).unref())]);
      if (this.current) return this.retryUnconfirmedLater();
    }
    const now = Date.now();
    const cmd: CommandOf<"rollback"> = {
      id: unconfirmedRollbackId(pending.job),
      op: "rollback",
      args: { generation: pending.generationBefore },
      requestedBy: "lockstep-agent (magic rollback)",
      issuedAt: new Date(now).toISOString(),
      expiresAt: new Date(now + 3_600_000).toISOString(),
      ...(pending.rolloutId ? { rolloutId: pending.rolloutId } : {}),
    };
    const reporter = this.d.newReporter({ id: cmd.id, op: cmd.op, requestedBy: cmd.requestedBy, ...(cmd.rolloutId ? { rolloutId: cmd.rolloutId } : {}) });
    await this.exclusiveJob(cmd, reporter, pending);
  }

  private retryUnconfirmedLater(): void {
    setTimeout(() => this.watch.arm(), 10_000).unref();
  }

  /**
   * The end of every exclusive job (also an activation resumed after a restart): compute the
   * outcome, report it, then either restart into the installed agent (`mayRestart`: an activation
   * that succeeded may have installed another agent) or clear the in-flight record and go idle.
   */
  async finish(job: RunningJob, end: () => void, compute: () => Promise<Outcome>, mayRestart: boolean): Promise<void> {
    const { ctx } = this.d;
    let outcome: Outcome | undefined;
    let failure: { state: "failed" | "rejected" | "interrupted"; message: string; extra?: Partial<JobState> } | undefined;
    try {
      outcome = await compute();
    } catch (e) {
      failure =
        e instanceof InterruptedJob
          ? // Only reachable if the runner died without a result (it was killed from outside).
            { state: "interrupted", message: e.message, extra: e.generations }
          : { state: e instanceof Rejection ? "rejected" : "failed", message: (e as Error).message, extra: { error: (e as Error).message } };
    }
    if (ctx.stopping()) return; // stop() already reported it (or the runner's result will be read on start)
    if (job.op === "switch" && !job.cancelled && outcome?.state === "succeeded") {
      // Persisted before the final state goes out: the deadline must hold even if we die right after.
      const confirmBy = this.watch.expect(job, outcome, job.reporter.state.rolloutId);
      if (confirmBy) outcome = { ...outcome, confirmBy, summary: `${outcome.summary}; awaiting the hub's confirmation until ${confirmBy}` };
    }
    let restartWhy: string | undefined;
    if (mayRestart && !job.cancelled && outcome?.state === "succeeded") {
      restartWhy = await this.d.restartReason();
      if (restartWhy) outcome = { ...outcome, summary: `${outcome.summary}; restarting the agent (${restartWhy})` };
    }
    if (ctx.stopping()) return;
    if (job.cancelled) job.reporter.set("cancelled", { summary: `${job.op} cancelled by stop` });
    else if (failure) job.reporter.set(failure.state, { summary: failure.message, ...failure.extra });
    else if (outcome) {
      const { state, ...rest } = outcome;
      job.reporter.set(state, rest);
    }
    end();
    if (restartWhy && !job.cancelled) return this.restartAfterActivation(job, restartWhy);
    ctx.inflight.clear();
    if (this.current === job) this.current = undefined;
    await ctx.remeasure();
    this.d.jobFinished(job.reporter.state);
  }

  /**
   * The activation's final state is out; now exit for the supervisor to start the installed agent.
   * The host stays busy until the process is gone. The in-flight record is kept until the broker
   * acknowledged the final state: otherwise the next agent reports it again from the runner's result.
   */
  private async restartAfterActivation(job: RunningJob, why: string): Promise<void> {
    const { ctx } = this.d;
    this.current = newRunningJob({ id: job.id, op: "restart", reporter: job.reporter, touches: new Set() }).job;
    this.d.jobFinished(job.reporter.state);
    // Publishes the Agent compartment "running X but Y is installed: restart the agent" on the way out.
    await ctx.remeasure();
    ctx.log.info({ why }, "exiting so the supervisor starts the installed agent");
    const acked = await this.d.publishAcked(this.d.jobTopic(job.id), JSON.stringify(job.reporter.state), 5000);
    if (acked) ctx.inflight.clear();
    else ctx.log.warn({ job: job.id }, "the broker did not confirm the job's final state; the restarted agent reports it again");
    this.d.requestRestart();
  }

  /** The agent stops: a job in the detached runner keeps going (the next start reports it); others end here. */
  onAgentStop(): void {
    const job = this.current;
    if (job && !policyOf(job.op).outlivesAgent) {
      job.cancelled = true;
      job.cancel();
      job.reporter.set("interrupted", { summary: "agent stopped while the job ran" });
      this.d.ctx.inflight.clear();
    }
    job?.reporter.flush();
  }
}
