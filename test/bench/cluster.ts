/**
 * Broker cluster benchmark (issue 15, "more than one machine"): N simulated hosts on broker nodes
 * sharing one Redis (broker.cluster), each node a real `lockstep broker` process, one node against
 * two in the same run:
 * - connect: all N hosts connect, subscribe and publish their retained state (100 at a time),
 *   spread round-robin over the nodes;
 * - changes: compartment changes from hosts on every node (changes.ts), seen by a hub-like
 *   subscriber on node A (so with two nodes half of them cross Redis): latency p50/p99 and the
 *   nodes' CPU per 10,000 changes;
 * - the nodes' RSS added up with the fleet connected.
 * Needs `npm run build` and Debian's redis-server (each run starts its own on a free port).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { COMPARTMENTS, Topics } from "../../protocol/index.js";
import { CredentialStore } from "../../broker/credentials.js";
import { startBrokerProcess, type BrokerProcess } from "../support/broker-process.js";
import { redisAvailable, startTestRedis, type TestRedis } from "../support/redis.js";
import { pool, timeChanges, withTimeout } from "./changes.js";
import { percentile, procCpuSeconds, procRssMb } from "./fleet.js";
import { SimulatedHost } from "./sim-host.js";

const topics = new Topics();
const CONNECT_CONCURRENCY = 100;

export interface ClusterBenchOptions {
  hosts: number;
  changes: number;
  /** Give up on a phase after this long (default 15 min). */
  phaseTimeoutMs?: number;
}

interface ClusterFigures {
  connectS: number;
  connectCpuS: number;
  cpuPer10kChangesS: number;
  changeP50Ms: number;
  changeP99Ms: number;
  rssMb: number;
}

const r = (x: number, digits = 2) => Number(x.toFixed(digits));

async function runCluster(nodes: number, options: ClusterBenchOptions): Promise<ClusterFigures> {
  const timeout = options.phaseTimeoutMs ?? 15 * 60_000;
  const dir = await mkdtemp(join(tmpdir(), `lockstep-bench-cluster-${nodes}-`));
  const sims: SimulatedHost[] = [];
  const brokers: BrokerProcess[] = [];
  let redis: TestRedis | undefined;
  let hub: MqttClient | undefined;
  try {
    redis = await startTestRedis();
    const store = await CredentialStore.open(join(dir, "credentials.json"));
    const names = Array.from({ length: options.hosts }, (_, i) => `sim-${String(i).padStart(5, "0")}`);
    const added = await store.addMany(names.map((name) => ({ name, role: "agent" as const })));
    const hubUser = await store.add("bench-hub", "hub");
    for (let n = 0; n < nodes; n++) {
      // Every node's data dir is `dir`: they share its credentials.json, as a real cluster's nodes do.
      brokers.push(await startBrokerProcess(dir, { LOCKSTEP_REDIS_URL: redis.url, LOCKSTEP_BROKER_NODE_ID: `node-${n}`, LOCKSTEP_LOG_LEVEL: "warn" }));
    }
    const ports = brokers.map((b) => Number(new URL(b.url).port));
    const cpu = () => brokers.reduce((sum, b) => sum + procCpuSeconds(b.child.pid!), 0);

    // 1. Connect the fleet, round-robin over the nodes.
    const cpu0 = cpu();
    const t0 = performance.now();
    await withTimeout(
      pool(options.hosts, CONNECT_CONCURRENCY, async (i) => {
        const sim = new SimulatedHost(names[i]!, topics);
        sims.push(sim);
        await sim.start(ports[i % nodes]!, added[i]!.password);
      }),
      timeout,
      `${nodes} node(s): connecting ${options.hosts} hosts`,
    );
    const connectS = (performance.now() - t0) / 1000;
    const connectCpuS = cpu() - cpu0;

    // 2. Changes from hosts on every node, seen by the hub on node A.
    hub = await mqtt.connectAsync(brokers[0]!.url, { username: "bench-hub", password: hubUser.password, reconnectPeriod: 0, connectTimeout: 30_000, clean: true });
    // The hub's retained replay (every host's compartments) passes before the measurement.
    let replayed = 0;
    const replay = new Promise<void>((resolve) => hub!.on("message", (_t, _p, packet) => packet.retain && ++replayed === options.hosts * COMPARTMENTS.length && resolve()));
    await hub.subscribeAsync(topics.compartments(Topics.ANY_HOST), { qos: 1 });
    await withTimeout(replay, timeout, `${nodes} node(s): the hub's retained replay`);
    const cpu1 = cpu();
    const latencies = await timeChanges(hub, sims, options.changes, timeout, `${nodes} node(s)`);
    const cpuPer10kChangesS = ((cpu() - cpu1) * 10_000) / options.changes;
    return {
      connectS: r(connectS),
      connectCpuS: r(connectCpuS),
      cpuPer10kChangesS: r(cpuPer10kChangesS),
      changeP50Ms: r(percentile(latencies, 50)),
      changeP99Ms: r(percentile(latencies, 99)),
      rssMb: r(brokers.reduce((sum, b) => sum + procRssMb(b.child.pid!), 0), 1),
    };
  } finally {
    for (const sim of sims) sim.stop();
    await hub?.endAsync(true);
    await Promise.all(
      brokers.map(async (b) => {
        if (b.child.exitCode !== null || b.child.signalCode !== null) return;
        b.child.kill("SIGTERM");
        await b.exited;
      }),
    );
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** `<hosts>h <figure> <1|2> node(s)`, and 2 nodes ÷ 1 node ratios. */
export async function benchCluster(options: ClusterBenchOptions): Promise<Record<string, number>> {
  if (!redisAvailable()) {
    console.log("  skipped: redis-server is not installed (scripts/setup.sh installs it)");
    return {};
  }
  const out: Record<string, number> = {};
  const one = await runCluster(1, options);
  for (const [k, v] of Object.entries(one)) out[`${options.hosts}h ${k} 1 node`] = v;
  const two = await runCluster(2, options);
  for (const [k, v] of Object.entries(two)) out[`${options.hosts}h ${k} 2 nodes`] = v;
  for (const k of ["connectS", "cpuPer10kChangesS", "changeP99Ms", "rssMb"] as const) out[`${options.hosts}h ${k} ratio 2÷1`] = r(two[k] / one[k]);
  return out;
}
