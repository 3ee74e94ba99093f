/**
 * The broker's LevelDB as aedes-persistence-level sees it, made cheap per CONNECT.
 *
 * Profiles of 1,000 simulated hosts connecting put a third of the broker's time in LevelDB calls
 * (each one a hand-off to libuv's thread pool): per host about 12 writes (7 retained states, the
 * will, the subscriptions, the queued copy of its own QoS 1 "online"), 3 point reads (the old
 * will, the queued packet at each delivery and PUBACK) and 2 range reads (the session's
 * subscriptions and queued messages at CONNECT). `SessionCache` stands in for the `level` object:
 * - **reads from memory**: the per-client namespaces of aedes-persistence-level 9.2 (wills,
 *   subscriptions, queued outgoing and incoming packets: small, one entry or a few per session;
 *   the outgoing queue is capped per session at limits.maxQueuedMessages, aedes-fixes.ts fix 6)
 *   are read whole at start and kept in step, so their gets and range reads need no LevelDB call.
 *   Retained messages are not held here: the RetainedIndex (aedes-fixes.ts) answers those.
 * - **writes grouped (group commit)**: every put, del and batch issued while the loop runs is
 *   written as one LevelDB batch (one batch in flight at a time, in issue order); each caller's
 *   promise settles when the batch holding its write is written, as with a single put, with the
 *   same `sync: false` durability. A failed batch changes nothing on disk (LevelDB batches are
 *   atomic) and nothing in memory: every write of it fails to its caller.
 * Reads see every write issued before them, written or not (a write still in flight is answered
 * from memory); the memory copy of a namespace only ever holds what is on disk plus those writes.
 * Key layout is aedes-persistence-level 9.2's (`asyncPersistence.js`): re-check on an upgrade.
 */
import type { Level } from "level";

/** Namespaces held whole in memory: `<ns><encoded client id>:<rest>` (wills: `will:<encoded client id>`). */
const CACHED_NAMESPACES = ["will:", "subscriptions:", "outgoing:", "outgoing-id:", "incoming:"] as const;

type Op = { type: "put"; key: string; value: Buffer } | { type: "del"; key: string };

/** Range options as aedes-persistence-level passes them (gte/lt around a prefix ending in ':'). */
export interface RangeOptions {
  gte?: string;
  lt?: string;
  gt?: string;
  lte?: string;
  reverse?: boolean;
  limit?: number;
  valueEncoding?: string;
}

/** Writes issued together: written as one LevelDB batch. */
class PendingBatch {
  readonly ops: Op[] = [];
  /** The last op per key (what a read of that key sees). */
  readonly latest = new Map<string, Op>();
  /** Cached keys written here, per group (a client's part of a namespace). */
  readonly groups = new Map<string, Set<string>>();
  readonly written: Promise<void>;
  /** A delete of an uncached range (LevelDB's clear) instead of writes: no ops of its own. */
  clear?: RangeOptions;
  resolve!: () => void;
  reject!: (err: unknown) => void;

  constructor() {
    this.written = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // Each writer awaits `written`; a batch nobody waits for any more must not be an unhandled rejection.
    this.written.catch(() => undefined);
  }

  add(op: Op): void {
    this.ops.push(op);
    this.latest.set(op.key, op);
    const group = groupOf(op.key);
    if (group === undefined) return;
    let keys = this.groups.get(group);
    if (!keys) this.groups.set(group, (keys = new Set()));
    keys.add(op.key);
  }
}

function namespaceOf(key: string): string | undefined {
  for (const ns of CACHED_NAMESPACES) if (key.startsWith(ns)) return ns;
  return undefined;
}

/** `<ns><client>:` (or the whole key for a will), for a key of a cached namespace; else undefined. */
function groupOf(key: string): string | undefined {
  const ns = namespaceOf(key);
  if (ns === undefined) return undefined;
  const end = key.indexOf(":", ns.length);
  return end < 0 ? key : key.slice(0, end + 1);
}

/** LevelDB's key order: bytewise on UTF-8 (JavaScript's string order differs above U+FFFF). */
function byKey(a: [string, Buffer], b: [string, Buffer]): number {
  return Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0]));
}

export class SessionCache {
  /** What is on disk in the cached namespaces: namespace -> group -> key -> value. */
  private readonly stored = new Map<string, Map<string, Map<string, Buffer>>>(CACHED_NAMESPACES.map((ns) => [ns, new Map()]));
  /** Writes not yet handed to LevelDB. */
  private open?: PendingBatch;
  /** Batches closed early by a clear of an uncached range, and that clear: written before `open`, in order. */
  private sealed: PendingBatch[] = [];
  /** The batch LevelDB is writing now. */
  private inFlight?: PendingBatch;
  private flushQueued = false;

