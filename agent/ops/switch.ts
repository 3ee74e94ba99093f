/** `switch {commit?}`: build and activate the checked-out commit, in the detached switch runner. */
import type { CommandOf } from "../../protocol/index.js";
import type { Activation } from "../activation.js";
import type { AgentContext } from "../context.js";
import { Rejection, short, type Outcome, type RunningJob } from "../job.js";
import { switchSteps } from "../os-profiles.js";
import type { InflightJob } from "../state.js";

/** A switch builds what is checked out: a commit that is not checked out must be pulled first. */
export async function precheckSwitch(ctx: AgentContext, cmd: CommandOf<"switch">): Promise<void> {
  const head = await ctx.checkout.head();
  if (!head) throw new Rejection("no checkout: pull a commit first");
  if (cmd.args.commit && cmd.args.commit !== head) throw new Rejection(`checkout is at ${short(head)}, not ${short(cmd.args.commit)}: pull it first`);
}

export async function switchSystem(ctx: AgentContext, activation: Activation, job: RunningJob, record: InflightJob): Promise<Outcome> {
  const head = await ctx.checkout.head();
  if (!head) throw new Error("the checkout has no HEAD");
  return activation.run(job, { ...record, commit: head }, switchSteps(ctx.config));
}
