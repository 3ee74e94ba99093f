/**
 * `refresh`: fetch, evaluate what the checkout builds to (exact System check), re-measure. While
 * another job runs, only re-measures: a fetch or evaluation must not race a checkout. The
 * evaluation only fills a cache, so a job that arrives cancels it instead of waiting.
 */
import { describeGitFailure } from "../git.js";
import type { AgentContext } from "../context.js";
import { evalArgv } from "../os-profiles.js";
import { meaningfulErrorLine, runProcess } from "../process.js";

export class Refresher {
  /** The `nix eval` of a refresh, while it runs. */
  private evaluation?: ReturnType<typeof runProcess>;

  constructor(
    private readonly ctx: AgentContext,
    private readonly busy: () => boolean,
  ) {}

  /** Stop a running evaluation (a job arrived, or the agent stops: it runs in its own process group). */
  cancel(): void {
    this.evaluation?.cancel();
  }

  async run(): Promise<string> {
    const { ctx } = this;
    const notes: string[] = [];
    if (!this.busy() && ctx.checkout.exists()) {
      const r = await ctx.withGit(() => ctx.checkout.run(ctx.checkout.fetchArgs()).done);
      if (r.exitCode !== 0) notes.push(describeGitFailure("fetch", r));
      // In the git queue too: a pull arriving meanwhile must not move the tree under the evaluation
      // (the result would be recorded for a commit it was not computed from).
      await ctx.withGit(async () => {
        const head = await ctx.checkout.head();
        if (!head || ctx.state.state.evaluated?.commit === head || this.busy()) return;
        const r = await this.evaluate();
        if (r.path) ctx.state.update((s) => (s.evaluated = { commit: head, path: r.path! }));
        else notes.push(r.cancelled ? "evaluation stopped: a job started" : "could not evaluate the checked-out configuration (see the agent log)");
      });
    }
    await ctx.remeasure();
    return notes.length ? `refreshed; ${notes.join("; ")}` : "refreshed";
  }

  /** What the checkout builds to (`nix eval`); cancelled when a job arrives meanwhile. */
  private async evaluate(): Promise<{ path?: string; cancelled: boolean }> {
    const { ctx } = this;
    let out = "";
    const p = runProcess(evalArgv(ctx.config), {
      cwd: ctx.checkout.dir,
      env: ctx.env,
      timeoutMs: ctx.config.timeouts.switchSeconds * 1000,
      onLine: (stream, text) => {
        if (stream === "stdout") out += text;
      },
    });
    this.evaluation = p;
    const r = await p.done.finally(() => (this.evaluation = undefined));
    const path = out.trim();
    if (r.exitCode === 0 && path.startsWith("/")) return { path, cancelled: false };
    if (!r.cancelled) ctx.log.warn({ exitCode: r.exitCode, error: meaningfulErrorLine(r.tail) }, "evaluating the checked-out configuration failed");
    return { cancelled: r.cancelled };
  }
}

/** Fetch when the fleet's head is not in the checkout yet, so Git can say "N commits behind". */
export async function fetchHead(ctx: AgentContext, head: string): Promise<boolean> {
  if (!ctx.checkout.exists() || (await ctx.checkout.hasCommit(head))) return false;
  const r = await ctx.withGit(() => ctx.checkout.run(ctx.checkout.fetchArgs()).done);
  if (r.exitCode !== 0) ctx.log.warn({ error: describeGitFailure("fetch", r) }, "fetching the fleet head failed");
  return true;
}
