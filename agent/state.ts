/**
 * The agent's durable state in stateDir: command ids already seen (re-delivery runs once), hold,
 * what each generation was built from, the last switch and test results, and the in-flight job
 * (so a restarted agent can finish it honestly). Files are written atomically (tmp + rename).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import { CommitSha, formatZodError } from "../protocol/index.js";

/** How many command ids to remember: far more than a hub sends within a command's expiry. */
export const SEEN_IDS_KEPT = 1000;

export const LastTest = z.object({
  generation: z.number().int().optional(),
  passed: z.boolean(),
  failed: z.array(z.string()),
  total: z.number().int(),
  at: z.string(),
  output: z.string().optional(),
});
export type LastTest = z.infer<typeof LastTest>;

export const PersistedState = z.object({
  seenCommandIds: z.array(z.string()).default([]),
  hold: z.object({ held: z.boolean(), reason: z.string().optional(), since: z.string() }).optional(),
  /** generation number -> what it was built from (filled by switches this agent ran). */
  generations: z.record(z.string(), z.object({ commit: CommitSha.optional(), path: z.string() })).default({}),
  lastSwitch: z
    .object({ ok: z.boolean(), error: z.string().optional(), commit: CommitSha.optional(), at: z.string(), generation: z.number().int().optional() })
    .optional(),
  lastBuild: z.object({ commit: CommitSha, path: z.string() }).optional(),
  /** What a `refresh` evaluated the checked-out commit to (without building it). */
  evaluated: z.object({ commit: CommitSha, path: z.string() }).optional(),
  lastTest: LastTest.optional(),
  /** Failed systemd units just before the last switch: the health check blames only units failed since. */
  failedUnitsBefore: z.object({ at: z.string(), units: z.array(z.string()) }).optional(),
  /**
   * Where agents before 2026-12 kept the switch awaiting confirmation; it now lives in
   * awaiting-confirmation.json (confirmation-deadline.ts), and magic-rollback.ts moves it there on start.
   */
  awaitingConfirmation: z.unknown().optional(),
});
export type PersistedState = z.infer<typeof PersistedState>;
export type { PendingConfirmation as AwaitingConfirmation } from "./confirmation-deadline.js";

export const InflightJob = z.object({
  id: z.string(),
  op: z.string(),
  acceptedAt: z.string(),
  startedAt: z.string(),
  requestedBy: z.string().optional(),
  rolloutId: z.string().optional(),
  commit: CommitSha.optional(),
  generationBefore: z.number().int().optional(),
  /** Activation jobs run in the detached switch runner. */
  runnerPid: z.number().int().optional(),
  resultFile: z.string().optional(),
  logFile: z.string().optional(),
  /** A magic rollback also puts the checkout back at this commit once the system rolled back. */
  restoreCommit: CommitSha.optional(),
  /** A magic rollback: the confirmation window it waited for, in seconds. */
  unconfirmedAfterSeconds: z.number().optional(),
  agentPid: z.number().int(),
});
export type InflightJob = z.infer<typeof InflightJob>;

export function writeJsonAtomic(file: string, value: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, JSON.stringify(value, null, 1), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

/** Read and validate a JSON file; a missing file is undefined, a broken one is moved aside. */
export function readJsonFile<S extends z.ZodType>(file: string, schema: S, onBroken: (why: string) => void): z.infer<S> | undefined {
  if (!existsSync(file)) return undefined;
  let why: string;
  try {
    const r = schema.safeParse(JSON.parse(readFileSync(file, "utf8")));
    if (r.success) return r.data;
    why = formatZodError(r.error);
  } catch (e) {
    why = (e as Error).message;
  }
  // Keep the broken file for inspection instead of silently overwriting it.
  renameSync(file, `${file}.broken-${Date.now()}`);
  onBroken(why);
  return undefined;
}

export class StateStore {
  state: PersistedState;
  private seen: Set<string>;

  constructor(
    private readonly file: string,
    onBroken: (why: string) => void,
  ) {
    this.state = readJsonFile(file, PersistedState, onBroken) ?? PersistedState.parse({});
    this.seen = new Set(this.state.seenCommandIds);
  }

  save(): void {
    writeJsonAtomic(this.file, this.state);
  }

  hasSeen(id: string): boolean {
    return this.seen.has(id);
  }

  /** Remember a command id (persisted before the command runs, so a crash cannot run it twice). */
  markSeen(id: string): void {
    if (this.seen.has(id)) return;
    this.seen.add(id);
    this.state.seenCommandIds.push(id);
    while (this.state.seenCommandIds.length > SEEN_IDS_KEPT) this.seen.delete(this.state.seenCommandIds.shift()!);
    this.save();
  }

  update(fn: (s: PersistedState) => void): void {
    fn(this.state);
    this.save();
  }
}

export class InflightStore {
  constructor(
    private readonly file: string,
    private readonly onBroken: (why: string) => void,
  ) {}
  read(): InflightJob | undefined {
    return readJsonFile(this.file, InflightJob, this.onBroken);
  }
  write(job: InflightJob): void {
    writeJsonAtomic(this.file, job);
  }
  clear(): void {
    rmSync(this.file, { force: true });
  }
}
