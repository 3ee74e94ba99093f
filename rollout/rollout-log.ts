/**
 * The files of one rollout: a snapshot `<id>.json` (the whole RolloutRecord, written atomically)
 * and an append-only log `<id>.log` of change lines (record.ts) written after it. A step costs one
 * line of a few hundred bytes instead of rewriting the whole record (1.6 MB at 1,000 hosts).
 *
 * - Group commit: lines queued in one turn of the event loop, or while a write runs, go out together in one write, with one
 *   fdatasync when any of them must be durable. Lines that need not be durable are written
 *   without a sync; a later sync of the same file covers them, because it covers everything
 *   written before it.
 * - Compaction: when the log outgrows the snapshot (and at least `compactMinBytes`), the record
 *   is written whole again. New lines go to `<id>.log.next` meanwhile, so appends never wait for
 *   the snapshot; once it is on disk, `.log.next` replaces `.log`. Lines are numbered: replay
 *   skips those the snapshot holds, so a crash at any point of this leaves a readable state.
 * - A torn last line (a crash mid-append) is ignored; a damaged line before it is an error.
 */
import { constants } from "node:fs";
import { open, readFile, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { RolloutStoreError } from "./errors.js";
import { applyChangeLine, ChangeLine, changeLine, RolloutSnapshot, type RolloutChanges, type RolloutRecord } from "./record.js";

export interface RolloutFiles {
  snapshot: string;
  log: string;
  /** The log that takes new lines while a compaction writes the snapshot. */
  next: string;
}

export const rolloutFiles = (dir: string, id: string): RolloutFiles => ({
  snapshot: join(dir, `${id}.json`),
  log: join(dir, `${id}.log`),
  next: join(dir, `${id}.log.next`),
});

/** What the store counts, for benchmarks and tests. */
export interface RolloutStoreStats {
  /** Whole records written (rollout start and end, resume, compaction). */
  snapshots: number;
  /** Writes to a log (each carries every line queued meanwhile). */
  logWrites: number;
  logSyncs: number;
  logBytes: number;
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

interface Queue {
  lines: string[];
  /** Resolve once the lines are written (durable with the next sync). */
  written: Waiter[];
  /** Resolve once the lines are synced to disk. */
  synced: Waiter[];
  /** Resolve once the whole record is written as a new snapshot (which makes queued lines moot). */
  snapshot: Waiter[];
}

const emptyQueue = (): Queue => ({ lines: [], written: [], synced: [], snapshot: [] });

export class RolloutLogWriter {
  private record: RolloutRecord;
  private queue = emptyQueue();
  private pumping?: Promise<void>;
  private compacting?: Promise<void>;
  private fh?: FileHandle;
  /** Where `fh` appends: the log, or `.log.next` during a compaction. */
  private fhPath: string;
  private unsynced = false;
  private logBytes = 0;
  private snapshotBytes = 0;
  /** A write failed (the log may end in a torn line): nothing more is appended until a snapshot. */
  private broken?: RolloutStoreError;

  constructor(
    private readonly files: RolloutFiles,
    record: RolloutRecord,
    /** The last line number written for this rollout (from its files). */
    private seq: number,
    private readonly compactMinBytes: number,
    private readonly stats: RolloutStoreStats,
  ) {
    this.record = record;
    this.fhPath = files.log;
  }

  /** Log what changed in `record`; resolves once written, or once on disk when `durable`. */
  append(record: RolloutRecord, changes: RolloutChanges, durable: boolean): Promise<void> {
    this.record = record;
    const q = this.queue;
    q.lines.push(changeLine(++this.seq, record, changes));
    return this.wait(durable ? q.synced : q.written);
  }

  /** Write `record` whole as the new snapshot and start an empty log. */
  save(record: RolloutRecord): Promise<void> {
    this.record = record;
    return this.wait(this.queue.snapshot);
  }

  /** Resolves once nothing is queued or being written. */
  async idle(): Promise<void> {
    while (this.pumping || this.compacting) await Promise.all([this.pumping, this.compacting]).catch(() => undefined);
  }

  /** Sync and close the log (reopened by the next append). */
  async close(): Promise<void> {
    await this.idle();
    const fh = this.fh;
    this.fh = undefined;
    if (!fh) return;
    try {
      if (this.unsynced) await fh.datasync();
      this.unsynced = false;
    } finally {
      await fh.close();
    }
  }

  private wait(list: Waiter[]): Promise<void> {
    const p = new Promise<void>((resolve, reject) => list.push({ resolve, reject }));
    // Started once the event loop's current phase is over (setImmediate), not on the next
    // microtask: the hosts of a rollout finish their steps in bursts (job states arriving in one
    // read of the socket, step timers expiring together), each in its own callback. A microtask
    // would write and sync the first host's line alone and make the others wait for that sync and
    // then their own (1.5 syncs per step on average); this way a burst costs one sync.
    this.pumping ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.pump());
    return p;
  }

  private async pump(): Promise<void> {
    try {
      for (let q = this.take(); q; q = this.take()) {
        const all = [...q.snapshot, ...q.synced, ...q.written];
        try {
          if (q.snapshot.length > 0) await this.writeSnapshot();
          else await this.writeLines(q);
          for (const w of all) w.resolve();
        } catch (e) {
          const err = e instanceof RolloutStoreError ? e : new RolloutStoreError("cannot write rollout state", this.fhPath, { cause: e });
          if (q.snapshot.length === 0) this.broken = err;
          for (const w of all) w.reject(err);
        }
      }
    } finally {
      this.pumping = undefined;
    }
  }

  private take(): Queue | undefined {
    const q = this.queue;
    if (q.lines.length === 0 && q.snapshot.length === 0 && q.synced.length === 0 && q.written.length === 0) return undefined;
    this.queue = emptyQueue();
    return q;
  }

  private async writeLines(q: Queue): Promise<void> {
    if (this.broken) throw this.broken;
    const text = q.lines.join("\n") + "\n";
    const fh = await this.handle();
    await fh.appendFile(text, "utf8");
    this.unsynced = true;
    this.logBytes += Buffer.byteLength(text);
    this.stats.logWrites++;
    this.stats.logBytes += Buffer.byteLength(text);
    if (q.synced.length > 0) await this.sync(fh);
    if (!this.compacting && this.logBytes >= Math.max(this.compactMinBytes, 2 * this.snapshotBytes)) await this.startCompaction(fh);
  }

  private async sync(fh: FileHandle): Promise<void> {
    await fh.datasync();
    this.unsynced = false;
    this.stats.logSyncs++;
  }

  private async handle(): Promise<FileHandle> {
    if (this.fh) return this.fh;
    this.fh = await open(this.fhPath, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600);
    await syncDir(this.fhPath); // the file's name must survive a power cut, not only its lines
    return this.fh;
  }

  /**
   * Write the record whole in the background while new lines go to `.log.next`. The snapshot is
   * taken now, with the number of the last line queued: every line after it goes to the new file.
   */
  private async startCompaction(old: FileHandle): Promise<void> {
    const text = snapshotText(this.record, this.seq);
    // Lines of the old log must not be lost while later ones, in the new file, survive.
    if (this.unsynced) await this.sync(old);
    this.fh = undefined;
    await old.close();
    this.fhPath = this.files.next;
    await rm(this.files.next, { force: true }); // a leftover of an earlier crash: its lines are in the record
    await this.handle();
    this.logBytes = 0;
    this.compacting = (async () => {
      await atomicWrite(this.files.snapshot, text);
      this.stats.snapshots++;
      this.snapshotBytes = text.length;
      await rename(this.files.next, this.files.log); // the open handle follows the file
      this.fhPath = this.files.log;
      await syncDir(this.files.log);
    })()
      .catch((e: unknown) => {
        this.broken = new RolloutStoreError("cannot compact the rollout log", this.files.snapshot, { cause: e });
      })
      .finally(() => {
        this.compacting = undefined;
      });
  }

  private async writeSnapshot(): Promise<void> {
    await this.compacting;
    const text = snapshotText(this.record, this.seq);
    await atomicWrite(this.files.snapshot, text);
    this.stats.snapshots++;
    this.snapshotBytes = text.length;
    // Every line so far is in the snapshot: the logs go.
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
    await rm(this.files.log, { force: true });
    await rm(this.files.next, { force: true });
    await syncDir(this.files.log);
    this.fhPath = this.files.log;
    this.logBytes = 0;
    this.unsynced = false;
    this.broken = undefined;
  }
}

function snapshotText(record: RolloutRecord, seq: number): string {
  return JSON.stringify({ ...record, logSeq: seq });
}

/**
 * The record as its files say: the snapshot, then the log lines after it. Undefined when there is
 * no snapshot. Retried when a compaction replaced the files while they were read.
 */
export async function readRollout(files: RolloutFiles): Promise<{ record: RolloutRecord; seq: number } | undefined> {
  for (let attempt = 1; ; attempt++) {
    const read = await readOnce(files);
    if (read === undefined || "record" in read) return read;
    if (attempt === 3) throw new RolloutStoreError(`rollout log misses lines ${read.gap}`, files.log);
  }
}

async function readOnce(files: RolloutFiles): Promise<{ record: RolloutRecord; seq: number } | { gap: string } | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(files.snapshot, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new RolloutStoreError("cannot read rollout state", files.snapshot, { cause: e });
  }
  let text: string;
  let ino: number;
  try {
    ino = (await fh.stat()).ino;
    text = await fh.readFile("utf8");
  } catch (e) {
    throw new RolloutStoreError("cannot read rollout state", files.snapshot, { cause: e });
  } finally {
    await fh.close();
  }
  const { logSeq, ...record } = parseSnapshot(text, files.snapshot);
  let seq = logSeq ?? 0;
  for (const path of [files.log, files.next]) {
    for (const line of await readLines(path)) {
      if (line.n <= seq) continue; // already in the snapshot (or read twice across a rename)
      if (line.n !== seq + 1) return { gap: `${seq + 1}-${line.n - 1}` };
      applyChangeLine(record, line);
      seq = line.n;
    }
  }
  // A compaction that finished while we read: read its result instead.
  const now = await stat(files.snapshot).catch(() => undefined);
  if (now?.ino !== ino) return { gap: "(replaced while read)" };
  return { record, seq };
}

