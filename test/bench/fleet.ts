/**
 * Fleet benchmark (issue 15): N simulated hosts speaking the agent's protocol against the embedded
 * broker and a real Mosquitto (with Lockstep's generated config) in the same run, with ratios:
 * - connect: all N hosts connect, subscribe and publish their retained state (100 at a time);
 * - snapshot: a new viewer subscribes to every host's state and holds the whole fleet;
 * - changes: compartment changes (20 in flight) seen by a hub-like subscriber: broker CPU per
 *   10,000 changes and the change latency p99 (publish to delivery);
 * - broker RSS with the fleet connected.
 * The embedded broker runs alone in a child process (broker-child.js) so its CPU and RSS are its
 * own; under vitest (no build) it runs in this process and the figures include the clients.
 */
import { fork, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import pino from "pino";
import { Topics } from "../../protocol/index.js";
import { parseBrokerConfig } from "../../broker/config.js";
import { CredentialStore } from "../../broker/credentials.js";
import { EmbeddedBroker } from "../../broker/embedded.js";
import { MosquittoProcess, freePort, mosquittoAvailable } from "../support/mosquitto.js";
import { pool, timeChanges, withTimeout } from "./changes.js";
import { HOST_RETAINED_TOPICS, SimulatedHost } from "./sim-host.js";

const topics = new Topics();
const CONNECT_CONCURRENCY = 100;

export interface FleetBenchOptions {
  /** Fleet sizes to run, e.g. [1000, 10000]. */
  hosts: number[];
  /** Compartment changes per run (figures are scaled to 10,000). */
  changes: number;
  /** Run the embedded broker in this process (no compiled broker-child.js needed). */
  inProcess?: boolean;
  /** Write a CPU profile of the embedded broker process here. */
  profileDir?: string;
  /** A compiled tree whose broker/ the child uses (a before/after comparison). */
  brokerDist?: string;
  /** Give agents chosen (scrypt-hashed) passwords, as stores before HMAC hashing had. */
  scryptAgents?: boolean;
  /** Extra environment of the embedded broker process (e.g. MALLOC_ARENA_MAX). */
  brokerEnv?: Record<string, string>;
  /** Leave Mosquitto out (profiling runs of the embedded broker alone). */
  embeddedOnly?: boolean;
  /** Give up on a phase after this long (default 15 min). */
  phaseTimeoutMs?: number;
}

interface BrokerUnderTest {
  port: number;
  hub: IClientOptions;
  cpuSeconds(): number;
  rssMb(): number;
  stop(): Promise<void>;
}

/** CPU seconds (user + system) and RSS of another process, from /proc. */
export function procCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}
export function procRssMb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Number(match[1]) / 1024 : NaN;
}

async function startEmbedded(dataDir: string, options: FleetBenchOptions): Promise<BrokerUnderTest> {
  const childScript = join(__dirname, "broker-child.js");
  if (options.inProcess || !existsSync(childScript)) {
    const broker = new EmbeddedBroker(parseBrokerConfig({ dataDir, listeners: { tcp: { host: "127.0.0.1", port: 0 } } }), pino({ level: "silent" }));
    await broker.start();
    const cpu = () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    };
    return { port: broker.ports.tcp, hub: broker.hubConnection(), cpuSeconds: cpu, rssMb: () => process.memoryUsage().rss / 2 ** 20, stop: () => broker.stop() };
  }
  const execArgv = options.profileDir ? ["--cpu-prof", `--cpu-prof-dir=${options.profileDir}`] : [];
  const child: ChildProcess = fork(childScript, [dataDir, ...(options.brokerDist ? [options.brokerDist] : [])], {
    execArgv,
    env: { ...process.env, ...options.brokerEnv },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const ready = await new Promise<{ port: number; hub: { username: string; password: string } }>((resolve, reject) => {
    child.once("message", (m) => resolve(m as { port: number; hub: { username: string; password: string } }));
    child.once("exit", (code) => reject(new Error(`embedded broker process exited (${code})`)));
  });
  const pid = child.pid!;
  return {
    port: ready.port,
    hub: { username: ready.hub.username, password: ready.hub.password },
    cpuSeconds: () => procCpuSeconds(pid),
    rssMb: () => procRssMb(pid),
    stop: async () => {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.send("stop");
      await exited;
    },
  };
}

async function startMosquitto(dir: string, store: CredentialStore): Promise<BrokerUnderTest> {
  const hub = await store.add("bench-hub", "hub");
  const port = await freePort();
  const mosquitto = new MosquittoProcess(store, { dir: join(dir, "mosquitto"), tcp: { host: "127.0.0.1", port } });
  await mosquitto.start();
  const pid = mosquitto.pid!;
  return {
    port,
    hub: { username: "bench-hub", password: hub.password },
    cpuSeconds: () => procCpuSeconds(pid),
    rssMb: () => procRssMb(pid),
    stop: () => mosquitto.stop(),
  };
}

export function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;
}
const r = (x: number, digits = 2) => Number(x.toFixed(digits));

