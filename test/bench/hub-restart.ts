/**
 * Hub restart with N agents (issue 15: "a hub restart with 10,000 agents settles ≤ 1.5× Mosquitto"):
 * N simulated hosts (sim-host.ts) are connected to a real `lockstep hub` process (embedded broker);
 * the hub is stopped (SIGTERM) and started again on the same data dir and port. The hosts reconnect
 * the way the agent does (agent/session.ts: 0.5 s, then twice as long after each failed attempt, up
 * to 30 s) and publish their state again. Settled: every host has its session back (CONNACK, SUBACK
 * and the PUBACKs of its state) and the new hub's retained fleet summary, built by its fleet view,
 * counts all N hosts online. The time is counted from the SIGTERM.
 *
 * The same run restarts a Mosquitto (Lockstep's generated config, persistence on) under the same
 * hosts, with a hub-like client that holds every host's availability: settled once the hosts are
 * back and the client has all N "online" again. Ratio: embedded ÷ Mosquitto.
 * Also reported: the hub's RSS once settled (the hub process holds the broker), and with
 * `arenaMax` the same run again with MALLOC_ARENA_MAX set, for a side-by-side RSS.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { Topics } from "../../protocol/index.js";
import { RECONNECT_MAX_MS, RECONNECT_MIN_MS } from "../../agent/session.js";
import { CredentialStore } from "../../broker/credentials.js";
import { startHubProcess, type HubProcess } from "../demo/hub-process.js";
import { MosquittoProcess, mosquittoAvailable } from "../support/mosquitto.js";
import { procRssMb } from "./fleet.js";
import { SimulatedHost } from "./sim-host.js";

const topics = new Topics();
const CONNECT_CONCURRENCY = 100;
/** The agent's MQTT.js connectTimeout (agent/session.ts): a broker that does not answer is tried again. */
const AGENT_CONNECT_TIMEOUT_MS = 10_000;

export interface HubRestartOptions {
  hosts: number[];
  /** Also run the embedded hub with MALLOC_ARENA_MAX set to this (RSS side by side). */
  arenaMax?: string;
  /** Give up waiting for the fleet to settle after this long (default 15 min). */
  settleTimeoutMs?: number;
}

const r = (x: number, digits = 2) => Number(x.toFixed(digits));

/** A free port in 26000-26999 (the range this bench may use on a shared machine). */
async function benchPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 26000 + Math.floor(Math.random() * 1000);
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer().once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error("no free port in 26000-26999");
}

/**
 * N simulated hosts that stay connected like agents. `up` counts the hosts whose session is back
 * since the last mark(); `all` resolves when every host is.
 */
class ReconnectingFleet {
  readonly sims: SimulatedHost[];
  private upSince = new Set<string>();
  private waiting?: () => void;

  constructor(
    names: string[],
    private readonly passwords: string[],
    private readonly port: number,
  ) {
    this.sims = names.map((name) => new SimulatedHost(name, topics));
  }

  /** First connection of every host, CONNECT_CONCURRENCY at a time. */
  async connect(): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < this.sims.length) {
        const i = next++;
        await this.keepConnected(i);
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, this.sims.length) }, worker));
    await this.all();
  }

  /** Forget who is up: the next all() waits for every host to connect again. */
  mark(): void {
    this.upSince.clear();
  }

  all(): Promise<void> {
    if (this.upSince.size === this.sims.length) return Promise.resolve();
    return new Promise((resolve) => (this.waiting = resolve));
  }

  stop(): void {
    for (const sim of this.sims) sim.stop();
  }

  private keepConnected(i: number): Promise<void> {
    const sim = this.sims[i]!;
    let period = RECONNECT_MIN_MS;
    const attempt = (): Promise<void> =>
      sim.start(this.port, this.passwords[i]!, AGENT_CONNECT_TIMEOUT_MS).then(
        () => {
          period = RECONNECT_MIN_MS;
          this.upSince.add(sim.host);
          if (this.upSince.size === this.sims.length) this.waiting?.();
        },
        () => sim.drop(), // its close schedules the next attempt
      );
    sim.onClose = () => {
      period = Math.min(RECONNECT_MAX_MS, period * 2);
      setTimeout(() => void attempt(), period).unref();
    };
    return attempt();
  }
}

