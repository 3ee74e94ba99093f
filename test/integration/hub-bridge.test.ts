/**
 * The bridge between the embedded broker (Aedes, with its ACLs) and a real Mosquitto as the
 * upstream (Home Assistant's broker): retained state and discovery go out and stay retained,
 * deletions follow, HA's actions and birth come in, commands never do, and an upstream restart
 * is survived with the state republished; and the hub process started with LOCKSTEP_BRIDGE_*.
 * Needs the mosquitto binary and (for the hub process) `npm run build`.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Topics } from "../../protocol/index.js";
import { MqttBridge } from "../../hub/upstream-bridge.js";
import { startTestBroker, type TestBroker } from "../support/brokers.js";
import { freePort } from "../support/mosquitto.js";
import { startHubProcess, type HubProcess } from "../demo/hub-process.js";

const topics = new Topics();
const HOST = "web-1";

async function waitFor<T>(what: string, get: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = get();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A client that records every message (topic → list of {payload, retain}). */
async function recorder(url: string, creds: { username: string; password: string }, filters: string[]) {
  const seen = new Map<string, Array<{ payload: string; retain: boolean }>>();
  const client = mqtt.connect(url, { ...creds, clientId: `rec-${Math.random().toString(16).slice(2)}`, reconnectPeriod: 200 });
  client.on("message", (topic, payload, packet) => {
    const list = seen.get(topic) ?? [];
    list.push({ payload: payload.toString("utf8"), retain: packet.retain });
    seen.set(topic, list);
  });
  await new Promise<void>((resolve) => client.once("connect", () => resolve()));
  await client.subscribeAsync(filters, { qos: 1 });
  return { client, seen, last: (topic: string) => seen.get(topic)?.at(-1) };
}

/** The retained value of a topic as a fresh subscriber sees it (undefined: nothing retained). */
async function retainedValue(url: string, creds: { username: string; password: string }, topic: string): Promise<string | undefined> {
  const client = await mqtt.connectAsync(url, { ...creds, clientId: `late-${Math.random().toString(16).slice(2)}`, reconnectPeriod: 0 });
  try {
    let value: string | undefined;
    client.on("message", (t, payload, packet) => {
      if (t === topic && packet.retain) value = payload.toString("utf8");
    });
    await client.subscribeAsync(topic, { qos: 1 });
    await new Promise((r) => setTimeout(r, 300));
    return value;
  } finally {
    await client.endAsync();
  }
}

