/** `switch {commit?}`: build and activate the checked-out commit, in the detached switch runner. */
import type { CommandOf } from "../../protocol/index.js";
import type { Activation } from "../activation.js";
import type { AgentContext } from "../context.js";
import { Rejection, short, type Outcome, type RunningJob } from "../job.js";
import { listFailedUnits } from "../health.js";
import { switchSteps } from "../os-profiles.js";
import { SignatureRefused, verifyCommitSignature } from "../signatures.js";
import type { InflightJob } from "../state.js";

/**
 * A switch builds what is checked out: a commit that is not checked out must be pulled first, and
 * with verifySignatures it must be signed by an allowed key (the checkout may have been moved by
 * hand, or by the first clone).
 */
export async function precheckSwitch(ctx: AgentContext, cmd: CommandOf<"switch">, job: RunningJob): Promise<void> {
  const head = await ctx.checkout.head();
  if (!head) throw new Rejection("no checkout: pull a commit first");
  if (cmd.args.commit && cmd.args.commit !== head) throw new Rejection(`checkout is at ${short(head)}, not ${short(cmd.args.commit)}: pull it first`);
  if (!ctx.config.verifySignatures) return;
  job.reporter.line("info", `verifying the signature of ${short(head)}`);
  try {
    const good = await verifyCommitSignature(head, { config: ctx.config, dir: ctx.checkout.dir, env: ctx.env, onLine: (s, t) => job.reporter.line(s, t) });
    if (good) job.reporter.line("info", good);
  } catch (e) {
    if (e instanceof SignatureRefused) throw new Rejection(e.message);
    throw e;
  }
}

export async function switchSystem(ctx: AgentContext, activation: Activation, job: RunningJob, record: InflightJob): Promise<Outcome> {
  const head = await ctx.checkout.head();
  if (!head) throw new Error("the checkout has no HEAD");
  // What was already broken before: the health check blames the switch only for what fails after it.
  const failed = await listFailedUnits(ctx.config, ctx.env);
  if (failed && "units" in failed) ctx.state.update((s) => (s.failedUnitsBefore = { at: new Date().toISOString(), units: failed.units }));
  else if (failed) job.reporter.line("info", `cannot list failed units before the switch (${failed.error}): every failed unit will count against it`);
  return activation.run(job, { ...record, commit: head }, switchSteps(ctx.config));
}
