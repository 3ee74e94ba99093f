/**
 * Login floods against a running hub process (MQTT CONNECT, API Basic auth, the editor's login):
 * before the backoff, 500 wrong passwords cost the hub 17 s of CPU in scrypt and the right
 * password worked straight after; the editor's own lockout locked the operator out (issue 14).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { CredentialStore } from "../../../broker/credentials.js";
import type { AuditEvent } from "../../../protocol/index.js";
import { procCpuSeconds } from "../../bench/fleet.js";
import { startHubProcess } from "../../demo/hub-process.js";
import { Checks, type FaultRow } from "../row.js";

const OPERATOR = { name: "flood-op", password: "the-right-operator-password" };
const ATTACKER = "127.0.0.2";
const basic = (name: string, password: string) => `Basic ${Buffer.from(`${name}:${password}`).toString("base64")}`;

/** An HTTP request from a chosen local address (127.0.0.x are all this machine). */
function send(url: string, opts: { method?: string; from: string; headers?: Record<string, string>; body?: string }): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? "GET", headers: opts.headers, localAddress: opts.from }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end(opts.body);
  });
}

/** CONNACK code of one MQTT login from a chosen local address (0: accepted). */
function connack(port: number, username: string, password: string, from: string): Promise<number> {
  return new Promise((resolve) => {
    const client = new mqtt.MqttClient(() => createConnection({ host: "127.0.0.1", port, localAddress: from }), { username, password, reconnectPeriod: 0, protocolVersion: 4 });
    client.once("connect", () => client.end(true, () => resolve(0)));
    client.once("error", (err) => client.end(true, () => resolve((err as { code?: number }).code ?? -1)));
  });
}

const count = (xs: number[]) => [...new Set(xs)].map((x) => `${x}×${xs.filter((y) => y === x).length}`).join(" ");

export const loginFlood: FaultRow = {
  name: "login-floods",
  scenario: "500 wrong passwords for the operator from one address: 200 over MQTT, 200 on the API, 100 on the editor's login",
  expected: "after a few failures refused without a password check (CONNACK 5, 429; at most 10 checks per channel); the hub spends under 5 s of CPU; the right password works at once from another address; the log gets a few entries per channel, not 500",
  speed: "fast",
  async run(ctx) {
    const c = new Checks();
    const dataDir = mkdtempSync(join(tmpdir(), "lockstep-faults-logins-"));
    ctx.cleanup(() => rmSync(dataDir, { recursive: true, force: true }));
    const store = await CredentialStore.open(join(dataDir, "credentials.json"));
    await store.add(OPERATOR.name, "operator", OPERATOR.password);
    const hub = await startHubProcess({ dataDir, env: { LOCKSTEP_HA_ENABLED: "false" } });
    ctx.cleanup(() => hub.stop("SIGKILL"));
    const pid = hub.child.pid!;
    const port = Number(new URL(hub.mqttUrl).port);

    const cpu0 = procCpuSeconds(pid);
    const t0 = performance.now();
    const mqttCodes: number[] = [];
    for (let i = 0; i < 200; i++) mqttCodes.push(await connack(port, OPERATOR.name, `guess-${i}`, ATTACKER));
    const apiCodes: number[] = [];
    for (let i = 0; i < 200; i++) apiCodes.push(await send(`${hub.baseUrl}/api/whoami`, { from: ATTACKER, headers: { authorization: basic(OPERATOR.name, `guess-${i}`) } }));
    const editorCodes: number[] = [];
    const form = (password: string) => new URLSearchParams({ client_id: "node-red-editor", grant_type: "password", scope: "*", username: OPERATOR.name, password }).toString();
    const editor = (password: string, from: string) => send(`${hub.baseUrl}/admin/auth/token`, { method: "POST", from, headers: { "content-type": "application/x-www-form-urlencoded" }, body: form(password) });
    for (let i = 0; i < 100; i++) editorCodes.push(await editor(`guess-${i}`, ATTACKER));
    const cpu = procCpuSeconds(pid) - cpu0;
    c.see(`MQTT CONNACK ${count(mqttCodes)}; API ${count(apiCodes)}; editor ${count(editorCodes)}`);
    c.see(`hub CPU ${cpu.toFixed(1)} s over ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    // A refusal while backing off (CONNACK 5, 429) costs no password check; the wait doubles, so
    // only a handful of the flood's guesses are ever checked.
    const checked = (codes: number[], backoff: number) => codes.filter((x) => x !== backoff).length;
    c.expect(checked(mqttCodes, 5) <= 10, "more than 10 MQTT guesses had their password checked");
    c.expect(checked(apiCodes, 429) <= 10, "more than 10 API guesses had their password checked");
    c.expect(checked(editorCodes, 429) <= 10, "more than 10 editor guesses had their password checked");
    c.expect(cpu < 5, "the flood cost the hub 5 s of CPU or more");

    const rightMqtt = await connack(port, OPERATOR.name, OPERATOR.password, "127.0.0.1");
    const rightApi = await send(`${hub.baseUrl}/api/whoami`, { from: "127.0.0.1", headers: { authorization: basic(OPERATOR.name, OPERATOR.password) } });
    const rightEditor = await editor(OPERATOR.password, "127.0.0.1");
    c.see(`right password from 127.0.0.1: MQTT ${rightMqtt}, API ${rightApi}, editor ${rightEditor}`);
    c.expect(rightMqtt === 0 && rightApi === 200 && rightEditor === 200, "the operator was locked out");

    const res = await fetch(`${hub.baseUrl}/api/audit?limit=500`, { headers: { authorization: basic(OPERATOR.name, OPERATOR.password) } });
    const events = ((await res.json()) as { events: AuditEvent[] }).events.filter((e) => e.action === "login.refused");
    const perChannel = ["mqtt", "api", "editor"].map((ch) => `${ch} ${events.filter((e) => e.details?.channel === ch).length}`);
    c.see(`audited login.refused: ${perChannel.join(", ")}`);
    c.expect(events.length >= 2 && events.length <= 15, `${events.length} login.refused audit entries (want one or a few per channel)`);
    return c.outcome();
  },
};