describe("MqttBridge: embedded broker → real Mosquitto", () => {
  let local: TestBroker;
  let upstream: TestBroker;
  let bridge: MqttBridge;
  let agent: MqttClient;
  let upHub: { username: string; password: string };
  let haCreds: { username: string; password: string };
  let localHub: { username: string; password: string };

  beforeAll(async () => {
    local = await startTestBroker({ kind: "aedes" });
    upstream = await startTestBroker({ kind: "mosquitto" });
    localHub = await local.credentials("hub", "bridge");
    upHub = await upstream.credentials("hub", "bridge");
    haCreds = await upstream.credentials("operator", "home-assistant");
    const agentCreds = await local.credentials("agent", HOST);
    agent = await mqtt.connectAsync(local.url, { ...agentCreds, reconnectPeriod: 0 });
    bridge = new MqttBridge({
      local: { url: local.url, ...localHub },
      upstream: { url: upstream.url, ...upHub, clientId: "lockstep-bridge-test" },
      topics,
      logger: pino({ level: process.env.LOCKSTEP_TEST_LOG_LEVEL ?? "silent" }),
      backoff: { initialMs: 100, maxMs: 500 },
    });
    await bridge.start();
    await waitFor("the upstream connection", () => (bridge.upstreamConnected ? true : undefined));
  });

  /** Poll the upstream's retained value of `topic` until `ok` holds (or 8 s pass); returns the last value. */
  async function untilRetained(topic: string, ok: (value: string | undefined) => boolean): Promise<string | undefined> {
    const deadline = Date.now() + 8000;
    let value = await retainedValue(upstream.url, haCreds, topic);
    while (!ok(value) && Date.now() < deadline) value = await retainedValue(upstream.url, haCreds, topic);
    return value;
  }

  afterAll(async () => {
    await bridge?.stop();
    await agent?.endAsync();
    await upstream?.stop();
    await local?.stop();
  });

  it("republishes retained compartment, info and discovery upstream, retained for late subscribers too", async () => {
    const ha = await recorder(upstream.url, haCreds, ["lockstep/v1/#", "homeassistant/#"]);
    try {
      const compartment = JSON.stringify({ status: "ok", summary: "at head", checkedAt: new Date().toISOString() });
      await agent.publishAsync(topics.compartment(HOST, "git"), compartment, { qos: 1, retain: true });
      await agent.publishAsync(topics.info(HOST), JSON.stringify({ hostname: HOST }), { qos: 1, retain: true });
      // Discovery is published by the hub user.
      const hub = await mqtt.connectAsync(local.url, { ...localHub, clientId: "local-hub", reconnectPeriod: 0 });
      await hub.publishAsync(topics.haDiscovery(HOST), JSON.stringify({ dev: { ids: [`lockstep_${HOST}`] } }), { qos: 1, retain: true });
      await hub.publishAsync("homeassistant/device/someone_else/config", "{}", { qos: 1, retain: true });
      await hub.endAsync();

      const seen = await waitFor("the discovery upstream", () => ha.last(topics.haDiscovery(HOST)));
      expect(seen.payload).toContain(`lockstep_${HOST}`);
      expect(ha.last(topics.compartment(HOST, "git"))?.payload).toBe(compartment);
      expect(await retainedValue(upstream.url, haCreds, topics.compartment(HOST, "git"))).toBe(compartment);
      expect(await retainedValue(upstream.url, haCreds, topics.info(HOST))).toContain(HOST);
      expect(await retainedValue(upstream.url, haCreds, topics.haDiscovery(HOST))).toContain(`lockstep_${HOST}`);
      expect(await retainedValue(upstream.url, haCreds, "homeassistant/device/someone_else/config")).toBeUndefined();
    } finally {
      await ha.client.endAsync();
    }
  });

  it("propagates a retained deletion", async () => {
    const topic = topics.compartment(HOST, "tests");
    await agent.publishAsync(topic, JSON.stringify({ status: "failed", summary: "x", checkedAt: new Date().toISOString() }), { qos: 1, retain: true });
    expect(await untilRetained(topic, (v) => v !== undefined)).toContain("failed");
    await agent.publishAsync(topic, "", { qos: 1, retain: true });
    expect(await untilRetained(topic, (v) => v === undefined)).toBeUndefined();
  });

  it("brings Home Assistant's actions and birth message in, but never a command", async () => {
    const hub = await recorder(local.url, localHub, [`${topics.root}/hosts/+/actions`, `${topics.root}/hosts/+/commands`, topics.haStatus()]);
    const ha = await mqtt.connectAsync(upstream.url, { ...haCreds, clientId: "home-assistant", reconnectPeriod: 0 });
    try {
      // HA's operator role may publish commands on Mosquitto too: the bridge must still not carry them.
      await ha.publishAsync(topics.commands(HOST), JSON.stringify({ id: "c1", op: "switch" }), { qos: 1 });
      await ha.publishAsync(topics.actions(HOST), "switch", { qos: 1 });
      await ha.publishAsync(topics.haStatus(), "online", { qos: 1 });
      const action = await waitFor("the action locally", () => hub.last(topics.actions(HOST)));
      expect(action).toEqual({ payload: "switch", retain: false });
      expect((await waitFor("HA's birth locally", () => hub.last(topics.haStatus()))).payload).toBe("online");
      // The command went first on the same connection; give it time anyway.
      await new Promise((r) => setTimeout(r, 300));
      expect(hub.seen.get(topics.commands(HOST))).toBeUndefined();
      expect(bridge.stats.in).toBeGreaterThanOrEqual(2);
    } finally {
      await ha.endAsync();
      await hub.client.endAsync();
    }
  });

  it("does not send actions it brought in back upstream", async () => {
    const ha = await recorder(upstream.url, haCreds, [topics.actions("web-2")]);
    try {
      const sender = await mqtt.connectAsync(upstream.url, { ...haCreds, clientId: "home-assistant-2", reconnectPeriod: 0 });
      await sender.publishAsync(topics.actions("web-2"), "pull", { qos: 1 });
      await sender.endAsync();
      await waitFor("the action upstream", () => ha.last(topics.actions("web-2")));
      await new Promise((r) => setTimeout(r, 300));
      expect(ha.seen.get(topics.actions("web-2"))).toHaveLength(1);
    } finally {
      await ha.client.endAsync();
    }
  });

  it("reconnects after an upstream restart and republishes the retained state", async () => {
    const topic = topics.compartment(HOST, "system");
    const current = JSON.stringify({ status: "ok", summary: "current", checkedAt: new Date().toISOString() });
    await agent.publishAsync(topic, current, { qos: 1, retain: true });
    expect(await untilRetained(topic, (v) => v === current)).toBe(current);
    // Make the upstream's copy stale behind the bridge's back; Mosquitto keeps it across the restart.
    const other = await mqtt.connectAsync(upstream.url, { ...upHub, clientId: "stale-writer", reconnectPeriod: 0 });
    await other.publishAsync(topic, "stale", { qos: 1, retain: true });
    await other.endAsync();
    expect(await untilRetained(topic, (v) => v === "stale")).toBe("stale");

    await upstream.restart();
    await waitFor("the bridge to reconnect", () => (bridge.upstreamConnected ? true : undefined));
    // The reconnect re-subscribed locally; the embedded broker's retained replay went out again.
    expect(await untilRetained(topic, (v) => v === current)).toBe(current);
    expect(await untilRetained(topics.haDiscovery(HOST), (v) => v !== undefined)).toContain(`lockstep_${HOST}`);

    // And live messages flow again.
    const next = JSON.stringify({ status: "outdated", summary: "after restart", checkedAt: new Date().toISOString() });
    await agent.publishAsync(topic, next, { qos: 1, retain: true });
    expect(await untilRetained(topic, (v) => v === next)).toBe(next);
  });

  it("starts, and keeps the local fleet going, while the upstream is unreachable", async () => {
    const nowhere = `mqtt://127.0.0.1:${await freePort()}`;
    const lonely = new MqttBridge({
      local: { url: local.url, ...localHub },
      upstream: { url: nowhere, username: "x", password: "y" },
      topics,
      logger: pino({ level: "silent" }),
      backoff: { initialMs: 50, maxMs: 200 },
    });
    const started = Date.now();
    await lonely.start();
    expect(Date.now() - started).toBeLessThan(2000);
    const watcher = await recorder(local.url, localHub, [topics.compartment(HOST, "agent")]);
    try {
      await agent.publishAsync(topics.compartment(HOST, "agent"), JSON.stringify({ status: "ok", summary: "local", checkedAt: new Date().toISOString() }), { qos: 1, retain: true });
      await waitFor("the local delivery", () => watcher.last(topics.compartment(HOST, "agent")));
      await waitFor("the bridge to drop it", () => (lonely.stats.droppedOut > 0 ? true : undefined));
      expect(lonely.upstreamConnected).toBe(false);
    } finally {
      await watcher.client.endAsync();
      await lonely.stop();
    }
  });
});

