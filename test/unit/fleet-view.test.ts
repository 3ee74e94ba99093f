/**
 * FleetView against a real broker (the hub's embedded Aedes and Mosquitto, per
 * LOCKSTEP_TEST_BROKERS): live cache from retained state, malformed payloads ignored, commands out,
 * job results in, progress/history/audit published.
 */
import { Writable } from "node:stream";
import mqtt, { type MqttClient } from "mqtt";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FleetView } from "../../rollout/fleet-view.js";
import { WaitTimeoutError } from "../../rollout/errors.js";
import { AuditEvent, Command, type HostInfo, type JobState, type RolloutProgress } from "../../protocol/schemas.js";
import { Topics } from "../../protocol/topics.js";
import { BROKER_KINDS, startTestBroker, type TestBroker } from "../support/brokers.js";

const topics = new Topics();
const COMMIT = "1".repeat(40);
const now = () => new Date().toISOString();
const info = (host: string, extra: Partial<HostInfo> = {}): HostInfo => ({
  host,
  hostname: host,
  os: "nixos",
  agentVersion: "0.1.0",
  branch: "main",
  commit: COMMIT,
  generation: 3,
  tags: [],
  priority: 100,
  canary: false,
  hold: false,
  startedAt: now(),
  updatedAt: now(),
  ...extra,
});

async function connect(broker: TestBroker, role: "agent" | "hub" | "viewer", name: string): Promise<MqttClient> {
  const c = await broker.credentials(role, name);
  return mqtt.connectAsync(broker.url, { ...c, reconnectPeriod: 0, clientId: c.clientId ?? `t-${role}-${name}-${Math.random().toString(16).slice(2, 8)}` });
}

