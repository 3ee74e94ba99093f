/**
 * A rollout across two broker nodes sharing Redis: the hub's FleetView and RolloutEngine on node
 * A, simulated agents (MQTT clients speaking the agent protocol, persistent sessions, the other
 * node as failover server) spread over A and B. Node B goes away as soon as the rollout reaches
 * one of its hosts: its agents reconnect to A, the rollout completes, every step ran exactly once,
 * and the hosts' retained state is intact.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { brokerServer } from "../../agent/session.js";
import { parseBrokerConfig } from "../../broker/config.js";
import { CredentialStore } from "../../broker/credentials.js";
import { EmbeddedBroker } from "../../broker/embedded.js";
import { agentClientId, Topics } from "../../protocol/index.js";
import { Command } from "../../protocol/schemas.js";
import { RolloutEngine } from "../../rollout/engine.js";
import { FleetView } from "../../rollout/fleet-view.js";
import { RolloutPlanner } from "../../rollout/planner.js";
import { RolloutStore } from "../../rollout/store.js";
import { startTestRedis, type TestRedis } from "../support/redis.js";

const topics = new Topics();
const OLD = "a".repeat(40);
const TARGET = "b".repeat(40);
const now = () => new Date().toISOString();

/** A host's agent as far as the protocol goes: runs pull/switch/test once per command id. */
class SimAgent {
  readonly ran = new Map<string, string>(); // command id -> op
  commit = OLD;
  generation = 1;
  client!: MqttClient;
  /** Called with the first command, before it runs (the test kills node B there). */
  onFirstCommand?: () => Promise<void>;

  constructor(
    readonly host: string,
    private readonly password: string,
    private readonly urls: string[],
    private readonly canary: boolean,
  ) {}

  async start(): Promise<void> {
    this.client = mqtt.connect(this.urls[0]!, {
      servers: this.urls.map(brokerServer),
      clientId: agentClientId(this.host),
      clean: false,
      username: this.host,
      password: this.password,
      protocolVersion: 4,
      reconnectPeriod: 100,
      will: { topic: topics.availability(this.host), payload: Buffer.from("offline"), qos: 1, retain: true },
    });
    this.client.on("message", (_topic, payload) => void this.command(Command.parse(JSON.parse(payload.toString()))));
    this.client.on("connect", () => void this.publishState());
    await new Promise<void>((resolve) => this.client.once("connect", () => resolve()));
    await this.client.subscribeAsync(topics.commands(this.host), { qos: 1 });
    await this.publishState();
  }

  get node(): string {
    return String(this.client.options.port);
  }

  private async publishState(): Promise<void> {
    const pub = (topic: string, body: unknown) => this.client.publishAsync(topic, typeof body === "string" ? body : JSON.stringify(body), { qos: 1, retain: true });
    await pub(topics.availability(this.host), "online");
    await pub(topics.info(this.host), { host: this.host, hostname: this.host, os: "nixos", agentVersion: "0.1.0", branch: "main", commit: this.commit, generation: this.generation, canary: this.canary, priority: this.canary ? 1 : 10, startedAt: now(), updatedAt: now() });
    await pub(topics.compartment(this.host, "tests"), { status: "ok", summary: "checks passed", checkedAt: now(), generation: this.generation });
  }

  private async command(cmd: Command): Promise<void> {
    if (this.ran.has(cmd.id)) return; // a re-delivery runs once
    const first = this.ran.size === 0;
    this.ran.set(cmd.id, cmd.op);
    if (first) await this.onFirstCommand?.();
    const job = { id: cmd.id, host: this.host, op: cmd.op, acceptedAt: now(), ...(cmd.rolloutId ? { rolloutId: cmd.rolloutId } : {}) };
    const publishJob = (extra: Record<string, unknown>) => this.client.publishAsync(topics.job(this.host, cmd.id), JSON.stringify({ ...job, ...extra }), { qos: 1, retain: true });
    await publishJob({ state: "running", summary: `${cmd.op} running`, startedAt: now() });
    const before = this.generation;
    if (cmd.op === "pull") this.commit = (cmd.args as { commit?: string }).commit ?? this.commit;
    if (cmd.op === "switch") this.generation++;
    await this.publishState();
    await publishJob({ state: "succeeded", summary: `${cmd.op} done`, finishedAt: now(), ...(cmd.op === "switch" ? { generationBefore: before, generationAfter: this.generation } : {}) });
  }
}

