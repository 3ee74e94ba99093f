/**
 * A job's final state survives a connection cut between its publish and the broker's ack, and an
 * agent restart before the agent could reconnect: a real broker, an in-process agent behind a TCP
 * proxy (its network), and the hub's FleetView waiting for the job like a rollout step does.
 */
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { Agent } from "../../agent/agent.js";
import { parseAgentConfig } from "../../agent/config.js";
import { FleetView } from "../../rollout/fleet-view.js";
import { Topics } from "../../protocol/index.js";
import { startTestBroker, type TestBroker } from "../support/brokers.js";
import { TcpProxy } from "../support/tcp-proxy.js";

const HOST = "cutoff";
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function world() {
  const root = mkdtempSync(join(tmpdir(), "lockstep-final-state-"));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  const broker: TestBroker = await startTestBroker({ kind: "aedes" });
  cleanups.push(() => broker.stop());
  const target = new URL(broker.url);
  const proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port) });
  cleanups.push(() => proxy.stop());
  const creds = await broker.credentials("agent", HOST);
  const config = parseAgentConfig({
    host: HOST,
    broker: { url: `mqtt://127.0.0.1:${proxy.port}`, username: creds.username },
    repo: { url: join(root, "no-repo"), checkoutDir: join(root, "checkout") },
    stateDir: join(root, "state"),
    os: { kind: "generic", profile: join(root, "profile") },
  });
  config.brokerPassword = creds.password;
  const startAgent = async () => {
    const agent = new Agent(config, pino({ level: "silent" }));
    cleanups.push(() => agent.stop());
    await agent.start();
    return agent;
  };
  const hub = await broker.credentials("hub", "final-state");
  const fleet = new FleetView({ url: broker.url, username: hub.username, password: hub.password });
  await fleet.start();
  cleanups.push(() => fleet.stop());
  return { proxy, fleet, startAgent };
}

describe("a job's final state until the broker acknowledged it", () => {
  it("is published again by the restarted agent when the connection was cut between its publish and the ack", async () => {
    const { proxy, fleet, startAgent } = await world();
    const agent = await startAgent();
    await fleet.waitForHost(HOST, (h) => h.availability === "online", 20_000);
    const id = "c-final-state-1";
    const stateTopic = new Topics().job(HOST, id);
    // The network goes down right as the agent sends the job's final state: the broker never gets it.
    const cut = proxy.cutBeforeClientSends((chunk) => chunk.includes(stateTopic) && chunk.includes('"state":"succeeded"'));
    await fleet.sendCommand(HOST, "hold", { reason: "cut test" }, { id, expiresAt: new Date(Date.now() + 60_000), requestedBy: "test" });
    await cut;
    // The agent restarts before it could reconnect (a reboot, its supervisor): its memory is gone.
    await agent.stop();
    expect(fleet.job(HOST, id)?.state).not.toBe("succeeded");
    proxy.restore();
    await startAgent();
    // The hub's wait completes with the real outcome, not a timeout.
    const job = await fleet.waitForJob(HOST, id, 30_000);
    expect(job).toMatchObject({ id, op: "hold", state: "succeeded" });
  }, 60_000);

  it("is published again after a reconnect when the connection was cut between its publish and the ack", async () => {
    const { proxy, fleet, startAgent } = await world();
    await startAgent();
    await fleet.waitForHost(HOST, (h) => h.availability === "online", 20_000);
    const id = "c-final-state-2";
    const stateTopic = new Topics().job(HOST, id);
    const cut = proxy.cutBeforeClientSends((chunk) => chunk.includes(stateTopic) && chunk.includes('"state":"succeeded"'));
    await fleet.sendCommand(HOST, "release", {}, { id, expiresAt: new Date(Date.now() + 60_000), requestedBy: "test" });
    await cut;
    proxy.restore();
    const job = await fleet.waitForJob(HOST, id, 30_000);
    expect(job).toMatchObject({ id, op: "release", state: "succeeded" });
  }, 60_000);
});
