/**
 * Node B of a Redis broker cluster as a real `lockstep broker` process (the built CLI), node A
 * in-process with the hub's FleetView and RolloutEngine, simulated agents spread over both:
 * - an unhandled rejection in node B (a library bug) is logged, and the node keeps serving;
 * - node B is SIGKILLed as the rollout reaches its first host: its agents fail over to node A,
 *   node A publishes the will of the host that did not come back ("offline" reaches the hub),
 *   and the rollout completes with each step once.
 * Needs `npm run build` and Debian's redis-server.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseBrokerConfig } from "../../broker/config.js";
import { CredentialStore } from "../../broker/credentials.js";
import { EmbeddedBroker } from "../../broker/embedded.js";
import { BROKER_RUNNING_MARKER } from "../../hub/process-guard.js";
import { agentClientId, Topics } from "../../protocol/index.js";
import type { FleetView } from "../../rollout/fleet-view.js";
import { startBrokerProcess, type BrokerProcess } from "../support/broker-process.js";
import { rolloutEachStepOnce, startClusterFleet, type SimAgent } from "../support/cluster-agent.js";
import { startTestRedis, type TestRedis } from "../support/redis.js";

const topics = new Topics();
const INJECT = join(__dirname, "..", "support", "inject-rejection.cjs");
/** Every node's will check (heartbeat a quarter of it): node B is found dead about a second after it dies. */
const WILL_CHECK_MS = 1_000;

describe("a `lockstep broker` node killed mid-rollout", () => {
  let redis: TestRedis;
  let root: string;
  let nodeA: EmbeddedBroker;
  let nodeB: BrokerProcess;
  let fleet: FleetView;
  let stray: MqttClient | undefined;
  const passwords = new Map<string, string>();
  let agents: SimAgent[] = [];

  beforeAll(async () => {
    redis = await startTestRedis();
    root = await mkdtemp(join(tmpdir(), "lockstep-cluster-process-"));
    // Node B's data dir is `root`: both nodes read root/credentials.json.
    const store = await CredentialStore.open(join(root, "credentials.json"));
    for (const host of ["a1", "a2", "b1", "b2", "b3"]) passwords.set(host, (await store.add(host, "agent")).password);
    const hub = await store.add("hub", "hub");
    nodeA = new EmbeddedBroker(
      parseBrokerConfig({ dataDir: join(root, "node-a"), credentialsFile: join(root, "credentials.json"), listeners: { tcp: { host: "127.0.0.1", port: 0 } }, cluster: { redisUrl: redis.url, nodeId: "node-a", willCheckMs: WILL_CHECK_MS } }),
      pino({ level: "silent" }),
    );
    await nodeA.start();
    nodeB = await startBrokerProcess(root, {
      LOCKSTEP_REDIS_URL: redis.url,
      LOCKSTEP_BROKER_NODE_ID: "node-b",
      LOCKSTEP_BROKER_WILL_CHECK_MS: String(WILL_CHECK_MS),
      NODE_OPTIONS: `--require ${INJECT}`,
    });
    ({ agents, fleet } = await startClusterFleet(nodeA.url, nodeB.url, passwords, hub.password));
  }, 60_000);

  afterAll(async () => {
    await fleet?.stop();
    for (const a of agents) await a.client?.endAsync(true).catch(() => undefined);
    await stray?.endAsync(true).catch(() => undefined);
    if (nodeB && nodeB.child.exitCode === null && nodeB.child.signalCode === null) {
      nodeB.child.kill("SIGKILL");
      await nodeB.exited;
    }
    await nodeA?.stop();
    await redis?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it("logs an unhandled rejection and keeps serving (Node's default would end the node)", async () => {
    nodeB.child.kill("SIGUSR2"); // inject-rejection.cjs: one promise rejection nobody handles
    await expect.poll(() => nodeB.output().includes("injected by the test"), { timeout: 10_000 }).toBe(true);
    expect(nodeB.output()).toContain("unhandled rejection: kept running");
    // Still serving: a host connects to node B and its "online" reaches the hub on node A.
    stray = await mqtt.connectAsync(nodeB.url, {
      clientId: agentClientId("b3"),
      clean: false,
      username: "b3",
      password: passwords.get("b3"),
      protocolVersion: 4,
      reconnectPeriod: 0, // b3 knows only node B: it stays away once node B is gone
      will: { topic: topics.availability("b3"), payload: Buffer.from("offline"), qos: 1, retain: true },
    });
    await stray.publishAsync(topics.availability("b3"), "online", { qos: 1, retain: true });
    await fleet.waitForHost("b3", (h) => h.availability === "online", 10_000);
    expect(nodeB.child.exitCode).toBeNull();
  }, 30_000);

  it("SIGKILLed as the rollout reaches its first host: its agents finish on node A, each step once; the host that stayed away goes offline", async () => {
    const offline = fleet.waitForHost("b3", (h) => h.availability === "offline", 60_000);
    offline.catch(() => undefined); // awaited below, after the rollout
    await rolloutEachStepOnce(fleet, agents, root, nodeA.url, async () => {
      nodeB.child.kill("SIGKILL"); // no wills published, no goodbye to Redis
      await nodeB.exited;
    });
    expect(nodeB.child.signalCode).toBe("SIGKILL");
    expect(existsSync(join(root, BROKER_RUNNING_MARKER)), "a killed node leaves its running marker").toBe(true);
    // b3 was on node B only: node A publishes its will once node B has missed three heartbeats.
    await offline;
  }, 120_000);
});
