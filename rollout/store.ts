/**
 * Durable rollout state: one JSON file per rollout under <dataDir>/rollouts, one per finished
 * rollout under <dataDir>/history. Writes are atomic (temp file, fsync, rename, fsync of the
 * directory), so after a crash a file is either the old or the new version, never half of each.
 *
 * The engine records every step (with its command id) and awaits the write BEFORE it sends the
 * command: after a hub restart the record says exactly which commands may have gone out.
 *
 * Concurrent saves of the same rollout are coalesced ("group commit"): while one write runs, later
 * saves wait for the next write, which takes the newest state. 500 hosts finishing steps at once
 * cost a handful of writes, not 500.
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { mkdir, open, readdir, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { CommitSha, JobStateName, RolloutHistoryEntry, RolloutProgress } from "../protocol/schemas.js";
import { RolloutStoreError } from "./errors.js";
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

interface PendingWrite {
  record: unknown;
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class RolloutStore {
  private readonly rolloutDir: string;
  private readonly historyDir: string;
  private ready?: Promise<void>;
  private readonly writers = new Map<string, { running: boolean; queued?: PendingWrite }>();
  private readonly running = new Set<Promise<void>>();
  /** Files actually written (save() calls are coalesced into fewer writes). */
  writeCount = 0;

  constructor(readonly dataDir: string) {
    this.rolloutDir = join(dataDir, "rollouts");
    this.historyDir = join(dataDir, "history");
  }

  private init(): Promise<void> {
    this.ready ??= Promise.all([mkdir(this.rolloutDir, { recursive: true }), mkdir(this.historyDir, { recursive: true })]).then(() => undefined);
    return this.ready;
  }

  /**
   * Throws RolloutStoreError unless a file can be written in the rollouts folder now (a full,
   * read-only or vanished data dir). A rollout must not start that could not record its steps.
   */
  assertWritable(): void {
    try {
      this.probeWrite();
    } catch (e) {
      throw new RolloutStoreError(`the data dir cannot be written (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, this.rolloutDir, { cause: e });
    }
  }

  /** Write and remove a small file where rollouts are kept (throws what the file system says). */
  protected probeWrite(): void {
    const probe = join(this.rolloutDir, `.write-probe-${process.pid}`);
    mkdirSync(this.rolloutDir, { recursive: true });
    writeFileSync(probe, "probe\n");
    rmSync(probe, { force: true });
  }

  /** Persist the rollout; resolves once the state as of this call is on disk. */
  save(record: RolloutRecord): Promise<void> {
    return this.enqueue(join(this.rolloutDir, `${record.id}.json`), record);
  }

  async load(id: string): Promise<RolloutRecord | undefined> {
    return this.readValidated(join(this.rolloutDir, `${id}.json`), RolloutRecord);
  }

  /** All stored rollouts, newest first. */
  async list(): Promise<RolloutRecord[]> {
    return this.readAll(this.rolloutDir, RolloutRecord, (r) => r.progress.createdAt);
  }

  async listUnfinished(): Promise<RolloutRecord[]> {
    return (await this.list()).filter((r) => !r.finished);
  }

  saveHistory(entry: RolloutHistoryEntry): Promise<void> {
    return this.enqueue(join(this.historyDir, `${entry.rolloutId}.json`), entry);
  }

  /** The update history, newest first. */
  async history(): Promise<RolloutHistoryEntry[]> {
    return this.readAll(this.historyDir, RolloutHistoryEntry, (e) => e.finishedAt);
  }

  private async readAll<S extends z.ZodType>(dir: string, schema: S, sortKey: (v: z.infer<S>) => string): Promise<z.infer<S>[]> {
    await this.init();
    const names = (await readdir(dir)).filter((n) => n.endsWith(".json"));
    const out: z.infer<S>[] = [];
    for (const n of names) {
      const v = await this.readValidated(join(dir, n), schema);
      if (v !== undefined) out.push(v);
    }
    return out.sort((a, b) => (sortKey(a) < sortKey(b) ? 1 : sortKey(a) > sortKey(b) ? -1 : 0));
  }

  private async readValidated<S extends z.ZodType>(path: string, schema: S): Promise<z.infer<S> | undefined> {
    await this.init();
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new RolloutStoreError("cannot read rollout state", path, { cause: e });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new RolloutStoreError("rollout state is not valid JSON", path, { cause: e });
    }
    const r = schema.safeParse(json);
    if (!r.success) throw new RolloutStoreError(`rollout state does not match the expected format (${r.error.issues[0]?.message ?? "invalid"})`, path);
    return r.data;
  }

  /** Resolves when every write started so far is on disk (call before handing the data dir to another store). */
  async flush(): Promise<void> {
    const pending = [...this.writers.values()].map((w) => w.queued?.promise.catch(() => undefined));
    await Promise.all([...this.running, ...pending]);
  }

  private enqueue(path: string, record: unknown): Promise<void> {
    let w = this.writers.get(path);
    if (!w) {
      w = { running: false };
      this.writers.set(path, w);
    }
    if (w.queued) {
      // A write is already waiting to start: it will serialise the newest state, this one included.
      w.queued.record = record;
      return w.queued.promise;
    }
    let resolve!: () => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    w.queued = { record, promise, resolve, reject };
    if (!w.running) {
      const pumping = this.pump(path, w);
      this.running.add(pumping);
      void pumping.finally(() => this.running.delete(pumping));
    }
    return promise;
  }

  private async pump(path: string, w: { running: boolean; queued?: PendingWrite }): Promise<void> {
    w.running = true;
    try {
      await this.init();
      while (w.queued) {
        const job = w.queued;
        w.queued = undefined;
        try {
          await atomicWrite(path, JSON.stringify(job.record, null, 1));
          this.writeCount++;
          job.resolve();
        } catch (e) {
          job.reject(new RolloutStoreError("cannot write rollout state", path, { cause: e }));
        }
      }
    } catch (e) {
      const job = w.queued;
      w.queued = undefined;
      job?.reject(new RolloutStoreError("cannot create the rollout data dir", path, { cause: e }));
    } finally {
      w.running = false;
      this.writers.delete(path);
    }
  }
}

let tmpCounter = 0;

async function atomicWrite(path: string, text: string): Promise<void> {
  // Unique per write: two store instances in one process (a service closed and a new one resuming)
  // may write the same rollout at the same moment, and must not rename each other's temp file.
  const tmp = `${path}.${process.pid}.${++tmpCounter}.tmp`;
  const fh = await open(tmp, "w", 0o600);
  try {
    await fh.writeFile(text, "utf8");
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  // fsync the directory so the rename itself survives a power cut.
  const dir = await open(join(path, ".."), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
