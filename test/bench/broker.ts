/**
 * Broker benchmark: QoS 1 round-trip latency, and how many of 10,000 retained messages a new
 * wildcard subscriber receives (the fleet page / hub start-up case) on the embedded broker and
 * on Mosquitto with Lockstep's generated config (and, for comparison, Mosquitto's defaults).
 *
 *   node dist/test/bench/broker.js      prints the figures as JSON
 *
 * Every wait is bounded, so the whole run stops by itself well within 60 s.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import pino from "pino";
import { Topics, agentClientId } from "../../protocol/index.js";
import { parseBrokerConfig } from "../../broker/config.js";
import { CredentialStore } from "../../broker/credentials.js";
import { EmbeddedBroker } from "../../broker/embedded.js";
import { MosquittoProcess, freePort, mosquittoAvailable } from "../support/mosquitto.js";

const topics = new Topics();
const RETAINED = 10_000;
const ROUND_TRIPS = 500;

async function connect(url: string, options: IClientOptions): Promise<MqttClient> {
  return mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5_000, ...options });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Wait for `promise`, but no longer than `ms` (the timer is cleared either way). */
async function atMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

function round(ms: number, digits = 3): number {
  return Number(ms.toFixed(digits));
}

/** QoS 1 publish by one client -> delivery to another, ROUND_TRIPS times, one at a time. */
async function roundTrips(url: string, sender: IClientOptions, receiver: IClientOptions, host: string): Promise<{ median: number; p99: number }> {
  const rx = await connect(url, receiver);
  const tx = await connect(url, sender);
  try {
    const topic = topics.commands(host);
    await rx.subscribeAsync(topic, { qos: 1 });
    let arrived: (() => void) | undefined;
    rx.on("message", () => arrived?.());
    const times: number[] = [];
    const deadline = Date.now() + 10_000;
    for (let i = 0; i < ROUND_TRIPS && Date.now() < deadline; i++) {
      const start = performance.now();
      const delivered = new Promise<void>((resolve) => (arrived = resolve));
      await tx.publishAsync(topic, String(i), { qos: 1 });
      await delivered;
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    return { median: round(percentile(times, 50)), p99: round(percentile(times, 99)) };
  } finally {
    await Promise.all([rx.endAsync(true), tx.endAsync(true)]);
  }
}

/**
 * Publish RETAINED retained compartments, then count what a new `hosts/+/compartments/+`
 * subscriber receives: stops when all arrived or nothing came for `idleMs`.
 */
async function retainedFanOut(
  url: string,
  writer: IClientOptions,
  reader: IClientOptions,
  options: { waitForStoredBySelfSubscription: boolean; idleMs?: number; timeoutMs?: number },
): Promise<{ received: number; ms: number; publishMs: number }> {
  const filter = `${topics.root}/hosts/+/compartments/+`;
  const tx = await connect(url, writer);
  const publishStart = performance.now();
  try {
    let stored = 0;
    const allStored = new Promise<void>((resolve) => {
      tx.on("message", () => ++stored === RETAINED && resolve());
    });
    // Aedes acknowledges a QoS 1 publish before storing it; the writer's own deliveries come
    // after the store, so counting them proves every message is retained. Mosquitto stores in
    // order per connection, so the last acknowledgement is enough there.
    if (options.waitForStoredBySelfSubscription) await tx.subscribeAsync(filter, { qos: 0 });
    const payload = JSON.stringify({ status: "ok", summary: "at head", checkedAt: new Date().toISOString() });
    for (let i = 0; i < RETAINED - 1; i++) tx.publish(topics.compartment(`bench-${i}`, "git"), payload, { qos: 1, retain: true });
    await tx.publishAsync(topics.compartment(`bench-${RETAINED - 1}`, "git"), payload, { qos: 1, retain: true });
    if (options.waitForStoredBySelfSubscription) await atMost(allStored, 15_000);
  } finally {
    await tx.endAsync(true);
  }
  const publishMs = performance.now() - publishStart;

  const rx = await connect(url, reader);
  try {
    const idleMs = options.idleMs ?? 1_500;
    let received = 0;
    let last = performance.now();
    const start = performance.now();
    await new Promise<void>((resolve) => {
      let idle = setTimeout(resolve, idleMs + 3_000); // first message may take a moment
      const hardStop = setTimeout(resolve, options.timeoutMs ?? 12_000);
      rx.on("message", () => {
        received++;
        last = performance.now();
        clearTimeout(idle);
        if (received >= RETAINED) {
          clearTimeout(hardStop);
          return resolve();
        }
        idle = setTimeout(() => (clearTimeout(hardStop), resolve()), idleMs);
      });
      rx.subscribe(filter, { qos: 1 });
    });
    return { received, ms: round(last - start, 1), publishMs: round(publishMs, 1) };
  } finally {
    await rx.endAsync(true);
  }
}

async function benchEmbedded(dir: string, out: Record<string, number>): Promise<void> {
  const broker = new EmbeddedBroker(
    parseBrokerConfig({ dataDir: join(dir, "embedded"), listeners: { tcp: { host: "127.0.0.1", port: 0 } } }),
    pino({ level: "silent" }),
  );
  await broker.start();
  try {
    const agent = await broker.credentials.add("bench-rtt", "agent");
    const viewer = await broker.credentials.add("bench-page", "viewer");
    const hub = broker.hubConnection();
    const rtt = await roundTrips(broker.url, hub, { username: "bench-rtt", password: agent.password, clientId: agentClientId("bench-rtt") }, "bench-rtt");
    out.embeddedQos1RttMedianMs = rtt.median;
    out.embeddedQos1RttP99Ms = rtt.p99;
    const fan = await retainedFanOut(broker.url, hub, { username: "bench-page", password: viewer.password }, { waitForStoredBySelfSubscription: true });
    out.embeddedRetainedPublishMs = fan.publishMs;
    out.embeddedRetainedReceived = fan.received;
    out.embeddedRetainedMs = fan.ms;
  } finally {
    await broker.stop();
  }
}

async function benchMosquitto(dir: string, out: Record<string, number>, variant: "generated" | "defaults"): Promise<void> {
  const store = await CredentialStore.open(join(dir, `mosquitto-${variant}`, "credentials.json"));
  const hub = await store.add("bench-hub", "hub");
  const agent = await store.add("bench-rtt", "agent");
  const viewer = await store.add("bench-page", "viewer");
  const port = await freePort();
  const limits = variant === "defaults" ? { maxInflightMessages: 20, maxQueuedMessages: 1000, maxQueuedBytes: 0 } : {};
  const mosquitto = new MosquittoProcess(store, { dir: join(dir, `mosquitto-${variant}`, "conf"), tcp: { host: "127.0.0.1", port }, ...limits });
  await mosquitto.start();
  const url = `mqtt://127.0.0.1:${port}`;
  const prefix = variant === "generated" ? "mosquitto" : "mosquittoDefaults";
  try {
    if (variant === "generated") {
      const rtt = await roundTrips(url, { username: "bench-hub", password: hub.password }, { username: "bench-rtt", password: agent.password, clientId: agentClientId("bench-rtt") }, "bench-rtt");
      out.mosquittoQos1RttMedianMs = rtt.median;
      out.mosquittoQos1RttP99Ms = rtt.p99;
    }
    const fan = await retainedFanOut(
      url,
      { username: "bench-hub", password: hub.password },
      { username: "bench-page", password: viewer.password },
      { waitForStoredBySelfSubscription: false, idleMs: 1_000, timeoutMs: 8_000 },
    );
    out[`${prefix}RetainedReceived`] = fan.received;
    out[`${prefix}RetainedMs`] = fan.ms;
  } finally {
    await mosquitto.stop();
  }
}

export async function benchBroker(): Promise<Record<string, number>> {
  const started = performance.now();
  const dir = await mkdtemp(join(tmpdir(), "lockstep-bench-broker-"));
  const out: Record<string, number> = { retainedPublished: RETAINED, roundTrips: ROUND_TRIPS };
  try {
    await benchEmbedded(dir, out);
    if (mosquittoAvailable()) {
      await benchMosquitto(dir, out, "generated");
      await benchMosquitto(dir, out, "defaults");
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  out.benchSeconds = round((performance.now() - started) / 1000, 1);
  return out;
}

if (require.main === module) {
  benchBroker().then(
    (figures) => console.log(JSON.stringify(figures, null, 2)),
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
