/**
 * Detached runner for activation jobs (switch, rollback). A switch can restart the agent itself
 * (systemd restarts lockstep-agent when its unit changes), so the agent does not run the build
 * and activation as its own children: it starts this small program in its own process group,
 * which runs the steps one after another, appends their output to a log file, and writes the
 * result as JSON. A restarted agent reads that result (or waits for this runner) to report the
 * job's true outcome.
 *
 * Usage: node switch-runner.js PLAN.json   (environment is inherited from the agent)
 */
import { readFileSync, renameSync, writeFileSync, appendFileSync } from "node:fs";
import { z } from "zod";
import { runProcess, meaningfulErrorLine, type RunningProcess } from "./process.js";

export const RunnerPlan = z.object({
  jobId: z.string(),
  steps: z.array(z.object({ label: z.string(), argv: z.array(z.string()).min(1), cwd: z.string().optional() })).min(1),
  logFile: z.string(),
  resultFile: z.string(),
  timeoutMs: z.number().positive(),
});
export type RunnerPlan = z.infer<typeof RunnerPlan>;

export const RunnerResult = z.object({
  jobId: z.string(),
  ok: z.boolean(),
  cancelled: z.boolean().default(false),
  timedOut: z.boolean().default(false),
  exitCode: z.number().int().nullable(),
  failedStep: z.string().optional(),
  errorLine: z.string().optional(),
  steps: z.array(z.object({ label: z.string(), exitCode: z.number().int().nullable() })),
  startedAt: z.string(),
  finishedAt: z.string(),
});
export type RunnerResult = z.infer<typeof RunnerResult>;

/** One line of the runner's log file (JSON lines, so the agent can stream it with its stream name). */
export interface RunnerLogLine {
  s: "stdout" | "stderr" | "info";
  t: number;
  x: string;
}

function writeAtomic(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

async function main(planFile: string): Promise<number> {
  const plan = RunnerPlan.parse(JSON.parse(readFileSync(planFile, "utf8")));
  const startedAt = new Date().toISOString();
  const deadline = Date.now() + plan.timeoutMs;
  const log = (s: RunnerLogLine["s"], x: string) => appendFileSync(plan.logFile, JSON.stringify({ s, t: Date.now(), x } satisfies RunnerLogLine) + "\n");
  let current: RunningProcess | undefined;
  let cancelled = false;
  // `stop` sends SIGTERM to the runner: pass it on to the step's process group, then report.
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    process.on(sig, () => {
      cancelled = true;
      current?.cancel();
    });
  }
  const steps: RunnerResult["steps"] = [];
  const finish = (r: Omit<RunnerResult, "jobId" | "steps" | "startedAt" | "finishedAt">) => {
    writeAtomic(plan.resultFile, JSON.stringify({ jobId: plan.jobId, steps, startedAt, finishedAt: new Date().toISOString(), ...r } satisfies RunnerResult));
  };
  for (const step of plan.steps) {
    if (cancelled) break;
    log("info", `$ ${step.argv.join(" ")}`);
    current = runProcess(step.argv, { cwd: step.cwd, env: process.env, timeoutMs: Math.max(1, deadline - Date.now()), onLine: (s, x) => log(s, x) });
    const r = await current.done;
    steps.push({ label: step.label, exitCode: r.exitCode });
    if (r.spawnError) log("stderr", r.spawnError);
    if (r.exitCode !== 0 || r.cancelled || cancelled) {
      const errorLine = r.spawnError ?? (r.timedOut ? `${step.label} timed out` : meaningfulErrorLine(r.tail));
      finish({
        ok: false,
        cancelled: cancelled || r.cancelled,
        timedOut: r.timedOut,
        exitCode: r.exitCode ?? (r.signal ? 128 : 1),
        failedStep: step.label,
        ...(errorLine ? { errorLine } : {}),
      });
      return 1;
    }
  }
  if (cancelled) {
    finish({ ok: false, cancelled: true, timedOut: false, exitCode: null, failedStep: "cancelled" });
    return 1;
  }
  finish({ ok: true, cancelled: false, timedOut: false, exitCode: 0 });
  return 0;
}

if (require.main === module) {
  const planFile = process.argv[2];
  if (!planFile) {
    process.stderr.write("usage: switch-runner PLAN.json\n");
    process.exit(2);
  }
  main(planFile).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`switch-runner: ${(e as Error).message}\n`);
      process.exit(2);
    },
  );
}
