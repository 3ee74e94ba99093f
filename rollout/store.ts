/**
 * Durable rollout state under <dataDir>/rollouts, and the update history under <dataDir>/history.
 *
 * A rollout is a snapshot (`<id>.json`, the whole RolloutRecord) plus an append-only log of what
 * changed since (`<id>.log`, see rollout-log.ts). The engine uses two calls:
 * - save(record): the record whole, atomically (temp file, fsync, rename, fsync of the directory)
 *   and an empty log: when a rollout starts, resumes and ends.
 * - append(record, changes, { durable }): one line with the changed hosts and steps. The engine
 *   records every step (with its command id) with `durable: true` and awaits it BEFORE it sends
 *   the command: after a crash the files say exactly which commands may have gone out. What can
 *   be learnt again after a restart (a step's result, a host's state) is appended without waiting
 *   for the disk; the next durable line makes it durable too.
 * Reading replays the log over the snapshot; records written whole by older versions (no log)
 * read as before.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { mkdir, readdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { RolloutHistoryEntry } from "../protocol/schemas.js";
import { RolloutStoreError } from "./errors.js";
import { atomicWrite, readRollout, RolloutLogWriter, rolloutFiles, type RolloutStoreStats } from "./rollout-log.js";
import type { RolloutChanges, RolloutRecord } from "./record.js";

export { RolloutRecord, StepRecord, STOP_REASONS, stepKey, type RolloutChanges, type StepResult } from "./record.js";
export type { RolloutStoreStats } from "./rollout-log.js";

export interface RolloutStoreOptions {
  /** The log is compacted (the record written whole) once it is this long and longer than twice the record. Default 1 MiB. */
  compactMinBytes?: number;
}

/** The line number each loaded record's files ended at, so its next lines continue from there. */
const loadedSeq = new WeakMap<RolloutRecord, number>();

export class RolloutStore {
  readonly stats: RolloutStoreStats = { snapshots: 0, logWrites: 0, logSyncs: 0, logBytes: 0 };
  private readonly rolloutDir: string;
  private readonly historyDir: string;
  private readonly compactMinBytes: number;
  private ready?: Promise<void>;
  private readonly writers = new Map<string, RolloutLogWriter>();
  private readonly historyWrites = new Set<Promise<void>>();

  constructor(
    readonly dataDir: string,
    opts: RolloutStoreOptions = {},
  ) {
    this.rolloutDir = join(dataDir, "rollouts");
    this.historyDir = join(dataDir, "history");
    this.compactMinBytes = opts.compactMinBytes ?? 1024 * 1024;
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

  /**
   * Persist the rollout whole and start an empty log; resolves once the state as of this call is
   * on disk. Saves queued together are written once, with the newest state.
   */
  async save(record: RolloutRecord): Promise<void> {
    await this.initFor(record.id);
    const w = this.writer(record);
    await w.save(record);
    // A finished rollout is not written again: let go of its log and record.
    if (record.finished && this.writers.get(record.id) === w) {
      this.writers.delete(record.id);
      await w.close();
    }
  }

  /**
   * Log the `changes` of a rollout saved whole before by this store, with the rollout's own fields
   * (state, counts, stop, ...). Resolves once written; with `durable`, once on disk (fsync).
   * After a failed write nothing more is appended until the next save().
   */
  append(record: RolloutRecord, changes: RolloutChanges, opts: { durable: boolean }): Promise<void> {
    const w = this.writers.get(record.id);
    if (!w) return Promise.reject(new Error(`rollout ${record.id}: save() it whole before appending changes`));
    return w.append(record, changes, opts.durable);
  }

  async load(id: string): Promise<RolloutRecord | undefined> {
    await this.init();
    const read = await readRollout(rolloutFiles(this.rolloutDir, id));
    if (!read) return undefined;
    loadedSeq.set(read.record, read.seq);
    return read.record;
  }

  /** All stored rollouts, newest first. */
  async list(): Promise<RolloutRecord[]> {
    await this.init();
    const ids = (await readdir(this.rolloutDir)).filter((n) => n.endsWith(".json") && !n.startsWith(".")).map((n) => n.slice(0, -".json".length));
    const out: RolloutRecord[] = [];
    for (const id of ids) {
      const r = await this.load(id);
      if (r) out.push(r);
    }
    return newestFirst(out, (r) => r.progress.createdAt);
  }

  async listUnfinished(): Promise<RolloutRecord[]> {
    return (await this.list()).filter((r) => !r.finished);
  }

  async saveHistory(entry: RolloutHistoryEntry): Promise<void> {
    await this.init();
    const path = join(this.historyDir, `${entry.rolloutId}.json`);
    const write = atomicWrite(path, JSON.stringify(entry, null, 1)).catch((e: unknown) => {
      throw new RolloutStoreError("cannot write the update history", path, { cause: e });
    });
    this.historyWrites.add(write);
    void write.catch(() => undefined).finally(() => this.historyWrites.delete(write));
    return write;
  }

  /** The update history, newest first. */
  async history(): Promise<RolloutHistoryEntry[]> {
    await this.init();
    const out: RolloutHistoryEntry[] = [];
    for (const n of (await readdir(this.historyDir)).filter((n) => n.endsWith(".json") && !n.startsWith("."))) {
      out.push(await readHistoryEntry(join(this.historyDir, n)));
    }
    return newestFirst(out, (e) => e.finishedAt);
  }

  /** One rollout's history entry, or undefined when it has none (yet). */
  async historyEntry(rolloutId: string): Promise<RolloutHistoryEntry | undefined> {
    await this.init();
    const path = join(this.historyDir, `${rolloutId}.json`);
    if (basename(path) !== `${rolloutId}.json` || !existsSync(path)) return undefined;
    return readHistoryEntry(path);
  }

  /** Resolves when every write started so far is on disk and the logs are closed (call before handing the data dir to another store). */
  async flush(): Promise<void> {
    await Promise.all([...this.historyWrites].map((w) => w.catch(() => undefined)));
    await Promise.all([...this.writers.values()].map((w) => w.close().catch(() => undefined)));
  }

  private async initFor(id: string): Promise<void> {
    try {
      await this.init();
    } catch (e) {
      this.ready = undefined;
      throw new RolloutStoreError("cannot create the rollout data dir", join(this.rolloutDir, `${id}.json`), { cause: e });
    }
  }

  private writer(record: RolloutRecord): RolloutLogWriter {
    let w = this.writers.get(record.id);
    if (!w) {
      w = new RolloutLogWriter(rolloutFiles(this.rolloutDir, record.id), record, loadedSeq.get(record) ?? 0, this.compactMinBytes, this.stats);
      this.writers.set(record.id, w);
    }
    return w;
  }
}

function newestFirst<T>(items: T[], key: (v: T) => string): T[] {
  return items.sort((a, b) => (key(a) < key(b) ? 1 : key(a) > key(b) ? -1 : 0));
}

async function readHistoryEntry(path: string): Promise<RolloutHistoryEntry> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new RolloutStoreError("cannot read the update history", path, { cause: e });
  }
  const r = RolloutHistoryEntry.safeParse(json);
  if (!r.success) throw new RolloutStoreError(`update history does not match the expected format (${r.error.issues[0]?.message ?? "invalid"})`, path);
  return r.data;
}
