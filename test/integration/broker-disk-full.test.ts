/**
 * A QoS 1 message to a connected persistent-session client while the broker's LevelDB cannot be
 * written (full data disk): a real Aedes with aedes-persistence-level and the fixes of
 * broker/aedes-fixes.ts, real MQTT clients over TCP; LevelDB's writes fail like on a full disk.
 *
 * Aedes first queues the message for the persistent session (outgoingEnqueueCombi), then updates the
 * queued copy with its message id (outgoingUpdate) and only then writes it to the socket. On a full
 * disk the queueing fails, the update finds "no such packet", and Aedes dropped the message and
 * disconnected the client: a command to a connected agent was lost (issue 14).
 *
 * And the embedded broker's LevelDB stuck after a failed background write (broker/level-reopen.ts).
 */
import { EventEmitter } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Aedes } from "aedes";
import aedesPersistenceLevel from "aedes-persistence-level";
import { Level } from "level";
import mqtt, { type MqttClient } from "mqtt";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { adaptDelivery, fixPersistence, type FixablePersistence } from "../../broker/aedes-fixes.js";
import pino from "pino";
import { parseBrokerConfig } from "../../broker/config.js";
import { CredentialStore } from "../../broker/credentials.js";
import { EmbeddedBroker } from "../../broker/embedded.js";
import { reopenIfStuck } from "../../broker/level-reopen.js";
import { SessionCache } from "../../broker/session-cache.js";
import { untilConnected } from "../support/brokers.js";

const full = () => Object.assign(new Error("IO error: No space left on device"), { code: "LEVEL_IO_ERROR" });

describe("a full disk under the broker's LevelDB", () => {
  let dir: string;
  let db: Level<string, Buffer>;
  let aedes: Aedes;
  let server: Server;
  let url: string;
  let reports: string[];
  const clients: MqttClient[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "lockstep-disk-full-"));
    db = new Level<string, Buffer>(join(dir, "mqtt"), { valueEncoding: "buffer" });
    await db.open();
    // As the embedded broker has it: sessions read from memory, writes grouped (session-cache.ts).
    const persistence = aedesPersistenceLevel(await SessionCache.load(db)) as unknown as FixablePersistence;
    reports = [];
    fixPersistence(persistence, { ok: () => reports.at(-1) !== "ok" && reports.push("ok"), failed: (_e, path) => reports.push(`failed ${path}`) });
    aedes = await Aedes.createBroker({ persistence: persistence as never });
    server = createServer((socket) => adaptDelivery(aedes.handle(socket)));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
    await new Promise<void>((r) => aedes.close(() => r()));
    await new Promise((r) => server.close(r));
    await db.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  async function connect(clientId: string, clean: boolean): Promise<MqttClient> {
    const c = mqtt.connect(url, { clientId, clean, reconnectPeriod: 0, protocolVersion: 4 });
    clients.push(c);
    return untilConnected(c);
  }

  /** The client's next message, or "closed" if its connection closes first (no waiting out a timeout). */
  function nextMessage(c: MqttClient): Promise<string> {
    return new Promise((resolve) => {
      c.once("message", (_t, payload) => resolve(payload.toString()));
      c.once("close", () => resolve("closed"));
    });
  }

  /** A connected persistent-session agent subscribed to its commands (its closes counted), and the hub that sends them. */
  async function agentAndHub() {
    const agent = await connect("lockstep-agent-a", false);
    await agent.subscribeAsync("hosts/a/commands", { qos: 1 });
    const closed = vi.fn();
    agent.on("close", closed);
    return { agent, hub: await connect("hub", true), closed };
  }

  it("still delivers a QoS 1 message live to a connected persistent session, keeps it connected, and reports the fault", async () => {
    const { agent, hub, closed } = await agentAndHub();
    const received = nextMessage(agent);

    vi.spyOn(db, "put").mockRejectedValue(full());
    vi.spyOn(db, "batch").mockRejectedValue(full());
    await hub.publishAsync("hosts/a/commands", "test", { qos: 1 });

    expect(await received).toBe("test");
    // The PUBACK went through too: the agent's next message still arrives on the same connection.
    const second = nextMessage(agent);
    await hub.publishAsync("hosts/a/commands", "second", { qos: 1 });
    expect(await second).toBe("second");
    expect(closed).not.toHaveBeenCalled();
    expect(agent.connected).toBe(true);
    expect(reports).toContain("failed broker persistence (queued messages)");
    expect(reports.at(-1)).not.toBe("ok");
  });

  it("a queued copy whose message id cannot be written (the disk filled after queueing): delivered live, the client stays, the fault is reported", async () => {
    const { agent, hub, closed } = await agentAndHub();
    const batch = db.batch.bind(db) as unknown as (ops: Array<{ key: string }>) => Promise<void>;
    vi.spyOn(db, "batch").mockImplementation(((ops: Array<{ key: string }>) => (ops.some((op) => op.key.startsWith("outgoing-id:")) ? Promise.reject(full()) : batch(ops))) as never);
    const received = nextMessage(agent);
    await hub.publishAsync("hosts/a/commands", "test", { qos: 1 });
    expect(await received).toBe("test");
    expect(closed).not.toHaveBeenCalled();
    expect(reports.at(-1)).toBe("failed broker persistence (queued messages)");
  });
});

