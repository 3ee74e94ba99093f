import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { Level } from "level";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SessionCache } from "../../broker/session-cache.js";

type Db = Level<string, Buffer>;
const open = async (dir: string): Promise<Db> => {
  const db = new Level<string, Buffer>(dir, { valueEncoding: "buffer" });
  await db.open();
  return db;
};
const range = (prefix: string) => ({ gte: prefix, lt: `${prefix.slice(0, -1)};`, valueEncoding: "buffer" });
const all = async (values: AsyncIterable<Buffer>) => {
  const out: string[] = [];
  for await (const v of values) out.push(v.toString());
  return out;
};

// Keys shaped like aedes-persistence-level 9.2's, over two clients (one a prefix of the other), plus retained ones.
const clients = ["a", "ab", "c%3Ad"];
const keyArb = fc.oneof(
  fc.constantFrom(...clients).map((c) => `will:${c}`),
  fc.tuple(fc.constantFrom("subscriptions:", "outgoing:", "outgoing-id:", "incoming:"), fc.constantFrom(...clients), fc.constantFrom("x", "0001", "ü/t", "b:2")).map(([ns, c, rest]) => `${ns}${c}:${rest}`),
  fc.constantFrom("retained:a/b", "retained:ü", "other"),
);
const rangeArb = fc.oneof(
  fc.constantFrom("will:", "subscriptions:", "outgoing:", "outgoing-id:", "incoming:", "retained:"),
  fc.tuple(fc.constantFrom("subscriptions:", "outgoing:", "outgoing-id:", "incoming:"), fc.constantFrom(...clients)).map(([ns, c]) => `${ns}${c}:`),
);
type Step =
  | { kind: "put"; key: string; value: string }
  | { kind: "del"; key: string }
  | { kind: "batch"; ops: Array<{ key: string; value?: string }> }
  | { kind: "chained"; ops: Array<{ key: string; value?: string }> }
  | { kind: "clear"; prefix: string }
  | { kind: "get"; key: string }
  | { kind: "values"; prefix: string }
  | { kind: "settle" };
const opsArb = fc.array(fc.record({ key: keyArb, value: fc.option(fc.string({ maxLength: 4 }), { nil: undefined }) }), { maxLength: 4 });
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant("put" as const), key: keyArb, value: fc.string({ maxLength: 4 }) }),
  fc.record({ kind: fc.constant("del" as const), key: keyArb }),
  fc.record({ kind: fc.constant("batch" as const), ops: opsArb }),
  fc.record({ kind: fc.constant("chained" as const), ops: opsArb }),
  fc.record({ kind: fc.constant("clear" as const), prefix: rangeArb }),
  fc.record({ kind: fc.constant("get" as const), key: keyArb }),
  fc.record({ kind: fc.constant("values" as const), prefix: rangeArb }),
  fc.constant({ kind: "settle" as const }),
);

