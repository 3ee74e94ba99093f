/**
 * What every job shares: the running job the agent is busy with, what an exclusive job returns,
 * and the typed errors that end a job as "rejected" (nothing touched) or "interrupted".
 */
import type { CommandOp, CompartmentName } from "../protocol/index.js";
import type { JobReporter } from "./jobs.js";
import type { RunResult } from "./process.js";

/** What one exclusive job returns when it ends without being cancelled. */
export interface Outcome {
  state: "succeeded" | "failed";
  summary: string;
  error?: string;
  exitCode?: number;
  generationBefore?: number;
  generationAfter?: number;
  commit?: string;
  /** A switch the hub must confirm by this time (magic-rollback.ts). */
  confirmBy?: string;
}

/** The job the host is busy with (at most one exclusive job at a time). */
export interface RunningJob {
  id: string;
  op: CommandOp | string;
  reporter: JobReporter;
  touches: Set<CompartmentName>;
  cancelled: boolean;
  /** Stops what the job runs right now (replaced by each step). */
  cancel: () => void;
  /** Resolves when the job has ended (`stop` waits for it). */
  finished: Promise<void>;
}

/** A running job and the function that marks it finished. */
export function newRunningJob(init: Pick<RunningJob, "id" | "op" | "reporter" | "touches"> & { cancel?: () => void }): { job: RunningJob; end: () => void } {
  let end!: () => void;
  const job: RunningJob = { cancelled: false, cancel: () => undefined, ...init, finished: new Promise<void>((r) => (end = r)) };
  return { job, end };
}

/** The command cannot run as asked; nothing was touched. Its message says what to do. */
export class Rejection extends Error {}

/** The job ended without a result (the agent and its runner stopped); says where the host is. */
export class InterruptedJob extends Error {
  constructor(
    message: string,
    readonly generations: { generationBefore?: number; generationAfter?: number },
  ) {
    super(message);
  }
}

export function fail(summary: string, r?: RunResult): Outcome {
  return { state: "failed", summary, error: summary, ...(r?.exitCode !== undefined && r.exitCode !== null ? { exitCode: r.exitCode } : {}) };
}

export const short = (sha: string) => sha.slice(0, 8);
