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
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseBrokerConfig } from "../../broker/config.js";
import { CredentialStore } from "../../broker/credentials.js";
import { EmbeddedBroker } from "../../broker/embedded.js";
import type { FleetView } from "../../rollout/fleet-view.js";
import { rolloutEachStepOnce, startClusterFleet, type SimAgent } from "../support/cluster-agent.js";
import { startTestRedis, type TestRedis } from "../support/redis.js";

describe("a rollout across two broker nodes, one of which dies", () => {
  let redis: TestRedis;
  let root: string;
  let nodeA: EmbeddedBroker;
  let nodeB: EmbeddedBroker;
  let fleet: FleetView;
  let agents: SimAgent[] = [];

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
    ({ agents, fleet } = await startClusterFleet(nodeA.url, nodeB.url, passwords, hub.password));
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
    await rolloutEachStepOnce(fleet, agents, root, nodeA.url, () => nodeB.stop()); // no wills, no more heartbeats, every connection gone
  }, 120_000);
});