describe("the embedded broker's LevelDB after a failed background write", () => {
  let dir: string;
  let broker: EmbeddedBroker;
  let reports: string[];
  let reported: EventEmitter;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "lockstep-level-stuck-"));
    reports = [];
    reported = new EventEmitter();
    const report = (r: string) => {
      if (reports.at(-1) === r) return;
      reports.push(r);
      reported.emit("report", r);
    };
    const users = await CredentialStore.open(join(dir, "credentials.json"));
    await users.add("hub-user", "hub", "hub-user-password");
    broker = new EmbeddedBroker(parseBrokerConfig({ dataDir: dir, listeners: { tcp: { host: "127.0.0.1", port: 0 } } }), pino({ level: "silent" }), {
      storage: { ok: () => report("ok"), failed: (_e, path) => report(`failed ${path}`) },
    });
    await broker.start();
  });
  afterEach(async () => {
    await broker.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("is reopened once its directory can be written again (LevelDB fails every write until then), and what waited is stored", async () => {
    const db = (broker as unknown as { db: Level<string, Buffer> }).db;
    // LevelDB after a failed compaction: every write fails with the recorded error until reopened
    // (measured on a tmpfs: still failing after space was freed), reads work.
    const stuck = Object.assign(new Error("IO error: mqtt/000018.ldb: No space left on device"), { code: "LEVEL_IO_ERROR" });
    const put = vi.spyOn(db, "put").mockRejectedValue(stuck);
    const batch = vi.spyOn(db, "batch").mockRejectedValue(stuck);
    const open = db.open.bind(db);
    vi.spyOn(db, "open").mockImplementation((async (...args: unknown[]) => {
      put.mockRestore();
      batch.mockRestore();
      return (open as (...a: unknown[]) => Promise<void>)(...args);
    }) as typeof db.open);

    const failed = new Promise((resolve) => reported.on("report", (r) => r === "failed broker persistence (retained messages)" && resolve(r)));
    const hub = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.ports.tcp}`, { username: "hub-user", password: "hub-user-password", reconnectPeriod: 0, protocolVersion: 4 });
    await hub.publishAsync("lockstep/v1/hub/test-state", "kept", { qos: 1, retain: true });
    await hub.endAsync(true);
    await failed; // Aedes acknowledges before it stores

    await broker.retryStorage(); // the directory can be written: the stuck LevelDB is reopened
    expect(reports.at(-1)).toBe("ok");
    expect((await db.get("lockstep:storage-probe")) ?? "probe deleted").toBe("probe deleted");
    const retained = [];
    for await (const [key] of db.iterator()) if (key.startsWith("retained:")) retained.push(key);
    expect(retained.join()).toContain("lockstep/v1/hub/test-state");
  });

  it("is left alone while its directory cannot be written either (the disk is still full: a reopen would not help)", async () => {
    const db = (broker as unknown as { db: Level<string, Buffer> }).db;
    vi.spyOn(db, "put").mockRejectedValue(Object.assign(new Error("IO error: No space left on device"), { code: "LEVEL_IO_ERROR" }));
    const close = vi.spyOn(db, "close");
    expect(await reopenIfStuck(db, join(dir, "no-such-dir"), pino({ level: "silent" }))).toBe(false);
    expect(close).not.toHaveBeenCalled();
  });
});
