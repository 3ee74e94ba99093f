/** `update-inputs {inputs?, push, branch?}`: `nix flake update`, commit flake.lock, optionally push. */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CommitSha, diffLocks, FlakeLockError, formatLockDiff, isEmptyDiff, parseFlakeLock, type CommandOf } from "../../protocol/index.js";
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
  const change = lockChange(before, after);
  const commit = await step(ctx, job, ["git", "commit", "-q", "-m", "flake.lock: Update", "-m", change.text, "--", "flake.lock"], { cwd: dir, timeoutMs });
  if (commit.exitCode !== 0) return fail(describeGitFailure("commit", commit), commit);
  const sha = (await ctx.checkout.head()) ?? "";
  const shaField = CommitSha.safeParse(sha).success ? { commit: sha } : {};
  const oneLine = change.oneLine;
  if (!cmd.args.push) return { state: "succeeded", summary: `committed ${short(sha)} locally (not pushed): ${oneLine}`, exitCode: 0, ...shaField };
  const branch = cmd.args.branch ?? ctx.config.repo.branch;
  const push = await step(ctx, job, ["git", "push", "-q", "origin", `HEAD:refs/heads/${branch}`], { cwd: dir, timeoutMs });
  if (push.exitCode !== 0) return fail(describeGitFailure("push", push), push);
  return { state: "succeeded", summary: `pushed ${short(sha)} to ${branch}: ${oneLine}`, exitCode: 0, ...shaField };
}

/**
 * What changed in flake.lock, for the commit message and the summary. Nix wrote the new lock, so
 * it is committed even when Lockstep's reader cannot read one of them (an old lock over its
 * limits or of a shape it does not know): then the text says so instead of failing the job
 * with flake.lock changed and not committed.
 */
export function lockChange(before: string, after: string): { text: string; oneLine: string } {
  if (!before) return { text: "flake.lock created", oneLine: "flake.lock created" };
  try {
    const diff = diffLocks(before, after);
    if (isEmptyDiff(diff)) return { text: "flake.lock rewritten", oneLine: "flake.lock rewritten" };
    return { text: formatLockDiff(diff, { separator: "\n" }), oneLine: formatLockDiff(diff, { max: 3 }) };
  } catch (e) {
    if (!(e instanceof FlakeLockError)) throw e;
    const which = readable(before) ? "the new" : "the old";
    return { text: `flake.lock rewritten; no input diff: ${which} lock cannot be read (${e.message})`, oneLine: `flake.lock rewritten (${which} lock cannot be read)` };
  }
}

function readable(text: string): boolean {
  try {
    parseFlakeLock(text);
    return true;
  } catch {
    return false;
  }
}
