/**
 * The hub's services root (hub/services.ts) on a real broker and the local GitHub: one fleet view,
 * one rollout store under the data dir, the GitHub service's expectation published as the retained
 * fleet/expected by the hub, merge audit events, Home Assistant's Install straight into the rollout
 * service, and Node-RED's config nodes getting the very same instances through settings.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditEvent, Topics, type HostInfo } from "../../protocol/index.js";
import { HomeAssistantBridge } from "../../ha/bridge.js";
import { buildHubServices, ROLLOUT_STATE_DIR, type HubServices } from "../../hub/services.js";
import { startSteps, type StartedSteps } from "../../hub/steps.js";
import { FleetConnection } from "../../node-red-nodes/lib/fleet-connection.js";
import { lockstepSettings } from "../../node-red-nodes/lib/settings.js";
import type { NodeAPI } from "../../node-red-nodes/lib/red.js";
import { startTestBroker, untilConnected, type TestBroker } from "../support/brokers.js";
import { startGitHubHarness, TEST_TOKEN, type GitHubHarness } from "../github/harness.js";

const topics = new Topics();
const log = pino({ level: "silent" });

function info(host: string): HostInfo {
  const now = new Date().toISOString();
  return { host, hostname: host, os: "nixos", agentVersion: "0.1.0", branch: "main", commit: "a".repeat(40), lockHash: "1".repeat(64), tags: [], priority: 100, canary: false, hold: false, startedAt: now, updatedAt: now };
}

async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("hub services", () => {
  let broker: TestBroker;
  let gh: GitHubHarness;
  let dataDir: string;
  let client: MqttClient;
  let observer: MqttClient;
  let agent: MqttClient;
  let services: HubServices;
  let running: StartedSteps;
  let bridge: HomeAssistantBridge;
  const events: AuditEvent[] = [];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "lockstep-hub-services-"));
    // A store left by a hub from before the services root: moved once, not lost.
    const old = join(dataDir, "node-red", "lockstep", "fleet-lockstep-fleet-config");
    mkdirSync(old, { recursive: true });
    writeFileSync(join(old, "deploy-nodes.json"), "{}");
    broker = await startTestBroker({ kind: "aedes" });
    gh = await startGitHubHarness({ hosts: ["alpha"] });
    client = await untilConnected(mqtt.connect(broker.url, { ...(await broker.credentials("hub", "hub")), clientId: "hub-services-test", reconnectPeriod: 0 }));
    observer = await untilConnected(mqtt.connect(broker.url, { ...(await broker.credentials("hub", "observer")), clientId: "observer", reconnectPeriod: 0 }));
    observer.on("message", (topic, payload) => {
      if (topic === topics.events()) events.push(AuditEvent.parse(JSON.parse(payload.toString())));
    });
    await observer.subscribeAsync(topics.events(), { qos: 1 });
    agent = await untilConnected(mqtt.connect(broker.url, { ...(await broker.credentials("agent", "web-1")), reconnectPeriod: 0 }));
    await agent.publishAsync(topics.availability("web-1"), "online", { qos: 1, retain: true });
    await agent.publishAsync(topics.info("web-1"), JSON.stringify(info("web-1")), { qos: 1, retain: true });

    services = buildHubServices({
      client,
      topics,
      dataDir,
      log,
      settleMs: 10,
      github: { owner: "acme", repo: "fleet", token: TEST_TOKEN, apiBaseUrl: gh.server.url, mergeableRetryDelayMs: 10, pollIntervalMs: 3_600_000 },
    });
    running = await startSteps(services.steps, log);
    bridge = new HomeAssistantBridge({ client, topics, logger: log, fleet: services.fleet, rollouts: services.rollouts, birthDelayMs: () => 10 });
    await bridge.start();
  });

  afterAll(async () => {
    await bridge?.stop();
    await running?.stop();
    for (const c of [client, observer, agent]) await c?.endAsync();
    await gh?.stop();
    await broker?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("keeps one rollout store under the data dir (moving an old one there) and resumes before it says ready", async () => {
    expect(services.stateDir).toBe(join(dataDir, ROLLOUT_STATE_DIR));
    expect(existsSync(join(services.stateDir, "deploy-nodes.json"))).toBe(true);
    expect(existsSync(join(dataDir, "node-red", "lockstep", "fleet-lockstep-fleet-config"))).toBe(false);
    await services.ready;
  });

  it("publishes the GitHub head as the retained fleet/expected (the hub owns it)", async () => {
    const expected = await until("fleet/expected", () => services.fleet.expected());
    expect(expected.headCommit).toBe(gh.fleet.head());
    expect(expected.repo).toBe("acme/fleet");
  });

  it("audits a merge and a refused merge with its reason", async () => {
    gh.fleet.bumpInput("nixpkgs");
    const branch = gh.fleet.lockUpdateBranch();
    const number = await gh.server.openPullRequest({ head: branch.branch, title: "flake.lock: Update", labels: ["automated", "dependencies"], body: branch.prBody });
    const refused = await services.github!.merge(number, { ci: "success", minAgeMs: 0 }, branch.sha, "api:admin").then(() => null, (e: unknown) => e);
    expect(refused).toBeInstanceOf(Error);
    const refusal = await until("merge.refused", () => events.find((e) => e.action === "merge.refused"));
    expect(refusal).toMatchObject({ actor: "api:admin", target: `acme/fleet#${number}`, details: { prNumber: number, code: "merge-guard" } });
    expect(String(refusal.details?.reason)).toMatch(/CI/);

    gh.server.setStatus(branch.sha, "success", "ci/build");
    const { result } = await services.github!.merge(number, { ci: "success", minAgeMs: 0 }, branch.sha, "api:admin");
    const merged = await until("pr.merged", () => events.find((e) => e.action === "pr.merged"));
    expect(merged).toMatchObject({ actor: "api:admin", target: `acme/fleet#${number}`, details: { prNumber: number, mergeCommitSha: result.mergeCommitSha } });
    // The merge made the watcher look again: the merged commit is the fleet head within moments.
    await until("the merge commit as fleet head", () => services.fleet.expected()?.headCommit === result.mergeCommitSha);
  });

  it("starts a one-host rollout of the fleet head when Home Assistant's Install is pressed", async () => {
    await until("the HA device", () => bridge.knownHosts().includes("web-1"));
    const operator = await untilConnected(mqtt.connect(broker.url, { ...(await broker.credentials("operator", "ha")), clientId: "ha", reconnectPeriod: 0 }));
    await operator.publishAsync(topics.actions("web-1"), "install", { qos: 1 });
    await operator.endAsync();
    const rollout = await until("a rollout", async () => (await services.rollouts.list()).find((r) => r.requestedBy === "home-assistant"));
    expect(rollout.commit).toBe(services.fleet.expected()!.headCommit);
    expect(Object.keys(rollout.hosts)).toEqual(["web-1"]);
    expect(existsSync(join(services.stateDir, "rollouts", `${rollout.id}.json`))).toBe(true);
    expect(services.rollouts.cancel(rollout.id, "test")).toBe(true);
  });

  it("hands Node-RED the same instances: settings carry them and the fleet node's connection shares them", async () => {
    const RED = { settings: { lockstep: { mqtt: { url: broker.url }, services } } } as unknown as NodeAPI;
    const settings = lockstepSettings(RED);
    expect(settings.services).toBe(services);
    const connection = FleetConnection.shared(settings.services!);
    expect(connection.fleet).toBe(services.fleet);
    expect(connection.rollouts).toBe(services.rollouts);
    expect(connection.state).toBe("connected");
    await connection.close();
    // Closing a node's shared connection leaves the hub's services running.
    expect(services.fleet.connected).toBe(true);
    expect(services.fleet.host("web-1")?.availability).toBe("online");
  });
});
