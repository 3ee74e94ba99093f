/**
 * A simulated host for the broker cluster tests: an MQTT client speaking the agent protocol
 * (availability, info, a "tests" compartment, jobs; persistent session, its last will) with a
 * list of broker nodes to fail over between, running each command once; and the rollout the
 * cluster tests run over such hosts, with what they require of its end.
 */
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { expect } from "vitest";
import { brokerServer } from "../../agent/session.js";
import { agentClientId, Topics } from "../../protocol/index.js";
import { Command } from "../../protocol/schemas.js";
import { RolloutEngine } from "../../rollout/engine.js";
import { FleetView } from "../../rollout/fleet-view.js";
import { RolloutPlanner } from "../../rollout/planner.js";
import { RolloutStore } from "../../rollout/store.js";

const topics = new Topics();
export const OLD_COMMIT = "a".repeat(40);
export const TARGET_COMMIT = "b".repeat(40);
const now = () => new Date().toISOString();

export /** A host's agent as far as the protocol goes: runs pull/switch/test once per command id. */
class SimAgent {
  readonly ran = new Map<string, string>(); // command id -> op
  commit = OLD_COMMIT;
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

/**
 * The hub's rollout to TARGET_COMMIT over `agents` (canary first, then waves of 3), from `fleet`
 * on node A, calling `stopNodeB` as the rollout reaches node B's first host; then what a node
 * dying on the way must not change: the rollout completes, each
 * host ran pull, switch and test exactly once, its retained state is the new one, it is online,
 * and it ended on node A (`urlA`).
 */
export async function rolloutEachStepOnce(fleet: FleetView, agents: SimAgent[], storeDir: string, urlA: string, stopNodeB: () => Promise<void>): Promise<void> {
  const portA = String(new URL(urlA).port);
  let stopped = false;
  for (const a of agents.filter((x) => x.host.startsWith("b"))) {
    a.onFirstCommand = async () => {
      if (stopped) return;
      stopped = true;
      await stopNodeB();
    };
  }
  const names = new Set(agents.map((a) => a.host));
  const plan = new RolloutPlanner().plan(
    {
      commit: TARGET_COMMIT,
      strategy: { soakMs: 100, waves: { size: 3 }, parallelism: 3, stepTimeouts: { pull: 60_000, switch: 60_000, test: 60_000 }, healthTimeoutMs: 60_000, healthCompartments: ["tests"] },
      onFailure: "halt",
    },
    fleet.hosts().filter((h) => names.has(h.host)),
  );
  const engine = new RolloutEngine({ fleet, store: new RolloutStore(join(storeDir, "hub")) });
  const final = await engine.run(plan, "cluster-test");
  expect(stopped, "node B stopped as the rollout reached its first host").toBe(true);

  expect(final.state, JSON.stringify(final.hosts)).toBe("completed");
  for (const a of agents) {
    expect(final.hosts[a.host]!.state, a.host).toBe("succeeded");
    // Each step's command ran once: pull, switch, test, and nothing twice.
    expect([...a.ran.values()].sort(), a.host).toEqual(["pull", "switch", "test"]);
    expect(final.hosts[a.host]!.jobIds.length, a.host).toBe(3);
    expect(fleet.host(a.host)).toMatchObject({ info: { commit: TARGET_COMMIT, generation: 2 }, compartments: { tests: { status: "ok", generation: 2 } } });
    expect(a.node, `${a.host} ends on node A`).toBe(portA);
  }
  for (const a of agents) expect(fleet.host(a.host)?.availability, a.host).toBe("online");
}

/**
 * Hosts a1, a2 (node A first, then B) and b1, b2 (node B first, then A), a1 the canary, and the
 * hub's fleet view on node A once it holds all four at OLD_COMMIT with passing tests.
 */
export async function startClusterFleet(urlA: string, urlB: string, passwords: Map<string, string>, hubPassword: string): Promise<{ agents: SimAgent[]; fleet: FleetView }> {
  const agents: SimAgent[] = [];
  for (const host of ["a1", "a2", "b1", "b2"]) {
    const urls = host.startsWith("a") ? [urlA, urlB] : [urlB, urlA];
    const agent = new SimAgent(host, passwords.get(host)!, urls, host === "a1");
    await agent.start();
    agents.push(agent);
  }
  const fleet = new FleetView({ url: urlA, username: "hub", password: hubPassword });
  await fleet.start();
  for (const a of agents) await fleet.waitForHost(a.host, (h) => h.info?.commit === OLD_COMMIT && h.compartments.tests?.status === "ok", 10_000);
  return { agents, fleet };
}
