/**
 * The Home Assistant bridge against a real broker (each kind in BROKER_KINDS; Mosquitto runs on the
 * config Lockstep generates, ACL included): discovery published retained per host and for the fleet,
 * republished on HA's birth message, removed with the host; HA's bare action payloads turned into
 * valid protocol Commands; the fleet's "Resume automatic updates" button resumes automatic mode as
 * the HA user, and nobody else can press it for them; invalid input ignored with a log line.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import mqtt, { type MqttClient } from "mqtt";
import pino from "pino";
import { Writable } from "node:stream";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AutomaticPause } from "../../rollout/automatic-pause.js";
import { StorageFile } from "../../hub/storage-file.js";
import { AutomaticPauseState } from "../../protocol/automatic.js";
import { AuditEvent, buildPreviewSummary, Command, Topics, type Compartment, type FleetExpected, type HostInfo } from "../../protocol/index.js";
import { HomeAssistantBridge, type InstallRequested } from "../../ha/bridge.js";
import { BROKER_KINDS, startTestBroker, type TestBroker } from "../support/brokers.js";

const topics = new Topics();
const now = () => new Date();
const HEAD = "b".repeat(40);

function info(host: string): HostInfo {
  return {
    host,
    hostname: host,
    os: "nixos",
    agentVersion: "0.1.0",
    branch: "main",
    commit: "a".repeat(40),
    lockHash: "1".repeat(64),
    tags: [],
    priority: 100,
    canary: false,
    hold: false,
    startedAt: now().toISOString(),
    updatedAt: now().toISOString(),
  };
}
const compartment = (status: Compartment["status"]): Compartment => ({ status, summary: status, checkedAt: now().toISOString() });
const expected: FleetExpected = {
  repo: "example/fleet",
  branch: "main",
  headCommit: HEAD,
  lockHash: "1".repeat(64),
  pendingUpdate: null,
  updatedAt: now().toISOString(),
};

interface Received {
  topic: string;
  payload: string;
  retain: boolean;
}

/** Collects messages; `next` waits for the first (new) message matching a predicate. */
class Inbox {
  readonly messages: Received[] = [];
  private waiters: { pred: (m: Received) => boolean; resolve: (m: Received) => void }[] = [];
  constructor(client: MqttClient) {
    client.on("message", (topic, payload, packet) => {
      const m = { topic, payload: payload.toString("utf8"), retain: packet.retain };
      this.messages.push(m);
      this.waiters = this.waiters.filter((w) => (w.pred(m) ? (w.resolve(m), false) : true));
    });
  }
  next(pred: (m: Received) => boolean, timeoutMs = 5000): Promise<Received> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("timed out waiting for an MQTT message")), timeoutMs);
      this.waiters.push({ pred, resolve: (m) => (clearTimeout(timer), resolve(m)) });
    });
  }
  /** First message already received or arriving later. */
  find(pred: (m: Received) => boolean, timeoutMs = 5000): Promise<Received> {
    const seen = this.messages.find(pred);
    return seen ? Promise.resolve(seen) : this.next(pred, timeoutMs);
  }
}

const quiet = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once `cond` holds (checked on a short interval; the conditions here follow log lines). */
async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !cond(); await quiet(20)) {
    if (Date.now() > deadline) throw new Error("timed out waiting for a condition");
  }
}

