/**
 * `report {job, op?}`: the hub waits for a job whose final state it never saw (lost with a broker's
 * storage, or never sent). The agent publishes the job's state again from its job history. Commands
 * arrive in order on one topic, so a job this agent has not seen by now never reached it: it is
 * marked seen (it will never run, even if it arrives later) and reported `rejected`, so the hub's
 * step ends with what happened instead of a timeout.
 */
import type { CommandOf } from "../../protocol/index.js";
import type { AgentContext } from "../context.js";
import type { JobInit } from "../job-topics.js";
import type { JobReporter } from "../jobs.js";

export interface ReportDeps {
  publishAgain(id: string): { state: string } | undefined;
  newReporter(init: JobInit): JobReporter;
}

export function report(ctx: Pick<AgentContext, "state">, d: ReportDeps, cmd: CommandOf<"report">): string {
  const { job, op } = cmd.args;
  const known = d.publishAgain(job);
  if (known) return `job ${job} is ${known.state}: its state was published again`;
  if (ctx.state.hasSeen(job)) throw new Error(`job ${job} reached this host, but its state is no longer kept (beyond keepJobs, or lost with the state dir)`);
  ctx.state.markSeen(job);
  const never = "the command never reached this host (the hub asked for it later); it will not run";
  d.newReporter({ id: job, op: op ?? "unknown", requestedBy: cmd.requestedBy, ...(cmd.rolloutId ? { rolloutId: cmd.rolloutId } : {}) }).set("rejected", { summary: never, error: never });
  return `job ${job} never reached this host: reported rejected, it will not run`;
}
