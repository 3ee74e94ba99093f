/**
 * Activation (switch, rollback) in the detached switch runner, and restart recovery.
 *
 * The agent writes a plan, starts switch-runner.js in its own process group (a switch may restart
 * the agent itself), persists the in-flight record before anything is activated, and streams the
 * runner's log into the job. The outcome comes from the runner's result file or, when the runner
 * died without one, from the profile. On start, `resumeInflight` reports the job a previous agent
 * process left behind; every path ends in the job runner's one end-of-job sequence (`finish`).
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { JobState } from "../protocol/index.js";
import { policyOf } from "./admission.js";
import type { AgentContext } from "./context.js";
import { InterruptedJob, newRunningJob, type Outcome, type RunningJob } from "./job.js";
import type { JobInit } from "./job-topics.js";
import type { JobReporter } from "./jobs.js";
import { profilePathOf, type Step } from "./os-profiles.js";
import { LineSplitter, killGroup, processAlive } from "./process.js";
import { readProfile } from "./profile.js";
import { finishUnconfirmedRollback } from "./magic-rollback.js";
import { noteRebootNeed } from "./boot-rollback.js";
import type { InflightJob } from "./state.js";
import { RunnerResult, type RunnerLogLine, type RunnerPlan } from "./switch-runner.js";

/** Runner logs and results of this many recent activations stay in stateDir/jobs for post-mortems. */
const JOB_FILES_KEPT = 20;
const RUNNER_POLL_MS = 200;

export class Activation {
  constructor(
    private readonly ctx: AgentContext,
    private readonly runnerPath: string,
  ) {}

  /** Run the steps in the detached runner and return the activation's true outcome. */
  async run(job: RunningJob, record: InflightJob, steps: Step[]): Promise<Outcome> {
    const { ctx } = this;
    const id = record.id;
    const files = {
      plan: join(ctx.paths.jobsDir, `${id}.plan.json`),
      result: join(ctx.paths.jobsDir, `${id}.result.json`),
      log: join(ctx.paths.jobsDir, `${id}.log`),
    };
    rmSync(files.result, { force: true });
    writeFileSync(files.log, "");
    const plan: RunnerPlan = { jobId: id, steps, logFile: files.log, resultFile: files.result, timeoutMs: ctx.config.timeouts.switchSeconds * 1000 };
    writeFileSync(files.plan, JSON.stringify(plan), { mode: 0o600 });
    const generationBefore = readProfile(profilePathOf(ctx.config)).generation;
    const runner = spawn(process.execPath, [this.runnerPath, files.plan], { detached: true, stdio: "ignore", env: ctx.env });
    const exited = new Promise<void>((r) => runner.once("exit", () => r()));
    runner.unref();
    if (runner.pid === undefined) throw new Error("could not start the switch runner");
    // Persist before anything is activated: a restarted agent must find this record.
    const inflight: InflightJob = {
      ...record,
      ...(generationBefore !== undefined ? { generationBefore } : {}),
      runnerPid: runner.pid,
      resultFile: files.result,
      logFile: files.log,
    };
    ctx.inflight.write(inflight);
    const runnerPid = runner.pid;
    job.cancel = () => killGroup(runnerPid, "SIGTERM");
    await this.follow(job, inflight, exited);
    const outcome = this.outcome(inflight);
    pruneJobFiles(ctx.paths.jobsDir, JOB_FILES_KEPT);
    return outcome;
  }

  /** Stream the runner's log into the job until the runner ends (`exited`, or its pid is gone). */
  async follow(job: RunningJob, inflight: InflightJob, exited: Promise<void> | undefined, fromStart = true): Promise<void> {
    const logFile = inflight.logFile!;
    let offset = fromStart ? 0 : safeSize(logFile);
    const lines = new LineSplitter((l) => {
      try {
        const o = JSON.parse(l) as RunnerLogLine;
        job.reporter.line(o.s, o.x, o.t);
      } catch {
        // a torn line from a killed runner: skip it
      }
    });
    const drain = () => {
      const size = safeSize(logFile);
      if (size <= offset) return;
      const fd = openSync(logFile, "r");
      const buf = Buffer.alloc(size - offset);
      readSync(fd, buf, 0, buf.length, offset);
      closeSync(fd);
      offset = size;
      lines.push(buf);
    };
    let done = false;
    void exited?.then(() => (done = true));
    while (!done && !this.ctx.stopping()) {
      drain();
      if (exited === undefined && !processAlive(inflight.runnerPid!)) break;
      if (existsSync(inflight.resultFile!) && exited === undefined) break;
      await new Promise((r) => setTimeout(r, RUNNER_POLL_MS));
    }
    drain();
  }

