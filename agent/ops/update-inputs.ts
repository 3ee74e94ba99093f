/** `update-inputs {inputs?, push, branch?}`: `nix flake update`, commit flake.lock, optionally push. */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CommitSha, diffLocks, formatLockDiff, isEmptyDiff, type CommandOf } from "../../protocol/index.js";
import { step, type AgentContext } from "../context.js";
import { describeGitFailure } from "../git.js";
import { fail, short, type Outcome, type RunningJob } from "../job.js";
import { updateInputsArgv } from "../os-profiles.js";
import { meaningfulErrorLine } from "../process.js";

export async function updateInputs(ctx: AgentContext, cmd: CommandOf<"update-inputs">, job: RunningJob): Promise<Outcome> {
  const dir = ctx.checkout.dir;
  const lockFile = join(dir, "flake.lock");
  const before = existsSync(lockFile) ? readFileSync(lockFile, "utf8") : "";
  const timeoutMs = ctx.config.timeouts.updateInputsSeconds * 1000;
  const upd = await step(ctx, job, updateInputsArgv(cmd.args.inputs), { cwd: dir, timeoutMs });
  if (upd.exitCode !== 0) return fail(`nix flake update failed: ${meaningfulErrorLine(upd.tail) ?? `exit ${upd.exitCode}`}`, upd);
  const after = existsSync(lockFile) ? readFileSync(lockFile, "utf8") : "";
  if (after === before) return { state: "succeeded", summary: "inputs already current: flake.lock unchanged", exitCode: 0 };
  const diff = before ? diffLocks(before, after) : undefined;
  const diffText = diff && !isEmptyDiff(diff) ? formatLockDiff(diff, { separator: "\n" }) : "flake.lock rewritten";
  const commit = await step(ctx, job, ["git", "commit", "-q", "-m", "flake.lock: Update", "-m", diffText, "--", "flake.lock"], { cwd: dir, timeoutMs });
  if (commit.exitCode !== 0) return fail(describeGitFailure("commit", commit), commit);
  const sha = (await ctx.checkout.head()) ?? "";
  const shaField = CommitSha.safeParse(sha).success ? { commit: sha } : {};
  const oneLine = diff && !isEmptyDiff(diff) ? formatLockDiff(diff, { max: 3 }) : "flake.lock rewritten";
  if (!cmd.args.push) return { state: "succeeded", summary: `committed ${short(sha)} locally (not pushed): ${oneLine}`, exitCode: 0, ...shaField };
  const branch = cmd.args.branch ?? ctx.config.repo.branch;
  const push = await step(ctx, job, ["git", "push", "-q", "origin", `HEAD:refs/heads/${branch}`], { cwd: dir, timeoutMs });
  if (push.exitCode !== 0) return fail(describeGitFailure("push", push), push);
  return { state: "succeeded", summary: `pushed ${short(sha)} to ${branch}: ${oneLine}`, exitCode: 0, ...shaField };
}
