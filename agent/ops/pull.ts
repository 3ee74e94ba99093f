/** `pull {commit}`: fetch and check out an exact commit that is on the configured branch. */
import { mkdirSync } from "node:fs";
import type { CommandOf } from "../../protocol/index.js";
import { step, type AgentContext } from "../context.js";
import { describeGitFailure } from "../git.js";
import { Rejection, fail, short, type Outcome, type RunningJob } from "../job.js";
import { SignatureRefused, verifyCommitSignature } from "../signatures.js";

/** A checkout must not silently carry local edits into (or lose them to) another commit. */
export async function precheckPull(ctx: AgentContext): Promise<void> {
  if (!ctx.checkout.exists()) return;
  const dirty = await ctx.checkout.dirtyFiles();
  if (dirty.length > 0) {
    const names = dirty.slice(0, 10).join(", ") + (dirty.length > 10 ? ` and ${dirty.length - 10} more` : "");
    throw new Rejection(`checkout has uncommitted changes in ${names}: commit or discard them first`);
  }
}

export async function pull(ctx: AgentContext, cmd: CommandOf<"pull">, job: RunningJob): Promise<Outcome> {
  const { checkout, config } = ctx;
  const commit = cmd.args.commit;
  const timeoutMs = config.timeouts.pullSeconds * 1000;
  if (!checkout.exists()) {
    const { args, cwd } = checkout.cloneArgs();
    mkdirSync(cwd, { recursive: true });
    const r = await step(ctx, job, ["git", ...args], { cwd, timeoutMs });
    if (r.exitCode !== 0) return fail(describeGitFailure("clone", r), r);
  }
  const before = await checkout.head();
  const fetch = await step(ctx, job, ["git", ...checkout.fetchArgs()], { cwd: checkout.dir, timeoutMs });
  if (fetch.exitCode !== 0) return fail(describeGitFailure("fetch", fetch), fetch);
  if (!(await checkout.hasCommit(commit))) return fail(`commit ${short(commit)} is not on branch ${config.repo.branch}: origin/${config.repo.branch} does not contain it`);
  if (!(await checkout.onBranch(commit))) return fail(`commit ${short(commit)} is not on branch ${config.repo.branch}: refusing to check it out`);
  // Only what the admin signed moves the checkout (verifySignatures; nothing is checked without it).
  const signed = await verifySigned(ctx, commit, job);
  if (typeof signed !== "string" && signed) return signed;
  // Older than a whole pull may take: no git of ours holds it (pulls run one at a time).
  const staleLockAge = checkout.clearStaleIndexLock(timeoutMs);
  if (staleLockAge !== undefined) job.reporter.line("info", `removed a stale .git/index.lock (${Math.round(staleLockAge / 60_000)} min old, left by a git that was killed)`);
  const co = await step(ctx, job, ["git", ...checkout.checkoutArgs(commit)], { cwd: checkout.dir, timeoutMs });
  if (co.exitCode !== 0) return fail(describeGitFailure("checkout", co), co);
  const moved = before === commit ? `already at ${short(commit)}` : `checked out ${short(commit)} (was ${before ? short(before) : "nothing"})`;
  const summary = typeof signed === "string" ? `${moved}; ${signed}` : moved;
  return { state: "succeeded", summary, exitCode: 0, commit };
}

/** The verifier's "Good signature" line, undefined when signatures are not checked, or the failed outcome. */
async function verifySigned(ctx: AgentContext, commit: string, job: RunningJob): Promise<string | Outcome | undefined> {
  if (!ctx.config.verifySignatures) return undefined;
  job.reporter.line("info", `verifying the signature of ${short(commit)}`);
  try {
    return await verifyCommitSignature(commit, { config: ctx.config, dir: ctx.checkout.dir, env: ctx.env, onLine: (s, t) => job.reporter.line(s, t) });
  } catch (e) {
    if (e instanceof SignatureRefused) return fail(e.message);
    throw e;
  }
}