  /**
   * The true outcome of an activation, from the runner's result or, failing that, the profile.
   * Throws InterruptedJob when neither can tell (the runner died without a result).
   */
  outcome(inflight: InflightJob): Outcome {
    const { ctx } = this;
    const profile = readProfile(profilePathOf(ctx.config));
    const genBefore = inflight.generationBefore;
    const genAfter = profile.generation;
    const gens = { ...(genBefore !== undefined ? { generationBefore: genBefore } : {}), ...(genAfter !== undefined ? { generationAfter: genAfter } : {}) };
    // nix-env --set with the path that is already current creates no new generation: say so.
    const moved = genBefore !== undefined && genBefore === genAfter ? `generation ${genAfter} unchanged (already this system)` : `generation ${genBefore ?? "none"} -> ${genAfter ?? "none"}`;
    const result = this.readResult(inflight);
    const now = new Date().toISOString();
    const isSwitch = inflight.op === "switch";
    const commit = inflight.commit;
    if (result?.ok || (!result && this.landed(inflight, profile))) {
      const recovered = result ? "" : " (confirmed from the profile after an agent restart)";
      ctx.state.update((s) => {
        if (isSwitch && genAfter !== undefined && profile.path) s.generations[String(genAfter)] = { ...(commit ? { commit } : {}), path: profile.path };
        if (isSwitch && commit && profile.path) s.lastBuild = { commit, path: profile.path };
        const builtFrom = genAfter !== undefined ? s.generations[String(genAfter)]?.commit : undefined;
        const c = isSwitch ? commit : builtFrom;
        s.lastSwitch = { ok: true, at: now, ...(c ? { commit: c } : {}), ...(genAfter !== undefined ? { generation: genAfter } : {}) };
      });
      // A kernel, initrd or modules change: active only after a reboot, and checked after it (boot-rollback.ts).
      const reboot = noteRebootNeed(ctx, inflight.id, inflight.rolloutId);
      return { state: "succeeded", summary: `${isSwitch ? "" : "rolled back: "}${moved}${recovered}${reboot ? `; ${reboot}` : ""}`, exitCode: 0, ...gens, ...(commit && isSwitch ? { commit } : {}) };
    }
    if (result?.cancelled) {
      return { state: "failed", summary: `${inflight.op} cancelled; ${moved}`, ...gens };
    }
    if (result) {
      const error = result.errorLine ?? `${result.failedStep ?? inflight.op} failed with exit ${result.exitCode}`;
      if (isSwitch) ctx.state.update((s) => (s.lastSwitch = { ok: false, error, at: now, ...(commit ? { commit } : {}), ...(genAfter !== undefined ? { generation: genAfter } : {}) }));
      return { state: "failed", summary: `${result.failedStep ?? inflight.op} failed: ${error}`, error, exitCode: result.exitCode ?? 1, ...gens };
    }
    throw new InterruptedJob(`agent and ${inflight.op} runner stopped before it finished; still on generation ${genAfter ?? "none"}`, gens);
  }

  /** The runner's result file, if it wrote one that parses. */
  readResult(inflight: InflightJob): RunnerResult | undefined {
    try {
      if (inflight.resultFile && existsSync(inflight.resultFile)) return RunnerResult.parse(JSON.parse(readFileSync(inflight.resultFile, "utf8")));
    } catch (e) {
      this.ctx.log.warn({ err: (e as Error).message }, "switch runner result unreadable; judging by generations");
    }
    return undefined;
  }

  /** Without a result file: did the activation land anyway? (a new generation holding the build) */
  private landed(inflight: InflightJob, profile: { generation?: number; path?: string }): boolean {
    if (profile.generation === undefined || profile.generation === inflight.generationBefore) return false;
    if (inflight.op !== "switch") return true;
    // The generic profile builds to <stateDir>/result first: the new generation must be that build.
    // Other profiles build inside nixos-rebuild & co.; a new generation is the only evidence there.
    try {
      return realpathSync(this.ctx.paths.result) === profile.path;
    } catch {
      return this.ctx.config.os.kind !== "generic";
    }
  }
}

