/**
 * A job's final state survives a connection cut between its publish and the broker's ack, and an
 * agent restart before the agent could reconnect: a real broker, an in-process agent behind a TCP
 * proxy (its network), and the hub's FleetView waiting for the job like a rollout step does.
 * And when the hub asks (`report`), the agent answers from its job history.
 */
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { Agent } from "../../agent/agent.js";
import { parseAgentConfig } from "../../agent/config.js";
import { FleetView } from "../../rollout/fleet-view.js";
import { Topics, type JobState } from "../../protocol/index.js";
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
  const send = (op: "report" | "stop" | "release" | "hold", args: Record<string, unknown>, id: string) =>
    fleet.sendCommand(HOST, op, args as never, { id, expiresAt: new Date(Date.now() + 60_000), requestedBy: "test" });
  /** Every state of job `id` that reaches the hub from now on. */
  const statesOf = (id: string) => {
    const seen: JobState[] = [];
    const off = fleet.onChange((c) => {
      if (c.kind === "job" && c.jobId === id) seen.push(fleet.job(HOST, id)!);
    });
    cleanups.push(off);
    return seen;
  };
  return { proxy, fleet, startAgent, send, statesOf };
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

  it("is published again when the hub asks (report), even after the broker acknowledged it", async () => {
    const { fleet, startAgent, send, statesOf } = await world();
    await startAgent();
    await fleet.waitForHost(HOST, (h) => h.availability === "online", 20_000);
    await send("release", {}, "c-asked-1");
    await fleet.waitForJob(HOST, "c-asked-1", 20_000);
    const again = statesOf("c-asked-1");
    await send("report", { job: "c-asked-1", op: "release" }, "c-report-1");
    const answer = await fleet.waitForJob(HOST, "c-report-1", 20_000);
    expect(answer).toMatchObject({ op: "report", state: "succeeded", summary: "job c-asked-1 is succeeded: its state was published again" });
    // Published before the report's own answer, on the same connection: already here.
    expect(again.map((j) => j.state)).toEqual(["succeeded"]);
  }, 60_000);

  it("reports a command that never reached the host as rejected, and never runs it when it arrives later", async () => {
    const { fleet, startAgent, send } = await world();
    const agent = await startAgent();
    await fleet.waitForHost(HOST, (h) => h.availability === "online", 20_000);
    await send("report", { job: "c-lost-1", op: "hold" }, "c-report-2");
    expect(await fleet.waitForJob(HOST, "c-report-2", 20_000)).toMatchObject({ state: "succeeded", summary: expect.stringContaining("never reached this host") });
    expect(await fleet.waitForJob(HOST, "c-lost-1", 20_000)).toMatchObject({ op: "hold", state: "rejected", summary: expect.stringContaining("it will not run") });
    await send("hold", { reason: "late" }, "c-lost-1"); // the lost command turns up after all
    await send("report", { job: "c-lost-1" }, "c-report-3"); // commands run in order: this answers after it
    await fleet.waitForJob(HOST, "c-report-3", 20_000);
    expect(fleet.job(HOST, "c-lost-1")?.state).toBe("rejected");
    expect(agent.ctx.state.state.hold).toBeUndefined();
  }, 60_000);

  it("a stop that names a job stops only that job", async () => {
    const { fleet, startAgent, send } = await world();
    await startAgent();
    await fleet.waitForHost(HOST, (h) => h.availability === "online", 20_000);
    await send("stop", { job: "c-not-running" }, "c-stop-1");
    expect(await fleet.waitForJob(HOST, "c-stop-1", 20_000)).toMatchObject({ state: "succeeded", summary: "job c-not-running is not running: nothing stopped" });
  }, 60_000);
});
