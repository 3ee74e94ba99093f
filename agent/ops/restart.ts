/**
 * `restart`: the agent exits (code 75) for its supervisor to start it again. The in-flight record
 * makes the next process report the job as succeeded; the host stays busy until the exit.
 */
import type { CommandOf } from "../../protocol/index.js";
import type { AgentContext } from "../context.js";
import { newRunningJob, type RunningJob } from "../job.js";
import type { JobReporter } from "../jobs.js";

/** Let the running state reach the broker before exiting, but do not wait forever for it. */
const EXIT_WAIT_MS = 5000;

export function restart(
  ctx: AgentContext,
  cmd: CommandOf<"restart">,
  reporter: JobReporter,
  deps: { adopt: (job: RunningJob) => void; publishState: (done: () => void) => void; requestExit: () => void },
): void {
  const now = new Date().toISOString();
  ctx.inflight.write({ id: cmd.id, op: "restart", acceptedAt: reporter.state.acceptedAt, startedAt: now, requestedBy: cmd.requestedBy, agentPid: process.pid });
  // The host is busy until the process exits: no other job may start in between.
  deps.adopt(newRunningJob({ id: cmd.id, op: "restart", reporter, touches: new Set(["agent"]) }).job);
  reporter.set("running", { summary: "restarting the agent" });
  ctx.log.info("restart requested: exiting for the supervisor to start the agent again");
  let requested = false;
  const exit = () => {
    if (requested) return;
    requested = true;
    deps.requestExit();
  };
  deps.publishState(exit);
  setTimeout(exit, EXIT_WAIT_MS).unref();
}