describe("lockstep hub with a bridge to Mosquitto", () => {
  let dir: string;
  let upstream: TestBroker;
  let hub: HubProcess;
  let creds: { username: string; password: string };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "lockstep-hub-bridge-"));
    upstream = await startTestBroker({ kind: "mosquitto" });
    creds = await upstream.credentials("hub", "bridge");
    writeFileSync(join(dir, "bridge-password"), creds.password + "\n", { mode: 0o600 });
    hub = await startHubProcess({
      dataDir: join(dir, "data"),
      env: { LOCKSTEP_BRIDGE_URL: upstream.url, LOCKSTEP_BRIDGE_USERNAME: creds.username, LOCKSTEP_BRIDGE_PASSWORD_FILE: join(dir, "bridge-password") },
    });
  });

  afterAll(async () => {
    await hub?.stop();
    await upstream?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("says where it bridges to, never prints the password, and is online on the upstream broker", async () => {
    expect(hub.output()).toContain(`bridged to:        ${upstream.url} (upstream broker)`);
    const observer = await recorder(upstream.url, creds, [topics.hubAvailability()]);
    try {
      await waitFor("hub availability upstream", () => (observer.last(topics.hubAvailability())?.payload === "online" ? true : undefined));
      expect(await retainedValue(upstream.url, creds, topics.hubAvailability())).toBe("online");
      expect(hub.output()).not.toContain(creds.password);
      expect(await hub.stop()).toBe(0);
      await waitFor("offline upstream after the hub stopped", () => (observer.last(topics.hubAvailability())?.payload === "offline" ? true : undefined));
      expect(hub.output()).not.toContain(creds.password);
    } finally {
      await observer.client.endAsync();
    }
  });
});
