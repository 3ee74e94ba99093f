/**
 * Two embedded broker nodes sharing state through a real redis-server (broker.cluster): messages
 * cross nodes, each node's retained index learns what the other stores (and clears), a dead node's
 * wills do not overwrite hosts that reconnected to the survivor, a client id moving between live
 * nodes leaves no "offline" behind, and session owners are shared.
 */
import { EventEmitter } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { Redis } from "ioredis";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { handleUnawaited } from "../../broker/cluster.js";
import { parseBrokerConfig } from "../../broker/config.js";
import { CredentialStore } from "../../broker/credentials.js";
import { EmbeddedBroker } from "../../broker/embedded.js";
import { agentClientId, Topics } from "../../protocol/index.js";
import { startTestRedis, type TestRedis } from "../support/redis.js";

const topics = new Topics();
type BusListen = (topic: string, listener: (packet: { payload: Buffer; brokerId?: string }, done: () => void) => void) => void;
const AGENTS = ["web1", "web2", "web3", "web4"];

/** Log lines of both nodes, as events (waiting on what a node did, not on time). */
class LogLines extends EventEmitter {
  stream(node: string): Writable {
    return new Writable({
      write: (chunk: Buffer, _enc, done) => {
        for (const line of chunk.toString().split("\n").filter(Boolean)) this.emit("line", { node, ...(JSON.parse(line) as { msg: string; clientId?: string }) });
        done();
      },
    });
  }

  next(match: (line: { node: string; msg: string; clientId?: string }) => boolean): Promise<void> {
    return new Promise((resolve) => {
      const on = (line: { node: string; msg: string; clientId?: string }) => {
        if (!match(line)) return;
        this.off("line", on);
        resolve();
      };
      this.on("line", on);
    });
  }
}

