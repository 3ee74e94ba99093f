/**
 * What the ops and the activation share: the config, durable state, the checkout, the child
 * environment, and two helpers (the git queue and a job step). Built once by `Agent`.
 */
import type { Logger } from "pino";
import { gitSshCommand, type GitCheckout } from "./git.js";
import type { AgentConfig, statePaths } from "./config.js";
import type { RunningJob } from "./job.js";
import { runProcess, type RunOptions, type RunResult } from "./process.js";
import type { InflightStore, StateStore } from "./state.js";

export interface AgentContext {
  readonly config: AgentConfig;
  readonly host: string;
  readonly log: Logger;
  /** Environment for git, nix and test scripts. */
  readonly env: NodeJS.ProcessEnv;
  readonly paths: ReturnType<typeof statePaths>;
  readonly state: StateStore;
  readonly inflight: InflightStore;
  readonly checkout: GitCheckout;
  /** Git operations that fetch or move the checkout run one at a time (ref locks, index lock). */
  withGit<T>(fn: () => Promise<T>): Promise<T>;
  remeasure(): Promise<void>;
  stopping(): boolean;
}

/** A queue that runs one function at a time, in order; a failure does not stop the queue. */
export function serialQueue(): <T>(fn: () => Promise<T>) => Promise<T> {
  let tail: Promise<void> = Promise.resolve();
  return <T>(fn: () => Promise<T>) => {
    const run = tail.then(fn, fn);
    tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  };
}

/** Run one process as part of a job: output goes to the job, `stop` cancels it. */
export async function step(ctx: Pick<AgentContext, "env">, job: RunningJob, argv: string[], opts: Omit<RunOptions, "onLine"> = {}): Promise<RunResult> {
  if (job.cancelled) return { exitCode: null, signal: null, timedOut: false, cancelled: true, tail: [] };
  job.reporter.line("info", `$ ${argv.join(" ")}`);
  const p = runProcess(argv, { env: ctx.env, ...opts, onLine: (s, t) => job.reporter.line(s, t) });
  job.cancel = () => p.cancel();
  const r = await p.done;
  if (r.spawnError) job.reporter.line("stderr", r.spawnError);
  return r;
}

/** Environment for git, nix and test scripts: ours + config.env + git identity + ssh key. */
export function childEnv(c: AgentConfig): NodeJS.ProcessEnv {
  const name = c.git.authorName ?? "Lockstep agent";
  const email = c.git.authorEmail ?? `lockstep@${c.host}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    GIT_AUTHOR_NAME: name,
    GIT_AUTHOR_EMAIL: email,
    GIT_COMMITTER_NAME: name,
    GIT_COMMITTER_EMAIL: email,
    GIT_TERMINAL_PROMPT: "0",
    // Nix and test scripts read the checkout while a job may write it: reads take no index lock.
    GIT_OPTIONAL_LOCKS: "0",
    ...c.env,
  };
  if (c.repo.sshKeyFile) env.GIT_SSH_COMMAND = gitSshCommand(c.repo.sshKeyFile);
  return env;
}