  private constructor(private readonly db: Level<string, Buffer>) {}

  /** Read the cached namespaces of `db` (open) once. */
  static async load(db: Level<string, Buffer>): Promise<SessionCache> {
    const cache = new SessionCache(db);
    for (const ns of CACHED_NAMESPACES) {
      for await (const [key, value] of db.iterator({ gte: ns, lt: `${ns.slice(0, -1)};` })) cache.storedPut(key, value);
    }
    return cache;
  }

  // ------------------------------------------------------------------------------------------
  // The part of the `level` API that aedes-persistence-level uses.

  async get(key: string, options?: { valueEncoding?: string }): Promise<Buffer | undefined> {
    const group = groupOf(key);
    // A pending clear of an uncached range may delete this key: read once it and what came before are written.
    if (group === undefined && this.pending().some((b) => b.clear)) await this.drained();
    for (const batch of this.pending().reverse()) {
      const op = batch.latest.get(key);
      if (op) return op.type === "put" ? op.value : undefined;
    }
    if (group !== undefined) return this.stored.get(namespaceOf(key)!)!.get(group)?.get(key);
    return this.db.get(key, options as never);
  }

  put(key: string, value: Buffer, _options?: unknown): Promise<void> {
    return this.write([{ type: "put", key, value: toBuffer(value) }]);
  }

  del(key: string): Promise<void> {
    return this.write([{ type: "del", key }]);
  }

  /** `batch(ops)` writes them; `batch()` is a chained batch (put/del, then write()). */
  batch(ops: Array<{ type: "put" | "del"; key: string; value?: Buffer }>, options?: unknown): Promise<void>;
  batch(): ChainedBatch;
  batch(ops?: Array<{ type: "put" | "del"; key: string; value?: Buffer }>): Promise<void> | ChainedBatch {
    if (ops === undefined) return new ChainedBatch((chained) => this.write(chained));
    return this.write(ops.map((op) => (op.type === "put" ? { type: "put", key: op.key, value: toBuffer(op.value) } : { type: "del", key: op.key })));
  }

  /**
   * Delete a range: a cached one as deletes of its keys (grouped like any write); others with
   * LevelDB's clear in write order: after the writes issued before it, before those issued after.
   */
  async clear(range: RangeOptions): Promise<void> {
    const cached = cachedRange(range);
    if (!cached) {
      if (this.open) this.sealed.push(this.open);
      this.open = undefined;
      const step = new PendingBatch();
      step.clear = range;
      this.sealed.push(step);
      this.scheduleFlush();
      return step.written;
    }
    const keys = this.entries(cached).map(([key]) => key);
    if (keys.length > 0) await this.write(keys.map((key) => ({ type: "del", key })));
  }

  /** Values of a range in key order, as they are when called (like LevelDB's implicit snapshot). */
  values(range: RangeOptions): AsyncIterable<Buffer> {
    const cached = cachedRange(range);
    if (!cached) return this.valuesOnDisk(range);
    const entries = this.entries(cached);
    return (async function* () {
      for (const [, value] of entries) yield value;
    })();
  }

  /** Write what is pending, then close the database. */
  async close(): Promise<void> {
    await this.drained();
    await this.db.close();
  }

  // ------------------------------------------------------------------------------------------

  /**
   * How many messages are queued for a client (its `outgoing:` entries, pending writes included),
   * without building the range: fixPersistence's per-session cap asks this once per queued message.
   */
  queuedCount(clientId: string): number {
    const group = `outgoing:${encodeURIComponent(clientId)}:`;
    const stored = this.stored.get("outgoing:")!.get(group);
    let count = stored?.size ?? 0;
    const counted = new Set<string>();
    // The newest op of a key decides (open after inFlight); each key counted once.
    for (const batch of this.pending().reverse()) {
      for (const key of batch.groups.get(group) ?? []) {
        if (counted.has(key)) continue;
        counted.add(key);
        const present = batch.latest.get(key)!.type === "put";
        if (present !== (stored?.has(key) ?? false)) count += present ? 1 : -1;
      }
    }
    return count;
  }

  /** Resolves once every write issued so far is settled (written or failed). */
  async drained(): Promise<void> {
    while (this.open || this.inFlight || this.sealed.length > 0) await (this.inFlight ?? this.sealed[0] ?? this.open)!.written.catch(() => undefined);
  }