const until = async (cond: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe.each(BROKER_KINDS)("FleetView on %s", (kind) => {
  let broker: TestBroker;
  let agent: MqttClient;
  let rogue: MqttClient;
  let fleet: FleetView;
  const logLines: { msg: string; topic?: string; error?: string }[] = [];

  beforeAll(async () => {
    broker = await startTestBroker({ kind });
    agent = await connect(broker, "agent", "web1");
    // A client allowed to write anywhere, standing in for a buggy or outdated publisher.
    rogue = await connect(broker, "hub", "rogue");
    const pub = (t: string, p: string) => agent.publishAsync(t, p, { qos: 1, retain: true });
    // Retained state that exists before the hub starts, including a finished job (what resume relies on).
    await pub(topics.availability("web1"), "online");
    await pub(topics.info("web1"), JSON.stringify(info("web1")));
    await pub(topics.compartment("web1", "git"), JSON.stringify({ status: "ok", summary: "at head", checkedAt: now() }));
    const oldJob: JobState = { id: "c-old-1", host: "web1", op: "pull", state: "succeeded", summary: "done", acceptedAt: now(), finishedAt: now() };
    await pub(topics.job("web1", "c-old-1"), JSON.stringify(oldJob));
    // Malformed retained payloads on another host.
    const bad = (t: string, p: string) => rogue.publishAsync(t, p, { qos: 1, retain: true });
    await bad(topics.info("web2"), "{not json");
    await bad(topics.compartment("web2", "tests"), JSON.stringify({ status: "purple", summary: 1 }));
    await bad(topics.availability("web2"), "maybe");
    await bad(topics.info("web3"), JSON.stringify(info("web1"))); // names another host
    await bad(topics.job("web2", "c-x"), JSON.stringify({ id: "c-other", host: "web2", op: "pull", state: "succeeded", summary: "", acceptedAt: now() }));

    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const line of String(chunk).split("\n").filter(Boolean)) logLines.push(JSON.parse(line));
        cb();
      },
    });
    const creds = await broker.credentials("hub", "test-hub");
    fleet = new FleetView({ url: broker.url, ...creds, logger: pino({ level: "warn" }, sink) });
    await fleet.start();
    await until(() => fleet.job("web1", "c-old-1") !== undefined && fleet.host("web1")?.compartments.git !== undefined);
  });

  afterAll(async () => {
    await fleet?.stop();
    await agent?.endAsync();
    await rogue?.endAsync();
    // Let the broker finish streaming retained messages to the clients that just left: stopping
    // Aedes mid-stream makes its LevelDB iterator throw after close (a broker-side race).
    await new Promise((r) => setTimeout(r, 200));
    await broker?.stop();
  });

  it("builds the live cache from retained state", () => {
    const web1 = fleet.host("web1")!;
    expect(web1.availability).toBe("online");
    expect(web1.info?.generation).toBe(3);
    expect(web1.compartments.git?.status).toBe("ok");
    expect(fleet.job("web1", "c-old-1")?.state).toBe("succeeded");
  });

  it("ignores malformed payloads (logged, nothing cached) and keeps working", async () => {
    await until(() => logLines.filter((l) => l.msg === "ignored malformed payload").length >= 5);
    expect(fleet.host("web2")).toBeUndefined();
    expect(fleet.host("web3")).toBeUndefined();
    expect(fleet.job("web2", "c-x")).toBeUndefined();
    expect(logLines.some((l) => l.topic === topics.info("web2") && /not JSON/.test(l.error ?? ""))).toBe(true);
    // A valid update after all that still lands.
    await rogue.publishAsync(topics.info("web2"), JSON.stringify(info("web2", { priority: 5 })), { qos: 1, retain: true });
    await until(() => fleet.host("web2")?.info?.priority === 5);
  });

  it("sends valid QoS 1 commands, records each on fleet/events, and resolves waitForJob with the agent's terminal state", async () => {
    const viewer = await connect(broker, "viewer", "audit");
    const audited: AuditEvent[] = [];
    viewer.on("message", (t, p) => t === topics.events() && audited.push(AuditEvent.parse(JSON.parse(p.toString()))));
    await viewer.subscribeAsync(topics.events(), { qos: 1 });
    await agent.subscribeAsync(topics.commands("web1"), { qos: 1 });
    const received: Command[] = [];
    const onMsg = (t: string, p: Buffer) => {
      if (t !== topics.commands("web1")) return;
      const cmd = Command.parse(JSON.parse(p.toString()));
      received.push(cmd);
      const job = (state: JobState["state"]): JobState => ({ id: cmd.id, host: "web1", op: cmd.op, state, summary: state, acceptedAt: now(), generationAfter: 4 });
      void agent.publishAsync(topics.job("web1", cmd.id), JSON.stringify(job("running")), { qos: 1, retain: true }).then(() =>
        agent.publishAsync(topics.job("web1", cmd.id), JSON.stringify(job("succeeded")), { qos: 1, retain: true }),
      );
    };
    agent.on("message", onMsg);
    const expiresAt = new Date(Date.now() + 60_000);
    const id = await fleet.sendCommand("web1", "switch", { commit: COMMIT }, { rolloutId: "r-test", expiresAt, requestedBy: "alice" });
    const job = await fleet.waitForJob("web1", id, 3000);
    agent.off("message", onMsg);
    expect(job.state).toBe("succeeded");
    expect(job.generationAfter).toBe(4);
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ id, op: "switch", args: { commit: COMMIT }, rolloutId: "r-test", requestedBy: "alice", expiresAt: expiresAt.toISOString() });
    // Ids are unique per command.
    const id2 = await fleet.sendCommand("web1", "test", {}, { expiresAt, requestedBy: "bob" });
    expect(id2).not.toBe(id);
    // One audit event per command, in order, on whose behalf it was sent.
    await until(() => audited.length >= 2);
    expect(audited.map((e) => [e.action, e.actor, e.target, e.details?.commandId, e.details?.op, e.details?.rolloutId])).toEqual([
      ["command.sent", "alice", "web1", id, "switch", "r-test"],
      ["command.sent", "bob", "web1", id2, "test", undefined],
    ]);
    await viewer.endAsync();
  });

  it("waitForJob and waitForHost time out with a typed error; waitForHost sees live changes", async () => {
    await expect(fleet.waitForJob("web1", "c-never", 50)).rejects.toBeInstanceOf(WaitTimeoutError);
    const offline = fleet.waitForHost("web1", (h) => h.availability === "offline", 3000);
    await agent.publishAsync(topics.availability("web1"), "offline", { qos: 1, retain: true });
    expect((await offline).availability).toBe("offline");
    const ac = new AbortController();
    const aborted = fleet.waitForHost("web1", () => false, 3000, ac.signal);
    ac.abort();
    await expect(aborted).rejects.toThrow(/stopped waiting/);
  });

  it("publishes retained progress and history, and audit events", async () => {
    const viewer = await connect(broker, "viewer", "page");
    const progress: RolloutProgress = {
      id: "r-pub-1",
      commit: COMMIT,
      state: "running",
      summary: "wave-1: 1/3 hosts switched",
      requestedBy: "alice",
      phases: [{ name: "wave-1", hosts: ["web1"] }],
      hosts: {},
      counts: { total: 3, succeeded: 1, failed: 0, skipped: 0 },
      createdAt: now(),
      updatedAt: now(),
    };
    await viewer.subscribeAsync(topics.events(), { qos: 1 });
    const got = new Map<string, { payload: string; retain: boolean }>();
    viewer.on("message", (t, p, packet) => got.set(t, { payload: p.toString(), retain: packet.retain }));
    await fleet.publishProgress(progress);
    await fleet.publishHistory({ rolloutId: "r-pub-1", commit: COMMIT, state: "completed", summary: "done", requestedBy: "alice", startedAt: now(), finishedAt: now(), hosts: [] });
    await fleet.publishAudit({ id: "e-1", at: now(), actor: "alice", action: "rollout.started" });
    // Subscribing afterwards still gets the retained ones. A PUBACK does not mean the broker has
    // stored the retained message yet; the audit event, published last, arriving means it has.
    await until(() => got.has(topics.events()));
    await viewer.subscribeAsync([topics.rollout("r-pub-1"), topics.history("r-pub-1")], { qos: 1 });
    await until(() => got.size === 3);
    expect(JSON.parse(got.get(topics.rollout("r-pub-1"))!.payload).summary).toBe("wave-1: 1/3 hosts switched");
    expect(got.get(topics.rollout("r-pub-1"))!.retain).toBe(true);
    expect(got.get(topics.history("r-pub-1"))!.retain).toBe(true);
    expect(JSON.parse(got.get(topics.events())!.payload).action).toBe("rollout.started");
    await viewer.endAsync();
  });

  it("works on a caller's existing connection and leaves it open on stop()", async () => {
    const own = await connect(broker, "hub", "shared-conn");
    const shared = new FleetView({ client: own });
    await shared.start();
    await until(() => shared.host("web1") !== undefined);
    await shared.stop();
    expect(own.connected).toBe(true);
    await own.endAsync();
  });
});