function until(what: string, ms: number, condition: (resolve: () => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: not settled after ${ms / 1000} s`)), ms);
    condition(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

interface RestartFigures {
  settleS: number;
  /** From the SIGTERM until the broker listens again. */
  downS: number;
  rssMb: number;
}

async function fleetAccounts(dataDir: string, hosts: number) {
  const store = await CredentialStore.open(join(dataDir, "credentials.json"));
  const names = Array.from({ length: hosts }, (_, i) => `sim-${String(i).padStart(5, "0")}`);
  const added = await store.addMany(names.map((name) => ({ name, role: "agent" as const })));
  const watcher = await store.add("bench-watcher", "viewer");
  return { store, names, passwords: added.map((a) => a.password), watcher };
}

async function restartEmbeddedHub(hosts: number, timeoutMs: number, env: NodeJS.ProcessEnv = {}): Promise<RestartFigures> {
  const dir = await mkdtemp(join(tmpdir(), "lockstep-bench-hub-restart-"));
  const dataDir = join(dir, "data");
  const { names, passwords, watcher } = await fleetAccounts(dataDir, hosts);
  const port = await benchPort();
  const start = () => startHubProcess({ dataDir, env: { LOCKSTEP_MQTT_PORT: String(port), LOCKSTEP_LOG_LEVEL: "warn", ...env }, startTimeoutMs: 300_000 });
  let hub: HubProcess | undefined = await start();
  const fleet = new ReconnectingFleet(names, passwords, port);
  let page: MqttClient | undefined;
  try {
    // The hub's view, as the page sees it: its retained fleet summary.
    let summary = { hosts: 0, online: 0, updatedAt: "" };
    let onSummary: () => void = () => undefined;
    page = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: "bench-watcher", password: watcher.password, reconnectPeriod: RECONNECT_MIN_MS });
    page.on("message", (_topic, payload) => {
      summary = JSON.parse(payload.toString()) as typeof summary;
      onSummary();
    });
    await page.subscribeAsync(topics.fleetSummary(), { qos: 1 });
    const viewComplete = (after: number) =>
      until(`the hub's fleet summary at ${hosts} hosts`, timeoutMs, (done) => {
        onSummary = () => {
          if (summary.online === hosts && summary.hosts === hosts && Date.parse(summary.updatedAt) >= after) done();
        };
        onSummary();
      });

    await fleet.connect();
    await viewComplete(0);

    const t0 = performance.now();
    const stoppedAt = Date.now();
    fleet.mark();
    await hub.stop();
    hub = undefined;
    hub = await start();
    const downS = (performance.now() - t0) / 1000;
    // Its fleet summary from before the restart is still retained: wait for one the new hub made.
    await Promise.all([until(`${hosts} hosts reconnecting`, timeoutMs, (done) => void fleet.all().then(done)), viewComplete(stoppedAt)]);
    const settleS = (performance.now() - t0) / 1000;
    return { settleS: r(settleS), downS: r(downS), rssMb: r(procRssMb(hub.child.pid!), 1) };
  } finally {
    fleet.stop();
    await page?.endAsync(true);
    await hub?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function restartMosquitto(hosts: number, timeoutMs: number): Promise<RestartFigures> {
  const dir = await mkdtemp(join(tmpdir(), "lockstep-bench-mosquitto-restart-"));
  const { store, names, passwords } = await fleetAccounts(dir, hosts);
  const hubUser = await store.add("bench-hub", "hub");
  const port = await benchPort();
  const mosquitto = new MosquittoProcess(store, { dir: join(dir, "mosquitto"), tcp: { host: "127.0.0.1", port } });
  await mosquitto.start();
  const fleet = new ReconnectingFleet(names, passwords, port);
  let hub: MqttClient | undefined;
  try {
    // A hub-like client: every host's availability, as the fleet view holds it.
    const online = new Set<string>();
    let onAvailability: () => void = () => undefined;
    hub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: "bench-hub", password: hubUser.password, reconnectPeriod: RECONNECT_MIN_MS });
    hub.on("message", (topic, payload) => {
      const parsed = topics.parse(topic);
      if (parsed?.kind !== "availability") return;
      if (payload.toString() === "online") online.add(parsed.host);
      else online.delete(parsed.host);
      onAvailability();
    });
    await hub.subscribeAsync(topics.availability(Topics.ANY_HOST), { qos: 1 });
    const allOnline = () =>
      until(`the hub-like client at ${hosts} hosts`, timeoutMs, (done) => {
        onAvailability = () => {
          if (online.size === hosts) done();
        };
        onAvailability();
      });
    await fleet.connect();
    await allOnline();

    const t0 = performance.now();
    fleet.mark();
    online.clear(); // filled again by the retained replay after the client's reconnect
    await mosquitto.stop();
    await mosquitto.start();
    const downS = (performance.now() - t0) / 1000;
    await Promise.all([until(`${hosts} hosts reconnecting`, timeoutMs, (done) => void fleet.all().then(done)), allOnline()]);
    const settleS = (performance.now() - t0) / 1000;
    return { settleS: r(settleS), downS: r(downS), rssMb: r(procRssMb(mosquitto.pid!), 1) };
  } finally {
    fleet.stop();
    await hub?.endAsync(true);
    await mosquitto.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** `<hosts>h restart settleS embedded|mosquitto|ratio`, the broker's time down, RSS once settled. */
export async function benchHubRestart(options: HubRestartOptions): Promise<Record<string, number>> {
  const timeoutMs = options.settleTimeoutMs ?? 15 * 60_000;
  const out: Record<string, number> = {};
  for (const hosts of options.hosts) {
    const embedded = await restartEmbeddedHub(hosts, timeoutMs);
    out[`${hosts}h restart settleS embedded`] = embedded.settleS;
    out[`${hosts}h restart downS embedded`] = embedded.downS;
    out[`${hosts}h hub rssMb embedded`] = embedded.rssMb;
    if (options.arenaMax) {
      const arena = await restartEmbeddedHub(hosts, timeoutMs, { MALLOC_ARENA_MAX: options.arenaMax });
      out[`${hosts}h restart settleS embedded MALLOC_ARENA_MAX=${options.arenaMax}`] = arena.settleS;
      out[`${hosts}h hub rssMb embedded MALLOC_ARENA_MAX=${options.arenaMax}`] = arena.rssMb;
    }
    if (!mosquittoAvailable()) continue;
    const mosquitto = await restartMosquitto(hosts, timeoutMs);
    out[`${hosts}h restart settleS mosquitto`] = mosquitto.settleS;
    out[`${hosts}h restart downS mosquitto`] = mosquitto.downS;
    out[`${hosts}h broker rssMb mosquitto`] = mosquitto.rssMb;
    out[`${hosts}h restart settleS ratio`] = r(embedded.settleS / mosquitto.settleS);
  }
  return out;
}

if (require.main === module) {
  const hosts = (process.argv[2] ?? "1000").split(",").map(Number);
  benchHubRestart({ hosts, ...(process.argv[3] ? { arenaMax: process.argv[3] } : {}) }).then(
    (figures) => console.log(JSON.stringify(figures, null, 2)),
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
