/**
 * The hub against an external broker (a real Mosquitto configured from Lockstep's credential store)
 * instead of its embedded Aedes: it connects as a hub-role client, announces itself on
 * hub/availability there, runs Node-RED and the shipped flows against it, and tells the fleet page
 * where the broker's WebSocket is. Needs `npm run build` and the mosquitto binary.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHubProcess, type HubProcess } from "../demo/hub-process.js";
import { startTestBroker, type TestBroker } from "../support/brokers.js";

describe("lockstep hub with an external Mosquitto", () => {
  let dir: string;
  let broker: TestBroker;
  let hub: HubProcess;
  let hubCreds: { username: string; password: string };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "lockstep-hub-ext-"));
    broker = await startTestBroker({ kind: "mosquitto" });
    hubCreds = await broker.credentials("hub", "external-hub");
    writeFileSync(join(dir, "broker-password"), hubCreds.password + "\n", { mode: 0o600 });
    const config = {
      pageMqttUrl: "wss://mqtt.example.org/mqtt",
      homeAssistant: { enabled: true },
      broker: { external: { url: broker.url, username: hubCreds.username, passwordFile: join(dir, "broker-password") } },
    };
    writeFileSync(join(dir, "hub.json"), JSON.stringify(config));
    hub = await startHubProcess({ dataDir: join(dir, "data"), configFile: join(dir, "hub.json") });
  });

  afterAll(async () => {
    await hub?.stop();
    await broker?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("says it uses the external broker and creates its own editor users", () => {
    expect(hub.output()).toContain(`MQTT:              ${broker.url} (external broker)`);
    expect(hub.output()).toContain("page connects to: wss://mqtt.example.org/mqtt");
    expect(hub.operatorPassword).toBeDefined();
    expect(readFileSync(join(dir, "data", "credentials.json"), "utf8")).not.toContain(hub.operatorPassword!);
  });

  it("announces itself on the external broker, and Node-RED's fleet node is connected there", async () => {
    const client = await mqtt.connectAsync(broker.url, { ...hubCreds, clientId: "ext-test-observer", reconnectPeriod: 0 });
    try {
      const online = new Promise<string>((resolve) => client.on("message", (_t, p) => resolve(p.toString())));
      await client.subscribeAsync("lockstep/v1/hub/availability");
      expect(await online).toBe("online");
    } finally {
      await client.endAsync();
    }
    expect(hub.output()).toMatch(/fleet client subscribed/);
    // No error-level line; the GitHub node only warns that no repository is configured (none is here).
    const lines = hub.output().split("\n");
    expect(lines.filter((l) => l.includes('"level":50'))).toEqual([]);
    expect(lines.some((l) => l.includes('"level":40') && l.includes("no GitHub repository configured"))).toBe(true);
  });

  it("points the fleet page at the external broker's WebSocket", async () => {
    const config = (await (await fetch(`${hub.baseUrl}/config.json`)).json()) as { mqttWsUrl: string | null };
    expect(config.mqttWsUrl).toBe("wss://mqtt.example.org/mqtt");
  });

  it("says offline on the external broker when it stops", async () => {
    const client = await mqtt.connectAsync(broker.url, { ...hubCreds, clientId: "ext-test-observer-2", reconnectPeriod: 0 });
    try {
      const values: string[] = [];
      client.on("message", (_t, p) => values.push(p.toString()));
      await client.subscribeAsync("lockstep/v1/hub/availability");
      expect(await hub.stop()).toBe(0);
      const deadline = Date.now() + 5000;
      while (values.at(-1) !== "offline" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(values.at(-1)).toBe("offline");
    } finally {
      await client.endAsync();
    }
  });
});