  /** Batches not yet written, in issue order. */
  private pending(): PendingBatch[] {
    return [this.inFlight, ...this.sealed, this.open].filter((b): b is PendingBatch => b !== undefined);
  }

  private async *valuesOnDisk(range: RangeOptions): AsyncGenerator<Buffer> {
    await this.drained();
    yield* this.db.values(range as never) as AsyncIterable<Buffer>;
  }

  private write(ops: Op[]): Promise<void> {
    const batch = (this.open ??= new PendingBatch());
    for (const op of ops) batch.add(op);
    this.scheduleFlush();
    return batch.written;
  }

  private scheduleFlush(): void {
    if (!this.inFlight && !this.flushQueued) {
      this.flushQueued = true;
      // After this turn of the loop: the writes of every packet read in it go out together.
      setImmediate(() => {
        this.flushQueued = false;
        this.flush();
      });
    }
  }

  private flush(): void {
    if (this.inFlight) return;
    const batch = this.sealed.shift() ?? this.open;
    if (!batch) return;
    if (batch === this.open) this.open = undefined;
    this.inFlight = batch;
    (batch.clear ? this.db.clear(batch.clear as never) : this.db.batch(batch.ops)).then(
      () => {
        for (const op of batch.ops) if (groupOf(op.key) !== undefined) op.type === "put" ? this.storedPut(op.key, op.value) : this.storedDel(op.key);
        this.inFlight = undefined;
        batch.resolve();
        this.flush(); // what came in meanwhile
      },
      (err: unknown) => {
        this.inFlight = undefined;
        batch.reject(err);
        this.flush();
      },
    );
  }

  private storedPut(key: string, value: Buffer): void {
    const group = groupOf(key)!;
    const groups = this.stored.get(namespaceOf(key)!)!;
    let keys = groups.get(group);
    if (!keys) groups.set(group, (keys = new Map()));
    keys.set(key, value);
  }

  private storedDel(key: string): void {
    const group = groupOf(key)!;
    const groups = this.stored.get(namespaceOf(key)!)!;
    const keys = groups.get(group);
    if (!keys?.delete(key)) return;
    if (keys.size === 0) groups.delete(group); // a gone session costs no memory
  }

  /** The stored entries of a cached range with every pending write applied, in key order. */
  private entries(range: CachedRange): Array<[string, Buffer]> {
    const groups = this.stored.get(range.ns)!;
    const names = new Set<string>();
    const wanted = (group: string) => (range.group === undefined ? group.startsWith(range.ns) : group === range.group);
    if (range.group !== undefined) names.add(range.group);
    else for (const group of groups.keys()) names.add(group);
    const pending = this.pending();
    for (const batch of pending) for (const group of batch.groups.keys()) if (wanted(group)) names.add(group);

    const view = new Map<string, Buffer>();
    for (const group of names) {
      for (const [key, value] of groups.get(group) ?? []) view.set(key, value);
      for (const batch of pending) {
        for (const key of batch.groups.get(group) ?? []) {
          const op = batch.latest.get(key)!;
          if (op.type === "put") view.set(key, op.value);
          else view.delete(key);
        }
      }
    }
    return [...view].sort(byKey);
  }
}

/** `batch()` without arguments, as aedes-persistence-level's outgoingClearMessageId uses it. */
export class ChainedBatch {
  private readonly ops: Op[] = [];
  constructor(private readonly commit: (ops: Op[]) => Promise<void>) {}
  put(key: string, value: Buffer): this {
    this.ops.push({ type: "put", key, value: toBuffer(value) });
    return this;
  }
  del(key: string): this {
    this.ops.push({ type: "del", key });
    return this;
  }
  write(): Promise<void> {
    return this.commit(this.ops);
  }
}

interface CachedRange {
  ns: string;
  /** One client's group; undefined for the whole namespace. */
  group?: string;
}

/** A range over a whole cached namespace or one client's group of it; undefined for anything else. */
function cachedRange(range: RangeOptions): CachedRange | undefined {
  const { gte, lt } = range;
  if (gte === undefined || lt === undefined || range.gt !== undefined || range.lte !== undefined || range.reverse || range.limit !== undefined) return undefined;
  if (!gte.endsWith(":") || lt !== `${gte.slice(0, -1)};`) return undefined;
  const ns = namespaceOf(gte);
  if (ns === undefined) return undefined;
  if (gte === ns) return { ns };
  return gte.indexOf(":", ns.length) === gte.length - 1 ? { ns, group: gte } : undefined;
}

function toBuffer(value: Buffer | string | undefined): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value ?? "");
}
