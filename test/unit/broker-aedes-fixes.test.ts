/**
 * The persistence fixes of broker/aedes-fixes.ts on a real aedes-persistence-level + LevelDB.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import aedesPersistenceLevel from "aedes-persistence-level";
import { Level } from "level";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Client, PublishPacket } from "aedes";
import { DeliveryGuard, fixPersistence, type FixablePersistence, type FixedPersistence } from "../../broker/aedes-fixes.js";
import { SessionCache } from "../../broker/session-cache.js";

/** Each case on a raw LevelDB and on the SessionCache the embedded broker puts in front of it. */
describe.each([
  ["a raw LevelDB", false],
  ["the SessionCache (as the embedded broker runs it)", true],
])("fixPersistence on %s", (_backend, cached) => {
  let dir: string;
  let db: Level<string, Buffer>;
  /** What aedes-persistence-level is given: the LevelDB itself or the SessionCache over it. */
  let store: Level<string, Buffer> | SessionCache;
  let persistence: FixablePersistence & { destroy(): Promise<void> };
  let fixed: FixedPersistence;
  let reports: string[];

  async function open(): Promise<void> {
    db = new Level<string, Buffer>(join(dir, "mqtt"), { valueEncoding: "buffer" });
    await db.open();
    store = cached ? await SessionCache.load(db) : db;
    persistence = aedesPersistenceLevel(store) as unknown as typeof persistence;
    reports = [];
    fixed = fixPersistence(persistence, { ok: () => reports.at(-1) !== "ok" && reports.push("ok"), failed: (_e, path) => reports.push(`failed ${path}`) });
    await persistence.setup({ id: "test-broker" });
  }
  const diskFull = () => Object.assign(new Error("IO error: No space left on device"), { code: "LEVEL_IO_ERROR" });
  /** Every LevelDB write fails as on a full disk (the SessionCache writes only batches); returns the restore. */
  function failWrites(): () => void {
    const batch = db.batch.bind(db) as (...args: unknown[]) => unknown;
    const spies = [
      vi.spyOn(db, "batch").mockImplementation(((...args: unknown[]) => (args.length === 0 ? Object.assign(batch() as object, { write: () => Promise.reject(diskFull()) }) : Promise.reject(diskFull()))) as never),
      vi.spyOn(db, "put").mockRejectedValue(diskFull()),
      vi.spyOn(db, "del").mockRejectedValue(diskFull()),
    ];
    return () => spies.forEach((spy) => spy.mockRestore());
  }
  const retain = (topic: string, payload: string) => persistence.storeRetained({ topic, payload: Buffer.from(payload), qos: 1 });
  async function replay(patterns: string[]): Promise<string[]> {
    const out: string[] = [];
    for await (const p of persistence.createRetainedStreamCombi(patterns) as AsyncIterable<{ topic: string; payload: Buffer }>) out.push(`${p.topic}=${p.payload.toString()}`);
    return out.sort();
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "lockstep-fixes-"));
    await open();
  });
  afterEach(async () => {
    await persistence.destroy().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it("answers a subscription's retained replay from the index, without reading the store", async () => {
    for (let i = 0; i < 50; i++) await retain(`h/${i}/state`, `v${i}`);
    await retain("h/7/state", "newer");
    await retain("h/8/state", ""); // an empty retained payload deletes
    const reads = vi.spyOn(db, "values");
    const iterators = vi.spyOn(db, "iterator");
    expect(await replay(["h/7/#", "h/8/state", "x/+"])).toEqual(["h/7/state=newer"]);
    expect(await replay(["h/+/state"])).toHaveLength(49);
    expect(reads).not.toHaveBeenCalled();
    expect(iterators).not.toHaveBeenCalled();
  });

  it("loads the index from the store at start, so retained messages survive a restart", async () => {
    await retain("a/b", "kept");
    await retain("a/c", "gone");
    await retain("a/c", "");
    await persistence.destroy();
    await open();
    expect(await replay(["a/#"])).toEqual(["a/b=kept"]);
  });

  it("a retained message the store refuses is still delivered and kept, reported, and stored by the retry once it can", async () => {
    await retain("a/b", "stored");
    const restore = failWrites();
    await retain("a/b", "newer"); // resolves: Aedes goes on and delivers it
    expect(await replay(["a/b"])).toEqual(["a/b=newer"]);
    expect(reports).toEqual(["ok", "failed broker persistence (retained messages)"]);
    await fixed.retryStorage(async () => undefined);
    expect(reports.at(-1)).toBe("failed broker persistence (retry)");
    restore();
    let probed = false;
    await fixed.retryStorage(async () => void (probed = true));
    expect(probed).toBe(true);
    expect(reports.at(-1)).toBe("ok");
    await persistence.destroy();
    await open();
    expect(await replay(["a/b"])).toEqual(["a/b=newer"]); // it reached the disk
  });

  it("another write that succeeds does not clear the fault while a retained message still waits for the retry", async () => {
    const restore = failWrites();
    await retain("a/b", "unstored");
    restore();
    await persistence.addSubscriptions({ id: "agent-1", clean: false }, [{ topic: "t/1", qos: 1 }]); // a batch: goes through
    expect(reports.at(-1)).toBe("failed broker persistence (retained messages)");
    await fixed.retryStorage(async () => undefined);
    expect(reports.at(-1)).toBe("ok");
  });

  it("a will that cannot be deleted or stored is a reported storage fault, not a rejection (Aedes' CONNECT leaves delWill's unhandled)", async () => {
    await persistence.putWill({ id: "agent-a" }, { topic: "h/a/availability", payload: Buffer.from("offline"), qos: 1, retain: true });
    failWrites();
    await expect(persistence.delWill({ id: "agent-a" })).resolves.toBeUndefined();
    await expect(persistence.putWill({ id: "agent-a" }, { topic: "h/a/availability", payload: Buffer.from("offline"), qos: 1, retain: true })).resolves.toBeUndefined();
    expect(reports.filter((r) => r.startsWith("failed"))).toEqual(["failed broker persistence (last wills)", "failed broker persistence (last wills)"]);
  });

  it("a QoS 1 message that cannot be queued for persistent sessions is reported and still delivered (Aedes disconnected its publisher)", async () => {
    failWrites();
    await expect(persistence.outgoingEnqueueCombi([{ clientId: "lockstep-agent-a", topic: "h/a/commands", qos: 1 }], { topic: "h/a/commands", payload: Buffer.from("{}"), qos: 1, brokerId: "b", brokerCounter: 1 })).resolves.toBeUndefined();
    expect(reports.at(-1)).toBe("failed broker persistence (queued messages)");
  });

  it("a PUBACK whose queued copy cannot be deleted is a reported storage fault, not an error (Aedes disconnected the client)", async () => {
    const agent = { id: "lockstep-agent-a", clean: false };
    const packet = { topic: "h/a/commands", payload: Buffer.from("{}"), qos: 1 as const, brokerId: "b", brokerCounter: 1, messageId: 5 };
    await persistence.outgoingEnqueueCombi([{ clientId: agent.id, topic: "h/a/commands", qos: 1 }], packet);
    await persistence.outgoingUpdate(agent, packet);
    failWrites();
    await expect(persistence.outgoingClearMessageId(agent, { messageId: 5 })).resolves.toBeUndefined();
    expect(reports.at(-1)).toBe("failed broker persistence (queued messages)");
  });

  it("does not look up a clean session's PUBACK in the store, but does for ids it stored", async () => {
    const gets = vi.spyOn(store, "get");
    const clean = { id: "page-1", clean: true };
    expect(await persistence.outgoingClearMessageId(clean, { messageId: 42 })).toBeUndefined();
    expect(gets).not.toHaveBeenCalled();
    // A persistent session's PUBACK is looked up as before.
    await persistence.outgoingClearMessageId({ id: "agent-1", clean: false }, { messageId: 42 });
    expect(gets).toHaveBeenCalledTimes(1);
    // A left-over queue sent to a client that came back clean: its ids are looked up and cleared.
    const update = vi.spyOn(persistence, "outgoingUpdate");
    await persistence.outgoingUpdate(clean, { messageId: 7 }).catch(() => undefined); // nothing queued: "no such packet"
    expect(update).toHaveBeenCalled();
    await persistence.outgoingClearMessageId(clean, { messageId: 7 });
    expect(gets.mock.calls.length).toBeGreaterThanOrEqual(3);
  });

  it("stores a SUBSCRIBE's filter list once, although Aedes asks once per filter", async () => {
    const batches = vi.spyOn(store, "batch");
    const client = { id: "agent-1", clean: false };
    const subs = Array.from({ length: 100 }, (_, i) => ({ topic: `t/${i}`, qos: 1 }));
    await Promise.all(subs.map(() => persistence.addSubscriptions(client, subs)));
    expect(batches).toHaveBeenCalledTimes(1);
    await persistence.addSubscriptions(client, [...subs]); // a new SUBSCRIBE packet is stored again
    expect(batches).toHaveBeenCalledTimes(2);
  });

  /** A retained QoS 1 publish stored as Aedes stores it, its replay as a subscription reads it, and a fresh DeliveryGuard. */
  async function storedWithReplay() {
    const live = { topic: "h/a/state", payload: Buffer.from("on"), qos: 1 as const, retain: true, brokerId: "b", brokerCounter: 9 };
    await persistence.storeRetained(live);
    let replayed: { topic: string; payload: Buffer } | undefined;
    for await (const p of persistence.createRetainedStream("h/a/state") as AsyncIterable<{ topic: string; payload: Buffer }>) replayed = p;
    const replay = { cmd: "publish", topic: replayed!.topic, payload: replayed!.payload, qos: 1, retain: true, dup: false, brokerId: null } as unknown as PublishPacket;
    return { live, replay, guard: new DeliveryGuard(), subscriber: {} as Client, other: {} as Client };
  }

  it("a retained replay counts as the delivery of the publish that stored it: its live copy does not follow it", async () => {
    // Aedes acknowledges a QoS 1 publish, stores it, then forwards it: a subscription made in
    // between replays the stored copy, and the live one reached the client a second time.
    const { live, replay, guard, subscriber, other } = await storedWithReplay();
    expect(guard.admit(subscriber, replay)).toBe(true);
    expect(guard.admit(subscriber, { cmd: "publish", dup: false, ...live } as PublishPacket)).toBe(false);
    expect(guard.admit(other, { cmd: "publish", dup: false, ...live } as PublishPacket)).toBe(true); // never got the replay
    // The next publish of that topic is a new message.
    expect(guard.admit(subscriber, { cmd: "publish", dup: false, ...live, payload: Buffer.from("on"), brokerCounter: 10 } as PublishPacket)).toBe(true);
  });

  it("the reverse order too: a live copy delivered before the subscription's 'subscribe' event is not followed by its retained replay", async () => {
    // mqemitter registers a subscription at once; Aedes' 'subscribe' event (which makes the guard
    // forget the topic's live deliveries for notStaleReplay) and the retained replay come later.
    const { live, replay, guard, subscriber, other } = await storedWithReplay();
    guard.subscribing(subscriber);
    expect(guard.admit(subscriber, { cmd: "publish", dup: false, ...live } as PublishPacket)).toBe(true);
    guard.subscribed([{ topic: "h/a/#", qos: 1 }], subscriber);
    expect(guard.admit(subscriber, replay)).toBe(false);
    expect(guard.admit(other, replay)).toBe(true); // never got it live
    // A later SUBSCRIBE of that topic gets the retained value again (MQTT), though it was once live.
    guard.subscribing(subscriber);
    guard.subscribed([{ topic: "h/a/state", qos: 1 }], subscriber);
    expect(guard.admit(subscriber, replay)).toBe(true);
  });
  it("caps a session's queue with writes still pending (SessionCache.queuedCount): messages issued in one turn past the cap are dropped for it only", async () => {
    await persistence.destroy();
    db = new Level<string, Buffer>(join(dir, "mqtt"), { valueEncoding: "buffer" });
    await db.open();
    const cache = await SessionCache.load(db);
    const capped = aedesPersistenceLevel(cache) as unknown as typeof persistence;
    const dropped: string[] = [];
    fixPersistence(capped, undefined, { max: 3, queued: (id) => cache.queuedCount(id), dropped: (ids) => dropped.push(...ids) });
    await capped.setup({ id: "test-broker" });
    const subs = [{ clientId: "viewer-away", topic: "h/+/info", qos: 1 }, { clientId: "lockstep-agent-a", topic: "h/a/info", qos: 1 }];
    const packet = (n: number) => ({ topic: "h/a/info", payload: Buffer.from(`m${n}`), qos: 1, brokerId: "b", brokerCounter: n });
    await Promise.all(Array.from({ length: 5 }, (_, n) => capped.outgoingEnqueueCombi(n < 2 ? subs : subs.slice(0, 1), packet(n + 1))));
    expect(cache.queuedCount("viewer-away")).toBe(3);
    expect(cache.queuedCount("lockstep-agent-a")).toBe(2);
    expect(dropped).toEqual(["viewer-away", "viewer-away"]);
    persistence = capped;
  });
});