describe("a rollout across two broker nodes, one of which dies", () => {
  let redis: TestRedis;
  let root: string;
  let nodeA: EmbeddedBroker;
  let nodeB: EmbeddedBroker;
  let fleet: FleetView;
  const agents: SimAgent[] = [];

  beforeAll(async () => {
    redis = await startTestRedis();
    root = await mkdtemp(join(tmpdir(), "lockstep-cluster-rollout-"));
    const store = await CredentialStore.open(join(root, "credentials.json"));
    const passwords = new Map<string, string>();
    for (const host of ["a1", "a2", "b1", "b2"]) passwords.set(host, (await store.add(host, "agent")).password);
    const hub = await store.add("hub", "hub");
    const start = async (name: string) => {
      const node = new EmbeddedBroker(
        parseBrokerConfig({ dataDir: join(root, name), credentialsFile: join(root, "credentials.json"), listeners: { tcp: { host: "127.0.0.1", port: 0 } }, cluster: { redisUrl: redis.url, nodeId: name } }),
        pino({ level: "silent" }),
      );
      await node.start();
      return node;
    };
    nodeA = await start("node-a");
    nodeB = await start("node-b");
    for (const host of ["a1", "a2", "b1", "b2"]) {
      const urls = host.startsWith("a") ? [nodeA.url, nodeB.url] : [nodeB.url, nodeA.url];
      const agent = new SimAgent(host, passwords.get(host)!, urls, host === "a1");
      await agent.start();
      agents.push(agent);
    }
    fleet = new FleetView({ url: nodeA.url, username: "hub", password: hub.password });
    await fleet.start();
    for (const a of agents) await fleet.waitForHost(a.host, (h) => h.info?.commit === OLD && h.compartments.tests?.status === "ok", 10_000);
  }, 60_000);

  afterAll(async () => {
    await fleet?.stop();
    for (const a of agents) await a.client?.endAsync(true).catch(() => undefined);
    await nodeA?.stop();
    await nodeB?.stop();
    await redis?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it("completes with every step once; node B's hosts finish on node A", async () => {
    const portA = String(new URL(nodeA.url).port);
    let killed = false;
    for (const a of agents.filter((x) => x.host.startsWith("b"))) {
      a.onFirstCommand = async () => {
        if (killed) return;
        killed = true;
        await nodeB.stop(); // no wills, no more heartbeats, every connection gone
      };
    }
    const plan = new RolloutPlanner().plan(
      {
        commit: TARGET,
        strategy: { soakMs: 100, waves: { size: 3 }, parallelism: 3, stepTimeouts: { pull: 60_000, switch: 60_000, test: 60_000 }, healthTimeoutMs: 60_000, healthCompartments: ["tests"] },
        onFailure: "halt",
      },
      fleet.hosts(),
    );
    const engine = new RolloutEngine({ fleet, store: new RolloutStore(join(root, "hub")) });
    const final = await engine.run(plan, "cluster-test");

    expect(killed).toBe(true);
    expect(final.state, JSON.stringify(final.hosts)).toBe("completed");
    for (const a of agents) {
      expect(final.hosts[a.host]!.state, a.host).toBe("succeeded");
      // Each step's command ran once: pull, switch, test, and nothing twice.
      expect([...a.ran.values()].sort(), a.host).toEqual(["pull", "switch", "test"]);
      expect(final.hosts[a.host]!.jobIds.length, a.host).toBe(3);
      expect(fleet.host(a.host)).toMatchObject({ info: { commit: TARGET, generation: 2 }, compartments: { tests: { status: "ok", generation: 2 } } });
      expect(a.node, `${a.host} ends on node A`).toBe(portA);
    }
    for (const a of agents) expect(fleet.host(a.host)?.availability, a.host).toBe("online");
  }, 120_000);
});
