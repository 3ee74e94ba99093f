/** `rollback {generation?}`: activate an earlier generation (default: the one before), in the detached runner. */
import type { CommandOf } from "../../protocol/index.js";
import type { Activation } from "../activation.js";
import type { AgentContext } from "../context.js";
import { Rejection, type Outcome, type RunningJob } from "../job.js";
import { test } from "./test.js";
import { profilePathOf, rollbackSteps } from "../os-profiles.js";
import { listGenerations, readProfile } from "../profile.js";
import type { InflightJob } from "../state.js";

export async function precheckRollback(ctx: AgentContext, cmd: CommandOf<"rollback">): Promise<void> {
  const profile = profilePathOf(ctx.config);
  const gens = listGenerations(profile);
  const current = readProfile(profile).generation;
  const target = cmd.args.generation;
  if (target !== undefined && !gens.some((g) => g.generation === target)) {
    throw new Rejection(`generation ${target} does not exist (have ${gens.map((g) => g.generation).join(", ") || "none"})`);
  }
  if (target !== undefined && target === current) throw new Rejection(`generation ${target} is already current`);
  if (target === undefined && !gens.some((g) => current !== undefined && g.generation < current)) {
    throw new Rejection(`no generation before ${current ?? "the current one"} to roll back to`);
  }
}

export async function rollback(ctx: AgentContext, activation: Activation, cmd: CommandOf<"rollback">, job: RunningJob, record: InflightJob): Promise<Outcome> {
  return activation.run(job, record, rollbackSteps(ctx.config, cmd.args.generation));
}

/**
 * After a rollback the host runs another generation: its tests run again on it (the Tests
 * compartment must speak of what runs, not of the generation rolled away from). Part of the
 * rollback job, so nothing else (a rollout's next step) can come in between; a failing test does
 * not undo the rollback, the summary says it.
 */
export async function testAfterRollback(ctx: AgentContext, job: RunningJob, outcome: Outcome): Promise<Outcome> {
  if (outcome.state !== "succeeded" || job.cancelled) return outcome;
  job.reporter.line("info", "running the host's tests on the generation rolled back to");
  const t = await test(ctx, job);
  return { ...outcome, summary: `${outcome.summary}; tests after the rollback: ${t.summary}` };
}