const until = async (cond: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe("two broker nodes sharing Redis", () => {
  let redis: TestRedis;
  let root: string;
  const passwords = new Map<string, string>();
  const logs = new LogLines();
  const clients: MqttClient[] = [];
  let nodeA: EmbeddedBroker;
  let nodeB: EmbeddedBroker;
  let probe: Redis;

  const startNode = async (name: string) => {
    const config = parseBrokerConfig({
      dataDir: join(root, name),
      credentialsFile: join(root, "credentials.json"),
      listeners: { tcp: { host: "127.0.0.1", port: 0 } },
      cluster: { redisUrl: redis.url, nodeId: name },
    });
    const node = new EmbeddedBroker(config, pino({ level: "debug" }, logs.stream(name)), { orphanWillCheckMs: 1_000 });
    await node.start();
    return node;
  };

  const connect = async (node: EmbeddedBroker, user: string, opts: IClientOptions = {}) => {
    const client = await mqtt.connectAsync(node.url, { username: user, password: passwords.get(user), reconnectPeriod: 0, protocolVersion: 4, ...opts });
    clients.push(client);
    return client;
  };
  const agent = (node: EmbeddedBroker, host: string) =>
    connect(node, host, { clientId: agentClientId(host), clean: false, will: { topic: topics.availability(host), payload: Buffer.from("offline"), qos: 1, retain: true } });

  /**
   * Subscribe a fresh viewer to `filters` (the last one a marker stored after the rest) until its
   * retained replay holds the marker: the replay follows the filters' order, so what came before
   * the marker is what that node's index holds. Each try waits up to a second for the marker.
   */
  const replayOn = async (node: EmbeddedBroker, filters: string[]): Promise<Map<string, string>> => {
    const marker = filters.at(-1)!;
    for (;;) {
      const viewer = await connect(node, "viewer");
      const got = new Map<string, string>();
      const done = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 1_000);
        viewer.on("message", (topic, payload, packet) => {
          if (!packet.retain) return;
          got.set(topic, payload.toString());
          if (topic === marker) {
            clearTimeout(timer);
            resolve(true);
          }
        });
      });
      await viewer.subscribeAsync(filters, { qos: 1 });
      const found = await done;
      await viewer.endAsync();
      if (found) return got;
    }
  };

  beforeAll(async () => {
    redis = await startTestRedis();
    root = await mkdtemp(join(tmpdir(), "lockstep-cluster-"));
    const store = await CredentialStore.open(join(root, "credentials.json"));
    for (const host of AGENTS) passwords.set(host, (await store.add(host, "agent")).password);
    passwords.set("viewer", (await store.add("viewer", "viewer")).password);
    passwords.set("other", (await store.add("other", "viewer")).password);
    passwords.set("hub", (await store.add("hub", "hub")).password);
    probe = new Redis(redis.url);
    nodeA = await startNode("node-a");
    nodeB = await startNode("node-b");
  }, 60_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await nodeA?.stop();
    await nodeB?.stop();
    probe?.disconnect();
    await redis?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it("carries live messages across nodes, and each node's retained index learns what the other stored or cleared", async () => {
    const hub = await connect(nodeA, "hub");
    const live = await connect(nodeB, "viewer");
    await live.subscribeAsync(topics.info("web1"), { qos: 1 });
    const web1 = await agent(nodeA, "web1");
    const arrived = new Promise<[string, Buffer]>((resolve) => live.once("message", (topic, payload) => resolve([topic, payload])));
    await web1.publishAsync(topics.info("web1"), '{"v":1}', { qos: 1, retain: true });
    expect((await arrived)[1].toString()).toBe('{"v":1}');

    await hub.publishAsync(topics.info("marker1"), "1", { qos: 1, retain: true });
    const replay = await replayOn(nodeB, [topics.info("web1"), topics.info("marker1")]);
    expect(replay.get(topics.info("web1"))).toBe('{"v":1}');

    // Cleared on A, then a later marker: once B's replay shows the marker, the clear came before it.
    await web1.publishAsync(topics.info("web1"), "", { qos: 1, retain: true });
    await hub.publishAsync(topics.info("marker2"), "2", { qos: 1, retain: true });
    const after = await replayOn(nodeB, [topics.info("web1"), topics.info("marker2")]);
    expect(after.has(topics.info("web1"))).toBe(false);
  });

  it("a client id moving to the other live node leaves no 'offline' behind", async () => {
    const watcher = await connect(nodeA, "viewer");
    const seen: string[] = [];
    watcher.on("message", (_t, payload) => seen.push(payload.toString()));
    await watcher.subscribeAsync(topics.availability("web4"), { qos: 1 });
    const first = await agent(nodeB, "web4");
    await first.publishAsync(topics.availability("web4"), "online", { qos: 1, retain: true });
    const dropped = logs.next((l) => l.node === "node-b" && l.msg === "dropped the last will of a superseded connection" && l.clientId === agentClientId("web4"));
    const closed = new Promise<void>((resolve) => first.once("close", () => resolve()));
    const second = await agent(nodeA, "web4");
    await second.publishAsync(topics.availability("web4"), "online", { qos: 1, retain: true });
    await closed;
    await dropped;
    expect(seen).not.toContain("offline");
  });

  it("session owners are shared: another user cannot take a persistent session over on the other node", async () => {
    await connect(nodeA, "viewer", { clientId: "page-session", clean: false });
    // Node B learns the binding over Redis (its refusal is what a CONNECT there would get).
    const sessions = (nodeB as unknown as { sessions: { refusal(clientId: string, user: { name: string; role: "viewer" }): string | undefined } }).sessions;
    await until(() => sessions.refusal("page-session", { name: "other", role: "viewer" }) !== undefined);
    await expect(connect(nodeB, "other", { clientId: "page-session", clean: false })).rejects.toThrow(/Not authorized/i);
  });

  it("when a node dies, the survivor does not publish the will of a host that came back on another node", async () => {
    const watcher = await connect(nodeA, "viewer");
    const seen: Array<[string, string]> = [];
    watcher.on("message", (topic, payload) => seen.push([topic, payload.toString()]));
    await watcher.subscribeAsync([topics.availability("web2"), topics.availability("web3"), topics.info("web2")], { qos: 1 });
    for (const host of ["web2", "web3"]) {
      const c = await agent(nodeB, host);
      await c.publishAsync(topics.availability(host), "online", { qos: 1, retain: true });
    }
    // web3's availability as it travels on the cluster's bus (brokerId + brokerCounter identify a message).
    const onBus: Array<{ payload: string; brokerId?: string }> = [];
    const bus = (nodeA as unknown as { cluster: { mq: { on: BusListen; removeListener: BusListen } } }).cluster.mq;
    const record = (packet: { payload: Buffer; brokerId?: string }, done: () => void) => {
      onBus.push({ payload: packet.payload.toString(), brokerId: packet.brokerId });
      done();
    };
    bus.on(topics.availability("web3"), record);
    const willsOfB = async () => (await probe.lrange("will", 0, -1)).filter((key) => key.startsWith("will:node-b:"));
    expect(await willsOfB()).toHaveLength(2);
    // Node B goes away without publishing its clients' wills (as a killed process would); web2
    // comes back on node A (before or after node A notices B is dead: either way no "offline" after it).
    await nodeB.stop();
    const back = await agent(nodeA, "web2");
    await back.publishAsync(topics.availability("web2"), "online", { qos: 1, retain: true });
    const backAt = seen.length;
    // Node A's check deletes each dead node's will once it is handled (published, or skipped).
    for (;;) {
      if ((await willsOfB()).length === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // A fence: node A delivers in order, so what it published before this info has arrived.
    const fence = new Promise<void>((resolve) => watcher.on("message", (topic) => topic === topics.info("web2") && resolve()));
    await back.publishAsync(topics.info("web2"), '{"fence":true}', { qos: 1, retain: true });
    await fence;
    bus.removeListener(topics.availability("web3"), record);
    // web3 stays away: node A published its will before deleting it, so it arrived before the fence.
    // As node A's own message: with node B's id and node A's counter it could equal a message B sent
    // earlier, and the watcher dropped it as a duplicate (about one run in four).
    expect(onBus.filter((m) => m.payload === "offline")).toEqual([{ payload: "offline", brokerId: "node-a" }]);
    expect(seen.filter(([topic]) => topic === topics.availability("web3")).map(([, p]) => p)).toEqual(["online", "offline"]);
    expect(seen.slice(backAt).filter(([topic]) => topic === topics.availability("web2")).map(([, p]) => p)).not.toContain("offline");
    expect(seen.filter(([topic]) => topic === topics.availability("web2")).at(-1)?.[1]).toBe("online");
  }, 30_000);

  it("a command aedes-persistence-redis or mqemitter-redis does not wait for, failing on a closed connection, is no unhandled rejection (it would end the broker process)", async () => {
    const unhandled: unknown[] = [];
    const onRejection = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onRejection);
    const conn = handleUnawaited(new Redis(redis.url, { lazyConnect: true }), ["lrem", "rpush", "quit"], pino({ level: "silent" }));
    try {
      await conn.connect();
      conn.disconnect();
      void conn.lrem("lockstep:test", 0, "x"); // as the persistence's delWill does
      void conn.rpush("lockstep:test", "x"); // as its putWill does
      void conn.quit(); // as mqemitter-redis' close does
      await expect(conn.lrem("lockstep:test", 0, "x")).rejects.toThrow(/closed/i); // a caller that waits still sees it
      // Node reports unhandled rejections once the microtask queue is empty: after one macrotask.
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onRejection);
      conn.disconnect();
    }
  });
});