describe.each(BROKER_KINDS)("Home Assistant bridge on %s", (kind) => {
  let broker: TestBroker;
  let hub: MqttClient;
  let ha: MqttClient;
  let agents: MqttClient[] = [];
  let bridge: HomeAssistantBridge;
  let haInbox: Inbox;
  let haUser: string;
  let automatic: AutomaticPause;
  let pauseDir: string;
  const audits: AuditEvent[] = [];
  const logLines: string[] = [];
  const installs: InstallRequested[] = [];

  async function connect(role: "hub" | "operator" | "agent", name: string): Promise<MqttClient> {
    const c = await broker.credentials(role, name);
    return mqtt.connectAsync(broker.url, { ...c, clientId: c.clientId ?? `${role}-${name}-${Math.random().toString(16).slice(2)}`, reconnectPeriod: 0 });
  }

  async function seedHost(host: string): Promise<MqttClient> {
    const agent = await connect("agent", host);
    agents.push(agent);
    await agent.publishAsync(topics.availability(host), "online", { qos: 1, retain: true });
    await agent.publishAsync(topics.compartment(host, "git"), JSON.stringify(compartment("ok")), { qos: 1, retain: true });
    await agent.publishAsync(topics.compartment(host, "system"), JSON.stringify(compartment("failed")), { qos: 1, retain: true });
    await agent.publishAsync(topics.info(host), JSON.stringify(info(host)), { qos: 1, retain: true });
    return agent;
  }

  beforeAll(async () => {
    broker = await startTestBroker({ kind });
    hub = await connect("hub", "hub");
    await hub.publishAsync(topics.hubAvailability(), "online", { qos: 1, retain: true });
    await hub.publishAsync(topics.expected(), JSON.stringify(expected), { qos: 1, retain: true });
    await seedHost("web-1");
    await seedHost("db-1");

    const logStream = new Writable({ write: (chunk, _enc, cb) => (logLines.push(String(chunk)), cb()) });
    // Automatic mode's pause as the hub has it: stored in a data dir, published retained on the broker.
    pauseDir = mkdtempSync(join(tmpdir(), "lockstep-ha-pause-"));
    automatic = new AutomaticPause({
      file: join(pauseDir, "automatic.json"),
      store: new StorageFile({ path: join(pauseDir, "automatic.json"), onFault: () => undefined }),
      log: pino({ level: "silent" }),
      publish: async (state) => void (await hub.publishAsync(topics.automaticPause(), JSON.stringify(state), { qos: 1, retain: true })),
      audit: (e) => void audits.push(e),
    });
    await automatic.start();
    haUser = (await broker.credentials("operator", "home-assistant")).username;
    bridge = new HomeAssistantBridge({ client: hub, topics, logger: pino({ level: "info" }, logStream), birthDelayMs: () => 50, automatic, haUser });
    bridge.on("install-requested", (e) => installs.push(e));
    await bridge.start();

    // Home Assistant's side, with operator credentials (HA writes actions and its birth message).
    ha = await connect("operator", "home-assistant");
    haInbox = new Inbox(ha);
    await ha.subscribeAsync([`homeassistant/device/+/config`, topics.haUpdate("+"), topics.haState("+")], { qos: 1 });
  });

  afterAll(async () => {
    await bridge?.stop();
    automatic?.stop();
    for (const c of [hub, ha, ...agents]) await c?.endAsync();
    await broker?.stop();
    if (pauseDir) rmSync(pauseDir, { recursive: true, force: true });
  });

  it("publishes a retained discovery message per host, and the derived states", async () => {
    for (const host of ["web-1", "db-1"]) {
      const m = await haInbox.find((x) => x.topic === topics.haDiscovery(host) && x.payload.length > 0);
      const payload = JSON.parse(m.payload) as { dev: { ids: string[] }; o: { name: string }; cmps: Record<string, { p: string }> };
      expect(payload.dev.ids).toEqual([`lockstep_${host}`]);
      expect(payload.o.name).toBe("Lockstep");
      expect(Object.keys(payload.cmps).sort()).toEqual(
        ["agent", "git", "lock", "lock_age", "online", "problem", "pull_button", "rollback_button", "switch_button", "system", "test_button", "tests", "update"].sort(),
      );
      // Retained info may arrive before the compartments: the state settles on "problem" once they do.
      const state = await haInbox.find((x) => x.topic === topics.haState(host) && JSON.parse(x.payload).problem === "ON");
      expect(JSON.parse(state.payload)).toMatchObject({ failed: ["system"], worst: "failed" });
      await haInbox.find((x) => x.topic === topics.haUpdate(host));
    }
    expect(bridge.knownHosts()).toEqual(["db-1", "web-1"]);
  });

  it("republishes discovery when Home Assistant's birth message arrives", async () => {
    // Everything (discovery + two states, per host) comes again, as live publishes.
    const wanted = ["web-1", "db-1"].flatMap((h) => [topics.haDiscovery(h), topics.haUpdate(h), topics.haState(h)]);
    const republished = wanted.map((t) => haInbox.next((m) => m.topic === t && m.payload.length > 0));
    await ha.publishAsync(topics.haStatus(), "online", { qos: 1 });
    for (const m of await Promise.all(republished)) {
      expect(m.retain).toBe(false); // a live publish, not the broker replaying the retained copy
    }
    // "offline" (HA's last will) triggers nothing.
    const count = haInbox.messages.length;
    await ha.publishAsync(topics.haStatus(), "offline", { qos: 1 });
    await quiet(200);
    expect(haInbox.messages.slice(count)).toEqual([]);
  });

  it("turns switch / test / rollback / pull into valid Commands for that host", async () => {
    const agent = agents[0]!;
    const commands = new Inbox(agent);
    await agent.subscribeAsync(topics.commands("web-1"), { qos: 1 });
    // Each command is recorded on fleet/events by the bridge (the broker leaves the hub's commands out).
    const events = new Inbox(ha);
    await ha.subscribeAsync(topics.events(), { qos: 1 });
    for (const op of ["switch", "test", "rollback", "pull"] as const) {
      const got = commands.next((m) => m.topic === topics.commands("web-1") && JSON.parse(m.payload).op === op);
      await ha.publishAsync(topics.actions("web-1"), op, { qos: 1 });
      const command = Command.parse(JSON.parse((await got).payload));
      const audited = await events.next((m) => (JSON.parse(m.payload) as AuditEvent).details?.commandId === command.id);
      expect(AuditEvent.parse(JSON.parse(audited.payload))).toMatchObject({ actor: "home-assistant", action: "command.sent", target: "web-1", details: { op } });
      expect(command.requestedBy).toBe("home-assistant");
      expect(Date.parse(command.expiresAt)).toBeGreaterThan(Date.parse(command.issuedAt));
      if (command.op === "pull") expect(command.args.commit).toBe(HEAD);
    }
  });

  it("emits install-requested for the update entity's Install, and ignores invalid actions with a log line", async () => {
    await ha.publishAsync(topics.actions("db-1"), "install", { qos: 1 });
    await ha.publishAsync(topics.actions("db-1"), "format-disk", { qos: 1 });
    await ha.publishAsync(topics.actions("ghost"), "switch", { qos: 1 });
    await quiet(300);
    expect(installs).toEqual([{ host: "db-1" }]);
    expect(logLines.some((l) => l.includes("ignoring unknown home assistant action"))).toBe(true);
    expect(logLines.some((l) => l.includes("unknown host") && l.includes("ghost"))).toBe(true);
  });

  it("ignores an invalid info payload without losing the host", async () => {
    const agent = agents[1]!;
    await agent.publishAsync(topics.info("db-1"), "{not json", { qos: 1, retain: false });
    await quiet(200);
    expect(bridge.knownHosts()).toContain("db-1");
    expect(logLines.some((l) => l.includes("ignoring invalid host info payload"))).toBe(true);
  });

  it("the update entity's release summary is the pending PR's preview summary once it is published, and links the PR", async () => {
    const head = "c".repeat(40);
    const pendingUpdate = { number: 17, title: "flake.lock: update", url: "https://github.com/example/fleet/pull/17", headSha: head, headBranch: "update", openedAt: now().toISOString(), lockDiff: { added: [], removed: [], updated: [] }, ci: { state: "success" as const }, superseded: [] };
    await hub.publishAsync(topics.expected(), JSON.stringify({ ...expected, pendingUpdate }), { qos: 1, retain: true });
    const at = now().toISOString();
    const summary = buildPreviewSummary(17, head, ["web-1", "db-1"], [
      { pr: 17, host: "web-1", headSha: head, outcome: "affected", summary: "", affected: true, builds: true, packages: [{ name: "hello", old: ["2.12"], new: ["2.13"] }], reboot: null, units: null, builtOn: "web-1", startedAt: at, finishedAt: at },
    ]);
    await hub.publishAsync(topics.previewSummary(17), JSON.stringify(summary), { qos: 1, retain: true });
    const m = await haInbox.find((x) => x.topic === topics.haUpdate("web-1") && (JSON.parse(x.payload) as { release_summary?: string }).release_summary?.includes("hello 2.12 → 2.13") === true);
    expect(JSON.parse(m.payload)).toMatchObject({ release_summary: "PR #17: affects 1 of 2 hosts · 1 not previewed yet · built on 1 of 1 · hello 2.12 → 2.13", release_url: pendingUpdate.url });
    // Cleared (the PR is no longer pending): back to the lock diff.
    await hub.publishAsync(topics.previewSummary(17), "", { qos: 1, retain: true });
    await haInbox.find((x) => x.topic === topics.haUpdate("web-1") && (JSON.parse(x.payload) as { release_summary?: string }).release_summary === "PR #17: no input changes");
    await hub.publishAsync(topics.expected(), JSON.stringify(expected), { qos: 1, retain: true });
  });

  it("publishes the fleet device: automatic mode's paused sensor and its resume button on the HA user's topic", async () => {
    const m = await haInbox.find((x) => x.topic === topics.haFleetDiscovery() && x.payload.length > 0);
    const payload = JSON.parse(m.payload) as { dev: { ids: string[]; name: string }; cmps: Record<string, Record<string, unknown>> };
    expect(payload.dev).toMatchObject({ ids: ["lockstep-fleet"], name: "Lockstep fleet" });
    expect(payload.cmps.automatic_paused).toMatchObject({ p: "binary_sensor", state_topic: topics.automaticPause() });
    expect(payload.cmps.resume_automatic).toMatchObject({ p: "button", command_topic: topics.hubActions(haUser), payload_press: "resume-automatic" });
    // HA's birth message brings it again.
    const again = haInbox.next((x) => x.topic === topics.haFleetDiscovery() && !x.retain);
    await ha.publishAsync(topics.haStatus(), "online", { qos: 1 });
    await again;
  });

  it("the resume button, pressed as the HA user, resumes automatic mode (audited with that user); an agent's or another user's press is denied", async () => {
    const failed = { id: "r-broken", commit: "c".repeat(40), state: "rolled-back" as const, summary: "rolled back: gamma failed", requestedBy: "weekly", prNumber: 21, phases: [], hosts: {}, counts: { total: 3, succeeded: 0, failed: 1, skipped: 0 }, createdAt: now().toISOString(), updatedAt: now().toISOString() };
    const paused = haInbox.next((x) => x.topic === topics.automaticPause() && AutomaticPauseState.parse(JSON.parse(x.payload)).paused);
    await ha.subscribeAsync(topics.automaticPause(), { qos: 1 });
    automatic.rolloutEnded(failed);
    expect(AutomaticPauseState.parse(JSON.parse((await paused).payload))).toMatchObject({ paused: true, rolloutId: "r-broken", prNumber: 21 });

    // A hub-role spy sees every press that gets through the broker's ACL, in the order the broker took them.
    const spy = await connect("hub", "spy");
    const spyInbox = new Inbox(spy);
    await spy.subscribeAsync(topics.hubActions("+"), { qos: 1 });
    // An agent can press neither as itself nor as the HA user; a viewer not at all. The broker has
    // handled each publish once it acknowledged it, before the HA user's press below is even sent.
    const agent = agents[0]!;
    await agent.publishAsync(topics.hubActions("web-1"), "resume-automatic", { qos: 1 });
    await agent.publishAsync(topics.hubActions(haUser), "resume-automatic", { qos: 1 });
    const viewerCreds = await broker.credentials("viewer", "ha-viewer");
    const viewer = await mqtt.connectAsync(broker.url, { ...viewerCreds, reconnectPeriod: 0 });
    await viewer.publishAsync(topics.hubActions(viewerCreds.username), "resume-automatic", { qos: 1 });
    await viewer.endAsync();

    const resumed = haInbox.next((x) => x.topic === topics.automaticPause() && !AutomaticPauseState.parse(JSON.parse(x.payload)).paused);
    await ha.publishAsync(topics.hubActions(haUser), "resume-automatic", { qos: 1 });
    expect(AutomaticPauseState.parse(JSON.parse((await resumed).payload))).toMatchObject({ paused: false, resumedBy: `mqtt:${haUser}` });
    await spyInbox.find((x) => x.topic === topics.hubActions(haUser));
    expect(spyInbox.messages.map((x) => x.topic)).toEqual([topics.hubActions(haUser)]);
    expect(audits.filter((e) => e.action === "automatic.resumed")).toEqual([expect.objectContaining({ actor: `mqtt:${haUser}`, details: expect.objectContaining({ rolloutId: "r-broken", prNumber: 21 }) })]);
    await spy.endAsync();
  });

  it("ignores a hub action that is no known word, with a log line", async () => {
    automatic.rolloutEnded({ id: "r-broken-2", commit: "c".repeat(40), state: "halted", summary: "halted", requestedBy: "weekly", phases: [], hosts: {}, counts: { total: 1, succeeded: 0, failed: 1, skipped: 0 }, createdAt: now().toISOString(), updatedAt: now().toISOString() });
    expect(automatic.paused).toBe(true);
    await ha.publishAsync(topics.hubActions(haUser), "resume-everything", { qos: 1 });
    await ha.publishAsync(topics.hubActions(haUser), "x".repeat(500), { qos: 1 });
    await until(() => logLines.filter((l) => l.includes("ignoring a hub action")).length >= 2);
    expect(automatic.paused).toBe(true);
    automatic.resume("test cleanup");
  });

  it("removes the HA device when the host's info is cleared", async () => {
    const removed = haInbox.next((m) => m.topic === topics.haDiscovery("db-1") && m.payload === "");
    await agents[1]!.publishAsync(topics.info("db-1"), "", { qos: 1, retain: true });
    await removed;
    expect(bridge.knownHosts()).toEqual(["web-1"]);
    // A fresh subscriber (HA restarting) gets no retained discovery for db-1, but still for web-1.
    const fresh = await connect("operator", "ha-restarted");
    const inbox = new Inbox(fresh);
    await fresh.subscribeAsync(`homeassistant/device/+/config`, { qos: 1 });
    await inbox.find((m) => m.topic === topics.haDiscovery("web-1"));
    await quiet(200);
    expect(inbox.messages.some((m) => m.topic === topics.haDiscovery("db-1"))).toBe(false);
    await fresh.endAsync();
  });
});