async function mqttClient(port: number, options: IClientOptions): Promise<MqttClient> {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 30_000, clean: true, ...options });
}

interface RunFigures {
  connectS: number;
  connectCpuS: number;
  snapshotS: number;
  snapshotReceived: number;
  cpuPer10kChangesS: number;
  changeP50Ms: number;
  changeP99Ms: number;
  rssMb: number;
}

async function runOnce(kind: "embedded" | "mosquitto", hosts: number, options: FleetBenchOptions): Promise<RunFigures> {
  const timeout = options.phaseTimeoutMs ?? 15 * 60_000;
  const dir = await mkdtemp(join(tmpdir(), `lockstep-bench-fleet-${kind}-`));
  const sims: SimulatedHost[] = [];
  const clients: MqttClient[] = [];
  let broker: BrokerUnderTest | undefined;
  try {
    const store = await CredentialStore.open(join(dir, "credentials.json"));
    const names = Array.from({ length: hosts }, (_, i) => `sim-${String(i).padStart(5, "0")}`);
    const added = await store.addMany(names.map((name) => ({ name, role: "agent" as const, ...(options.scryptAgents ? { password: `chosen-${name}-password` } : {}) })));
    const viewer = await store.add("bench-viewer", "viewer", options.scryptAgents ? "chosen-viewer-password" : undefined);
    broker = kind === "embedded" ? await startEmbedded(dir, options) : await startMosquitto(dir, store);
    const port = broker.port;

    // 1. Connect the fleet.
    const cpu0 = broker.cpuSeconds();
    const t0 = performance.now();
    await withTimeout(
      pool(hosts, CONNECT_CONCURRENCY, async (i) => {
        const sim = new SimulatedHost(names[i]!, topics);
        sims.push(sim);
        await sim.start(port, added[i]!.password);
      }),
      timeout,
      `${kind}: connecting ${hosts} hosts`,
    );
    const connectS = (performance.now() - t0) / 1000;
    const connectCpuS = broker.cpuSeconds() - cpu0;

    // 2. A new viewer holds the whole fleet.
    const expected = hosts * HOST_RETAINED_TOPICS;
    const page = await mqttClient(port, { username: "bench-viewer", password: viewer.password });
    clients.push(page);
    let received = 0;
    const t1 = performance.now();
    const all = new Promise<void>((resolve) => page.on("message", () => ++received === expected && resolve()));
    await page.subscribeAsync(topics.allHostState(), { qos: 1 });
    await withTimeout(all, Math.min(timeout, 120_000), `${kind}: snapshot`).catch(() => undefined);
    const snapshotS = (performance.now() - t1) / 1000;
    const snapshotReceived = received;

    // 3. Compartment changes, watched by a hub-like subscriber.
    const hub = await mqttClient(port, broker.hub);
    clients.push(hub);
    await hub.subscribeAsync(topics.compartments(Topics.ANY_HOST), { qos: 1 });
    // Let the hub's own retained replay pass before measuring.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const cpu2 = broker.cpuSeconds();
    const latencies = await timeChanges(hub, sims, options.changes, timeout, kind);
    const cpuPer10kChangesS = ((broker.cpuSeconds() - cpu2) * 10_000) / options.changes;
    const rssMb = broker.rssMb();
    return {
      connectS: r(connectS),
      connectCpuS: r(connectCpuS),
      snapshotS: r(snapshotS, 3),
      snapshotReceived,
      cpuPer10kChangesS: r(cpuPer10kChangesS),
      changeP50Ms: r(percentile(latencies, 50)),
      changeP99Ms: r(percentile(latencies, 99)),
      rssMb: r(rssMb, 1),
    };
  } finally {
    for (const sim of sims) sim.stop();
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Figures per fleet size: `<hosts>h <figure> <broker>`, plus embedded ÷ Mosquitto ratios. */
export async function benchFleet(options: FleetBenchOptions): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const hosts of options.hosts) {
    const embedded = await runOnce("embedded", hosts, options);
    for (const [k, v] of Object.entries(embedded)) out[`${hosts}h ${k} embedded`] = v;
    if (options.embeddedOnly || !mosquittoAvailable()) continue;
    const mosquitto = await runOnce("mosquitto", hosts, options);
    for (const [k, v] of Object.entries(mosquitto)) out[`${hosts}h ${k} mosquitto`] = v;
    for (const k of ["connectS", "snapshotS", "cpuPer10kChangesS", "rssMb", "changeP99Ms"] as const) {
      out[`${hosts}h ${k} ratio`] = r(embedded[k] / mosquitto[k]);
    }
  }
  return out;
}