function parseSnapshot(text: string, path: string) {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new RolloutStoreError("rollout state is not valid JSON", path, { cause: e });
  }
  const r = RolloutSnapshot.safeParse(json);
  if (!r.success) throw new RolloutStoreError(`rollout state does not match the expected format (${r.error.issues[0]?.message ?? "invalid"})`, path);
  return r.data;
}

async function readLines(path: string): Promise<ChangeLine[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new RolloutStoreError("cannot read rollout log", path, { cause: e });
  }
  const parts = text.split("\n");
  const tail = parts.pop()!; // after the last newline: empty, or a line torn by a crash mid-append
  const lines = parts.map((p, i) => parseLine(p, path, i + 1));
  if (tail !== "") {
    try {
      lines.push(parseLine(tail, path, parts.length + 1));
    } catch {
      // torn: its change was never reported as stored
    }
  }
  return lines;
}

function parseLine(text: string, path: string, lineNo: number): ChangeLine {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new RolloutStoreError(`rollout log line ${lineNo} is not valid JSON`, path, { cause: e });
  }
  const r = ChangeLine.safeParse(json);
  if (!r.success) throw new RolloutStoreError(`rollout log line ${lineNo} does not match the expected format (${r.error.issues[0]?.message ?? "invalid"})`, path);
  return r.data;
}

let tmpCounter = 0;

/** Temp file, fsync, rename, fsync of the directory: after a crash the file is old or new, never half. */
export async function atomicWrite(path: string, text: string): Promise<void> {
  // Unique per write: two store instances in one process (a service closed and a new one resuming)
  // may write the same rollout at the same moment, and must not rename each other's temp file.
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${++tmpCounter}.tmp`);
  const fh = await open(tmp, "w", 0o600);
  try {
    await fh.writeFile(text, "utf8");
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await syncDir(path);
}

/** fsync the directory holding `path`, so a created, renamed or removed name survives a power cut. */
async function syncDir(path: string): Promise<void> {
  const dir = await open(dirname(path), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
