/**
 * The embedded broker's limits on a real broker with MQTT.js clients: packet size (checked on the
 * length header, so a 256 MiB publish is never buffered), filters per SUBSCRIBE, subscriptions per
 * client, publish rate; each refusal is reported once as a "denied" event.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseBrokerConfig, type BrokerConfigInput } from "../../broker/config.js";
import { EmbeddedBroker, type BrokerDenial } from "../../broker/embedded.js";
import { Topics, agentClientId } from "../../protocol/index.js";
import { untilConnected } from "../support/brokers.js";

const topics = new Topics();
const KIB = 1024;

describe("embedded broker limits", () => {
  let dir: string;
  const brokers: EmbeddedBroker[] = [];
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "lockstep-limits-"));
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
    await Promise.all(brokers.splice(0).map((b) => b.stop()));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function startBroker(limits: BrokerConfigInput["limits"]) {
    const broker = new EmbeddedBroker(parseBrokerConfig({ dataDir: await mkdtemp(join(dir, "b-")), listeners: { tcp: { host: "127.0.0.1", port: 0 } }, limits }), pino({ level: "silent" }));
    brokers.push(broker);
    await broker.start();
    const denied: BrokerDenial[] = [];
    const waiters: Array<() => void> = [];
    broker.on("denied", (d) => {
      denied.push(d);
      waiters.splice(0).forEach((w) => w());
    });
    /** Resolves once `n` denials were reported. */
    const deniedCount = async (n: number) => {
      while (denied.length < n) await new Promise<void>((r) => waiters.push(r));
    };
    return { broker, denied, deniedCount };
  }

  async function connect(broker: EmbeddedBroker, options: IClientOptions): Promise<MqttClient> {
    const client = mqtt.connect(broker.url, { reconnectPeriod: 0, connectTimeout: 5_000, ...options });
    clients.push(client);
    return untilConnected(client);
  }

  const closed = (client: MqttClient) => new Promise<void>((resolve) => client.once("close", () => resolve()));

  /** Granted QoS per filter (128 = refused); MQTT.js rejects a SUBACK with refusals, so it is read from the packet. */
  const subscribe = (client: MqttClient, filters: string[]) =>
    new Promise<number[]>((resolve, reject) =>
      client.subscribe(filters, { qos: 0 }, (err, granted) => {
        const codes = (err as { packet?: { granted?: number[] } } | null)?.packet?.granted;
        if (codes) return resolve(codes);
        if (err) return reject(err);
        resolve(granted!.map((g) => g.qos));
      }),
    );

  it("closes a connection whose packet is over maxPacketBytes as soon as its length is read, even before CONNECT", async () => {
    const { broker, denied, deniedCount } = await startBroker({ maxPacketBytes: 64 * KIB });
    // A PUBLISH announcing 256 MiB - 1 (the MQTT maximum) as the very first packet; only 1 KiB follows.
    const socket = netConnect(broker.ports.tcp, "127.0.0.1");
    const gone = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.on("error", () => undefined);
    socket.write(Buffer.concat([Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]), Buffer.alloc(KIB)]));
    await gone;
    await deniedCount(1);
    expect(denied[0]).toMatchObject({ action: "connect", address: "127.0.0.1", reason: expect.stringMatching(/publish packet of 268435455 bytes, over the limit of 65536/) });

    const { password } = await broker.credentials.add("op", "operator");
    const operator = await connect(broker, { username: "op", password });
    const hub = await connect(broker, broker.hubConnection());
    await hub.subscribeAsync(topics.commands("+"), { qos: 1 });
    const got: number[] = [];
    hub.on("message", (_t, payload) => got.push(payload.length));
    await operator.publishAsync(topics.commands("web1"), Buffer.alloc(60 * KIB), { qos: 1 });
    const cut = closed(operator);
    operator.publish(topics.commands("web1"), Buffer.alloc(100 * KIB), { qos: 1 });
    await cut;
    await deniedCount(2);
    expect(denied[1]).toMatchObject({ action: "publish", user: "op", reason: expect.stringMatching(/over the limit/) });
    expect(got).toEqual([60 * KIB]);
  });

  it("refuses a SUBSCRIBE with more filters than maxFiltersPerSubscribe, reported once", async () => {
    const { broker, denied, deniedCount } = await startBroker({ maxFiltersPerSubscribe: 8 });
    const { password } = await broker.credentials.add("page", "viewer");
    const viewer = await connect(broker, { username: "page", password, clean: false, clientId: "page-1" });
    const filters = (n: number) => Array.from({ length: n }, (_, i) => topics.info(`host-${i}`));
    expect(await subscribe(viewer, filters(9))).toEqual(Array(9).fill(128));
    await deniedCount(1);
    expect(denied).toHaveLength(1);
    expect(denied[0]).toMatchObject({ action: "subscribe", user: "page", reason: expect.stringMatching(/9 filters, over the limit of 8/) });
    expect(await subscribe(viewer, filters(8))).toEqual(Array(8).fill(0));
  });

  it("refuses subscriptions beyond maxSubscriptionsPerClient until one is unsubscribed; the hub is not limited", async () => {
    const { broker, denied, deniedCount } = await startBroker({ maxSubscriptionsPerClient: 3 });
    const { password } = await broker.credentials.add("page", "viewer");
    const viewer = await connect(broker, { username: "page", password });
    expect(await subscribe(viewer, [topics.info("a"), topics.info("b"), topics.info("c")])).toEqual([0, 0, 0]);
    expect(await subscribe(viewer, [topics.info("a")])).toEqual([0]); // held already: no extra
    expect(await subscribe(viewer, [topics.info("d")])).toEqual([128]);
    await deniedCount(1);
    expect(denied[0]).toMatchObject({ action: "subscribe", topic: topics.info("d"), reason: expect.stringMatching(/limit of 3 subscriptions/) });
    await viewer.unsubscribeAsync(topics.info("a"));
    expect(await subscribe(viewer, [topics.info("d")])).toEqual([0]);

    const hub = await connect(broker, broker.hubConnection());
    expect(await subscribe(hub, ["a/1", "a/2", "a/3", "a/4", "a/5"])).toEqual([0, 0, 0, 0, 0]);
  });

  it("disconnects a client over its publish rate before acknowledging; the hub is not limited", async () => {
    const { broker, denied, deniedCount } = await startBroker({ publishRate: { perSecond: 0.001, burst: 5 } });
    const { password } = await broker.credentials.add("web1", "agent");
    const agent = await connect(broker, { username: "web1", password, clientId: agentClientId("web1") });
    for (let i = 0; i < 5; i++) await agent.publishAsync(topics.info("web1"), `{"n":${i}}`, { qos: 1 });
    const cut = closed(agent);
    let acked = false;
    agent.publish(topics.info("web1"), '{"n":5}', { qos: 1 }, (err) => (acked = !err));
    await cut;
    expect(acked).toBe(false);
    await deniedCount(1);
    expect(denied[0]).toMatchObject({ action: "publish", user: "web1", topic: topics.info("web1"), reason: expect.stringMatching(/over the publish rate/) });

    const hub = await connect(broker, broker.hubConnection());
    for (let i = 0; i < 20; i++) await hub.publishAsync(topics.expected(), "{}", { qos: 1 });
    expect(hub.connected).toBe(true);
  });
  it("queues at most maxQueuedMessages for an offline persistent session (new ones dropped, counted); the others get everything; the session gets the kept ones back", async () => {
    const { broker } = await startBroker({ maxQueuedMessages: 3 });
    const { password } = await broker.credentials.add("page", "viewer");
    const away = await connect(broker, { username: "page", password, clean: false, clientId: "viewer-away" });
    await away.subscribeAsync(topics.info("+"), { qos: 1 });
    await away.endAsync();
    const present = await connect(broker, { username: "page", password, clean: false, clientId: "viewer-present" });
    await present.subscribeAsync(topics.info("+"), { qos: 1 });
    const presentGot: string[] = [];
    const presentGotAll = new Promise<void>((resolve) =>
      present.on("message", (_t, payload) => {
        presentGot.push(payload.toString());
        if (presentGot.length === 5) resolve();
      }),
    );
    const hub = await connect(broker, broker.hubConnection());
    for (let i = 0; i < 5; i++) await hub.publishAsync(topics.info("web1"), `m${i}`, { qos: 1 });
    // Aedes queues a message for persistent sessions before it forwards it: all five are queued or dropped by now.
    await presentGotAll;
    expect(presentGot).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    expect(broker.stats().queueDropped).toBe(2);

    const back = mqtt.connect(broker.url, { reconnectPeriod: 0, username: "page", password, clean: false, clientId: "viewer-away" });
    clients.push(back);
    const backGot: string[] = [];
    const arrived = (wanted: string) => new Promise<void>((resolve) => back.on("message", (_t, payload) => payload.toString() === wanted && resolve()));
    back.on("message", (_t, payload) => backGot.push(payload.toString()));
    const m2 = arrived("m2");
    await untilConnected(back);
    await m2;
    // Its queue is sent one after another: a kept m3 would be on its way before this live one.
    const live = arrived("live");
    await hub.publishAsync(topics.info("web1"), "live", { qos: 1 });
    await live;
    expect(backGot).toEqual(["m0", "m1", "m2", "live"]);
  });
});
