/**
 * What the store keeps of a rollout (RolloutRecord), and the change lines of its append-only log:
 * one line says "these hosts and steps now look like this, and the rollout's own fields like
 * that". Pure: no I/O (store.ts and rollout-log.ts write and read the files).
 */
import { z } from "zod";
import { CommitSha, HostRolloutState, JobStateName, RolloutProgress } from "../protocol/schemas.js";
import { RolloutPlan } from "./spec.js";

/** One command the engine sent (or was about to send) for one host. */
export const StepRecord = z.object({
  host: z.string(),
  /** "pull", "switch", "test", "rollback" */
  step: z.string(),
  commandId: z.string(),
  sentAt: z.string(),
  expiresAt: z.string(),
  timeoutMs: z.number(),
  /** Sent to an offline host under the queue policy: an expired result means "skipped", not "failed". */
  queued: z.boolean().optional(),
  result: z
    .object({
      /** A job state, or "timeout" (no terminal state in time) / "unknown" (lost across a restart). */
      state: z.union([JobStateName, z.literal("timeout"), z.literal("unknown")]),
      summary: z.string(),
      generationBefore: z.number().int().optional(),
      generationAfter: z.number().int().optional(),
      at: z.string(),
    })
    .optional(),
});
export type StepRecord = z.infer<typeof StepRecord>;
export type StepResult = NonNullable<StepRecord["result"]>;

/** Where a step lives in RolloutRecord.steps. */
export const stepKey = (s: Pick<StepRecord, "host" | "step">) => `${s.host}/${s.step}`;

export const STOP_REASONS = ["canary-failed", "budget-exceeded", "interrupted", "cancelled"] as const;

export const RolloutRecord = z.object({
  version: z.literal(1),
  id: z.string(),
  commit: CommitSha,
  requestedBy: z.string(),
  plan: RolloutPlan,
  progress: RolloutProgress,
  /** Keyed `${host}/${step}`. */
  steps: z.record(z.string(), StepRecord),
  /** When the canary soak ends; kept so a resumed rollout soaks only the remainder. */
  soakUntil: z.string().optional(),
  soakFinishedAt: z.string().optional(),
  /** Why the rollout stopped launching hosts; set once, before the failure policy runs. */
  stop: z.object({ reason: z.enum(STOP_REASONS), detail: z.string(), at: z.string() }).optional(),
  /** The revert callback was called (never call it twice, even across restarts). */
  revertRequestedAt: z.string().optional(),
  /** Hosts whose rollback did not work: the rollout then ends "failed", not "rolled-back". */
  rollbackFailed: z.array(z.string()).default([]),
  finished: z.boolean(),
});
export type RolloutRecord = z.infer<typeof RolloutRecord>;

/** A snapshot file: the record, and the last log line it already contains (older files have none). */
export const RolloutSnapshot = RolloutRecord.extend({ logSeq: z.number().int().nonnegative().optional() });

/** Which hosts (progress.hosts keys) and steps (steps keys) of a record changed. */
export interface RolloutChanges {
  hosts?: Iterable<string>;
  steps?: Iterable<string>;
}

// The fields of the rollout itself that change while it runs; every change line carries them all
// (a few hundred bytes), so the order of lines alone decides what they are.
const PROGRESS_FIELDS = ["state", "summary", "currentPhase", "counts", "updatedAt", "finishedAt", "revertPr"] as const;
const RECORD_FIELDS = ["soakUntil", "soakFinishedAt", "stop", "revertRequestedAt", "rollbackFailed", "finished"] as const;
const pick = <K extends string>(keys: readonly K[]) => Object.fromEntries(keys.map((k) => [k, true])) as { [P in K]: true };

export const ChangeLine = z.object({
  /** Line number, counted from the rollout's start: replay skips what the snapshot already holds. */
  n: z.number().int().positive(),
  progress: RolloutProgress.pick(pick(PROGRESS_FIELDS)),
  rollout: RolloutRecord.pick(pick(RECORD_FIELDS)),
  hosts: z.array(HostRolloutState).optional(),
  steps: z.array(StepRecord).optional(),
});
export type ChangeLine = z.infer<typeof ChangeLine>;

/** The change line for `changes` of `record` as it is now (one JSON text, no newline). */
export function changeLine(n: number, record: RolloutRecord, changes: RolloutChanges): string {
  const line: ChangeLine = {
    n,
    progress: copyFields(record.progress, PROGRESS_FIELDS),
    rollout: copyFields(record, RECORD_FIELDS),
  };
  const hosts = [...(changes.hosts ?? [])].flatMap((h) => record.progress.hosts[h] ?? []);
  const steps = [...(changes.steps ?? [])].flatMap((k) => record.steps[k] ?? []);
  if (hosts.length) line.hosts = hosts;
  if (steps.length) line.steps = steps;
  return JSON.stringify(line);
}

/** Apply a change line to a record (in place). */
export function applyChangeLine(record: RolloutRecord, line: ChangeLine): void {
  setFields(record.progress, line.progress, PROGRESS_FIELDS);
  setFields(record, line.rollout, RECORD_FIELDS);
  for (const h of line.hosts ?? []) record.progress.hosts[h.host] = h;
  for (const s of line.steps ?? []) record.steps[stepKey(s)] = s;
}

function copyFields<T extends object, K extends keyof T>(from: T, keys: readonly K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const k of keys) if (from[k] !== undefined) out[k] = from[k];
  return out;
}

/** Fields absent from the line are absent from the record too: a line says all of them. */
function setFields<T extends object, K extends keyof T>(to: T, from: Pick<T, K>, keys: readonly K[]): void {
  for (const k of keys) {
    if (from[k] === undefined) delete to[k];
    else to[k] = from[k];
  }
}