describe("SessionCache", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "lockstep-session-cache-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads and writes like the LevelDB it stands in for, without waiting on writes, and leaves the same data on disk", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { maxLength: 40 }), fc.array(fc.tuple(keyArb, fc.string({ maxLength: 3 })), { maxLength: 6 }), async (steps, seed) => {
        run++;
        const plain = await open(join(dir, `plain-${run}`));
        const backing = await open(join(dir, `cached-${run}`));
        for (const [k, v] of seed) {
          await plain.put(k, Buffer.from(v));
          await backing.put(k, Buffer.from(v));
        }
        // A slow disk: batches stay in flight while later steps run.
        const batch = backing.batch.bind(backing) as (ops: unknown) => Promise<void>;
        (backing as unknown as { batch: (ops: unknown) => Promise<void> }).batch = (ops) => new Promise((resolve) => setTimeout(resolve, 3)).then(() => batch(ops));
        const cached = await SessionCache.load(backing);
        // Writes are not awaited before the next step (as Aedes' concurrent packet handlers do):
        // the cache must answer every read with every write issued before it.
        const writes: Array<Promise<void>> = [];
        for (const step of steps) {
          if (step.kind === "put") {
            await plain.put(step.key, Buffer.from(step.value));
            writes.push(cached.put(step.key, Buffer.from(step.value)));
          } else if (step.kind === "del") {
            await plain.del(step.key);
            writes.push(cached.del(step.key));
          } else if (step.kind === "batch" || step.kind === "chained") {
            const ops = step.ops.map((o) => (o.value === undefined ? { type: "del" as const, key: o.key } : { type: "put" as const, key: o.key, value: Buffer.from(o.value) }));
            await plain.batch(ops);
            if (step.kind === "batch") writes.push(cached.batch(ops));
            else {
              const chained = cached.batch();
              for (const op of ops) op.type === "put" ? chained.put(op.key, op.value) : chained.del(op.key);
              writes.push(chained.write());
            }
          } else if (step.kind === "clear") {
            await plain.clear(range(step.prefix));
            writes.push(cached.clear(range(step.prefix)));
          } else if (step.kind === "get") {
            expect((await cached.get(step.key, { valueEncoding: "buffer" }))?.toString()).toBe((await plain.get(step.key))?.toString());
          } else if (step.kind === "values") {
            expect(await all(cached.values(range(step.prefix)))).toEqual(await all(plain.values(range(step.prefix))));
          } else {
            await Promise.all(writes);
          }
        }
        await Promise.all(writes);
        await cached.close();
        await plain.close();
        const reopened = [await open(join(dir, `plain-${run}`)), await open(join(dir, `cached-${run}`))] as const;
        const dump = async (db: Db) => (await db.iterator().all()).map(([k, v]) => `${k}=${v.toString()}`);
        expect(await dump(reopened[1])).toEqual(await dump(reopened[0]));
        await Promise.all(reopened.map((db) => db.close()));
      }),
      { numRuns: 40, seed: 1505 },
    );
  });

  it("clears an uncached range in write order: a write issued after the clear survives it", async () => {
    const db = await open(join(dir, "db"));
    const cache = await SessionCache.load(db);
    const writes = [cache.put("retained:x", Buffer.from("1")), cache.clear(range("retained:")), cache.put("retained:y", Buffer.from("2"))];
    expect(await cache.get("retained:x")).toBeUndefined();
    expect((await cache.get("retained:y"))?.toString()).toBe("2");
    await Promise.all(writes);
    expect(await all(cache.values(range("retained:")))).toEqual(["2"]);
    await cache.close();
  });

  it("groups the writes of one turn of the event loop into one LevelDB batch", async () => {
    const db = await open(join(dir, "db"));
    let batches = 0;
    const batch = db.batch.bind(db) as (ops: unknown) => Promise<void>;
    (db as unknown as { batch: (ops: unknown) => Promise<void> }).batch = (ops) => (batches++, batch(ops));
    const cache = await SessionCache.load(db);
    await Promise.all([cache.put("will:a", Buffer.from("w")), cache.put("retained:x", Buffer.from("r")), cache.batch([{ type: "put", key: "subscriptions:a:t", value: Buffer.from("s") }]), cache.del("will:b")]);
    expect(batches).toBe(1);
    await cache.close();
  });

  it("answers reads with a batch LevelDB is still writing", async () => {
    const db = await open(join(dir, "db"));
    const cache = await SessionCache.load(db);
    const batch = db.batch.bind(db) as (ops: unknown) => Promise<void>;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let started!: () => void;
    const inFlight = new Promise<void>((resolve) => (started = resolve));
    (db as unknown as { batch: (ops: unknown) => Promise<void> }).batch = (ops) => (started(), held.then(() => batch(ops)));
    const put = cache.batch([{ type: "put", key: "outgoing:a:1", value: Buffer.from("q") }, { type: "put", key: "retained:t", value: Buffer.from("r") }]);
    await inFlight;
    expect((await cache.get("outgoing:a:1"))?.toString()).toBe("q");
    expect((await cache.get("retained:t"))?.toString()).toBe("r");
    expect(await all(cache.values(range("outgoing:a:")))).toEqual(["q"]);
    release();
    await put;
    expect((await cache.get("outgoing:a:1"))?.toString()).toBe("q");
    await cache.close();
  });

  it("fails every write of a failed batch and keeps reading what is on disk", async () => {
    const db = await open(join(dir, "db"));
    await db.put("will:a", Buffer.from("old"));
    const cache = await SessionCache.load(db);
    const batch = db.batch.bind(db) as (ops: unknown) => Promise<void>;
    const full = Object.assign(new Error("IO error: No space left on device"), { code: "LEVEL_IO_ERROR" });
    (db as unknown as { batch: (ops: unknown) => Promise<void> }).batch = () => Promise.reject(full);
    const put = cache.put("will:a", Buffer.from("new"));
    const del = cache.del("subscriptions:a:t");
    expect((await cache.get("will:a"))?.toString()).toBe("new"); // issued, not yet written
    await expect(put).rejects.toBe(full);
    await expect(del).rejects.toBe(full);
    expect((await cache.get("will:a"))?.toString()).toBe("old");
    (db as unknown as { batch: (ops: unknown) => Promise<void> }).batch = batch;
    await cache.put("will:a", Buffer.from("newer"));
    await cache.close();
    const reopened = await open(join(dir, "db"));
    expect((await reopened.get("will:a"))?.toString()).toBe("newer");
    await reopened.close();
  });
});
