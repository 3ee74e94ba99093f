/** `lockstep host HOST OP` and `lockstep logs HOST [JOB]`: one host, as an operator. */
import type { Subcommand } from "../../broker/commands.js";
import { str, UsageError } from "../../broker/commands.js";
import { TERMINAL_JOB_STATES, type Command, type JobState } from "../../protocol/index.js";
import { ExitCode, TerminalError } from "./errors.js";
import { connectionHelp } from "./fleet-commands.js";
import { JSON_OPTION, positionals, withSession, type TerminalContext } from "./run.js";
import { jobLine } from "./views.js";

export const HOST_OPS = ["pull", "switch", "test", "rollback", "hold", "release"] as const;
type HostOp = (typeof HOST_OPS)[number];

const isTerminal = (j: JobState) => TERMINAL_JOB_STATES.includes(j.state);

/** Wait for the job with this id on this host to end (its retained state). */
function jobEnd(t: TerminalContext, host: string, jobId: string, onUpdate: (j: JobState) => void): { done: Promise<JobState | undefined>; cancel(): void } {
  let cancel!: () => void;
  const done = t.session.fleet().then(
    (fleet) =>
      new Promise<JobState | undefined>((resolve) => {
        const check = () => {
          const j = fleet.job(host, jobId);
          if (!j) return;
          onUpdate(j);
          if (isTerminal(j)) finish(j);
        };
        const off = fleet.onChange((c) => c.kind === "job" && c.host === host && c.jobId === jobId && check());
        const finish = (j?: JobState) => (off(), resolve(j));
        cancel = () => finish(undefined);
        check();
      }),
  );
  return { done, cancel: () => cancel?.() };
}

export const hostCommand: Subcommand = {
  name: "host",
  summary: "command one host: pull, switch, test, rollback, hold, release (waits for the job)",
  usage: connectionHelp(
    [
      "lockstep host HOST pull|switch|test|rollback|hold|release [--reason TEXT] [--no-wait] [--json]",
      "    pull checks out the fleet's head commit (fleet/expected). Waits for the job to end and",
      "    prints its output; exit code 1 when it did not succeed.",
    ].join("\n"),
  ),
  options: { ...JSON_OPTION, reason: { type: "string" }, "no-wait": { type: "boolean" } },
  run: (ctx) =>
    withSession(ctx, async (t) => {
      const [host, opText] = positionals(ctx.args, ["HOST", "OP"], "host");
      if (!(HOST_OPS as readonly string[]).includes(opText!)) throw new UsageError(`unknown host operation "${opText}" (one of ${HOST_OPS.join(", ")})`, 'run "lockstep host --help"');
      const op = opText as HostOp;
      const fleet = await t.session.fleet();
      if (!fleet.host(host!)) throw new TerminalError(`no host ${host} on the broker`, ExitCode.failure, 'see "lockstep status"');
      let cmd: Command;
      if (op === "pull") {
        const head = (await t.session.expected())?.headCommit;
        if (!head) throw new TerminalError("cannot pull: the fleet's head commit is not known (no fleet/expected)", ExitCode.failure, "configure the repository on the hub");
        cmd = await t.session.sendCommand(host!, "pull", { commit: head });
      } else if (op === "hold") {
        const reason = str(ctx.values, "reason");
        cmd = await t.session.sendCommand(host!, "hold", reason ? { reason } : {});
      } else {
        cmd = await t.session.sendCommand(host!, op, {});
      }
      if (!t.json) t.print(`sent ${op} to ${host} (job ${cmd.id})\n`);
      if (ctx.values["no-wait"] === true) {
        if (t.json) t.printJson({ command: cmd });
        return ExitCode.ok;
      }
      const final = await followJob(t, host!, cmd.id);
      if (t.json) t.printJson({ command: cmd, job: final ?? null });
      return final?.state === "succeeded" ? ExitCode.ok : ExitCode.failure;
    }),
};

/** Print a job's live output and state changes until it ends (or Ctrl-C). */
async function followJob(t: TerminalContext, host: string, jobId: string): Promise<JobState | undefined> {
  // Ctrl-C is ours before the first output line: a script may interrupt as soon as it sees it.
  const stopped = t.interrupted();
  const stopOutput = await t.session.followOutput(host, jobId, (lines) => {
    if (t.json) return;
    for (const l of lines) (l.stream === "stderr" ? t.io.stderr : t.print)(`${l.text}\n`);
  });
  let lastState = "";
  const end = jobEnd(t, host, jobId, (j) => {
    if (!t.json && j.state !== lastState) t.print(`[${j.state}] ${j.summary}${j.error ? ` (${j.error})` : ""}\n`);
    lastState = j.state;
  });
  void stopped.then(() => end.cancel());
  const final = await end.done;
  await stopOutput();
  return final;
}

export const logsCommand: Subcommand = {
  name: "logs",
  summary: "a host's job: its output, following it until it ends (default: the newest job)",
  usage: connectionHelp(
    [
      "lockstep logs HOST [JOB] [--json]",
      "    Without JOB: the host's newest job (or lists them with --list). Output is live only:",
      "    a job that already ended shows its final state.",
    ].join("\n"),
  ),
  options: { ...JSON_OPTION, list: { type: "boolean" } },
  run: (ctx) =>
    withSession(ctx, async (t) => {
      const [host, jobArg] = positionals(ctx.args, ["HOST", "JOB"], "logs", 1);
      const fleet = await t.session.fleet();
      const jobs = fleet.jobsOf(host!);
      if (ctx.values.list === true) {
        if (t.json) t.printJson({ jobs });
        else t.print(jobs.length ? jobs.map(jobLine).join("\n") + "\n" : `no jobs of ${host} on the broker\n`);
        return ExitCode.ok;
      }
      const job = jobArg ? fleet.job(host!, jobArg) : jobs[0];
      if (!job) throw new TerminalError(jobArg ? `no job ${jobArg} of ${host} on the broker` : `no jobs of ${host} on the broker`, ExitCode.failure, `see "lockstep logs ${host} --list"`);
      const final = isTerminal(job) ? job : await followJob(t, host!, job.id);
      if (t.json) t.printJson({ job: final ?? job });
      else if (isTerminal(job)) t.print(jobLine(job) + "\n");
      return (final ?? job).state === "succeeded" ? ExitCode.ok : isTerminal(final ?? job) ? ExitCode.failure : ExitCode.ok;
    }),
};