/** What restart recovery needs from the job runner. */
export interface RecoveryHooks {
  newReporter(init: JobInit): JobReporter;
  /** Make the job the one the host is busy with. */
  adopt(job: RunningJob): void;
  /** The one end-of-job sequence (report, restart if called for, clear the in-flight record). */
  finish(job: RunningJob, end: () => void, compute: () => Promise<Outcome>, mayRestart: boolean): Promise<void>;
  jobFinished(state: JobState): void;
}

/** On start: report the job the previous agent process left behind. */
export async function resumeInflight(ctx: AgentContext, activation: Activation, hooks: RecoveryHooks): Promise<void> {
  const rec = ctx.inflight.read();
  if (!rec) return;
  const log = ctx.log.child({ job: rec.id, op: rec.op });
  const reporter = hooks.newReporter({
    id: rec.id,
    op: rec.op,
    acceptedAt: rec.acceptedAt,
    ...(rec.requestedBy ? { requestedBy: rec.requestedBy } : {}),
    ...(rec.rolloutId ? { rolloutId: rec.rolloutId } : {}),
    ...(rec.commit ? { commit: rec.commit } : {}),
  });
  reporter.state = { ...reporter.state, state: "running", startedAt: rec.startedAt };
  log.info("reporting the job left by the previous agent process");
  if (rec.op === "restart" || !rec.runnerPid || !rec.resultFile || !rec.logFile) {
    // Only an activation survives its agent; a restart's end is this very start.
    const [state, summary] =
      rec.op === "restart" ? (["succeeded", `agent restarted (pid ${rec.agentPid} -> ${process.pid})`] as const) : (["interrupted", `agent stopped while ${rec.op} ran; run it again`] as const);
    reporter.set(state, { summary, ...(state === "succeeded" ? { exitCode: 0 } : {}) });
    ctx.inflight.clear();
    hooks.jobFinished(reporter.state);
    return;
  }
  // A magic rollback also restores the checkout and says why it ran.
  const outcomeOf = async (job: RunningJob) => {
    const outcome = activation.outcome(rec);
    return rec.unconfirmedAfterSeconds !== undefined ? finishUnconfirmedRollback(ctx, job, rec, outcome) : outcome;
  };
  if (processAlive(rec.runnerPid) && !existsSync(rec.resultFile)) {
    // The switch outlived the agent: keep reporting it as the current job until it ends.
    log.info({ runnerPid: rec.runnerPid }, "switch runner still running: following it");
    const { job, end } = newRunningJob({ id: rec.id, op: rec.op, reporter, touches: new Set(policyOf(rec.op).touches), cancel: () => killGroup(rec.runnerPid!, "SIGTERM") });
    hooks.adopt(job);
    void (async () => {
      await activation.follow(job, rec, undefined, false);
      if (ctx.stopping()) return;
      // This agent started before the activation finished: it may be the old one now.
      await hooks.finish(job, end, () => outcomeOf(job), true);
    })();
    return;
  }
  const { job, end } = newRunningJob({ id: rec.id, op: rec.op, reporter, touches: new Set() });
  void hooks.finish(job, end, () => outcomeOf(job), false);
}

/** Keep the files of the newest `keep` jobs (by modification time) in the jobs directory. */
function pruneJobFiles(dir: string, keep: number): void {
  try {
    const byJob = new Map<string, number>();
    for (const f of readdirSync(dir)) {
      const id = f.replace(/\.(plan\.json|result\.json|log)$/, "");
      byJob.set(id, Math.max(byJob.get(id) ?? 0, statSync(join(dir, f)).mtimeMs));
    }
    const old = [...byJob.entries()].sort((a, b) => b[1] - a[1]).slice(keep);
    for (const [id] of old) for (const ext of [".plan.json", ".result.json", ".log"]) rmSync(join(dir, id + ext), { force: true });
  } catch {
    // pruning is housekeeping: never fail a job over it
  }
}

function safeSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}
