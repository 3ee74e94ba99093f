/**
 * Login floods against a running hub (API Basic auth, the Node-RED editor's login, MQTT CONNECT):
 * a flood from one address (127.0.0.2) backs that address off without a password check, while the
 * right password keeps working from another (127.0.0.1); the editor's own lockout no longer locks
 * the operator out; refused logins reach the audit log once per kind and window. Needs `npm run build`.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CredentialStore } from "../../broker/credentials.js";
import { AuditEvent, Topics } from "../../protocol/index.js";
import { startHubProcess, type HubProcess } from "../demo/hub-process.js";

const OPERATOR = { name: "login-op", password: "the-right-operator-password" };
const VIEWER = { name: "login-watch", password: "the-viewer-password" };
const ATTACKER = "127.0.0.2";
const topics = new Topics();

/** An HTTP request from a chosen local address (127.0.0.x are all this machine). */
function send(url: string, opts: { method?: string; from?: string; headers?: Record<string, string>; body?: string }): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? "GET", headers: opts.headers, ...(opts.from ? { localAddress: opts.from } : {}) }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end(opts.body);
  });
}

const basic = (name: string, password: string) => `Basic ${Buffer.from(`${name}:${password}`).toString("base64")}`;

describe("login floods against a running hub", () => {
  let dataDir: string;
  let hub: HubProcess;
  let watcher: MqttClient;
  const events: AuditEvent[] = [];
  const waiters: Array<{ match: (e: AuditEvent) => boolean; resolve: () => void }> = [];

  /** Resolves once an audit event matching `match` was seen on fleet/events. */
  function auditSeen(match: (e: AuditEvent) => boolean): Promise<void> {
    if (events.some(match)) return Promise.resolve();
    return new Promise((resolve) => waiters.push({ match, resolve }));
  }

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "lockstep-hub-logins-"));
    const store = await CredentialStore.open(join(dataDir, "credentials.json"));
    await store.add(OPERATOR.name, "operator", OPERATOR.password);
    await store.add(VIEWER.name, "viewer", VIEWER.password);
    // A first wait of an hour: whatever this machine's load, a backed-off pair stays backed off for
    // the whole test (the doubling itself is tested in broker-login-backoff.test.ts).
    const configFile = join(dataDir, "hub.json");
    writeFileSync(configFile, JSON.stringify({ broker: { limits: { loginBackoff: { baseDelayMs: 3_600_000, maxDelayMs: 3_600_000 } } } }));
    hub = await startHubProcess({ dataDir, configFile, env: { LOCKSTEP_HA_ENABLED: "false" } });
    watcher = mqtt.connect(hub.mqttUrl, { username: VIEWER.name, password: VIEWER.password, reconnectPeriod: 0 });
    watcher.on("message", (_topic, payload) => {
      const event = AuditEvent.parse(JSON.parse(payload.toString()));
      events.push(event);
      for (const w of waiters.filter((w) => w.match(event))) w.resolve();
    });
    await new Promise<void>((resolve, reject) => watcher.once("connect", () => resolve()).once("error", reject));
    await watcher.subscribeAsync(topics.events(), { qos: 1 });
  }, 90_000);

  afterAll(async () => {
    await watcher?.endAsync();
    await hub?.stop("SIGKILL");
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("API: a flood from one address backs it off (429), the right password works from another, and the log has one entry", async () => {
    const url = `${hub.baseUrl}/api/whoami`;
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) statuses.push((await send(url, { from: ATTACKER, headers: { authorization: basic(OPERATOR.name, `guess-${i}`) } })).status);
    // Three free failures, a fourth that starts the wait, then refusals without a password check.
    expect(statuses.slice(0, 4)).toEqual([401, 401, 401, 401]);
    expect(statuses.slice(4)).toEqual(Array(36).fill(429));

    const backingOff = await send(url, { from: ATTACKER, headers: { authorization: basic(OPERATOR.name, OPERATOR.password) } });
    expect(backingOff.status).toBe(429);
    expect(Number(backingOff.headers["retry-after"])).toBeGreaterThan(0);

    const operator = await send(url, { from: "127.0.0.1", headers: { authorization: basic(OPERATOR.name, OPERATOR.password) } });
    expect(operator.status).toBe(200);
    expect(JSON.parse(operator.body)).toEqual({ user: OPERATOR.name, role: "operator" });

    // A refusal of another kind marks the end: audit events are published in order.
    await send(url, { from: ATTACKER, headers: { authorization: basic("marker-api", "x") } });
    await auditSeen((e) => e.actor === "marker-api");
    const flood = events.filter((e) => e.action === "login.refused" && e.actor === OPERATOR.name && e.details?.channel === "api");
    // One per kind: the wrong passwords, and the refusals while backing off (their reason says so).
    expect(flood.length).toBeLessThanOrEqual(2);
    expect(flood[0]).toMatchObject({ target: "api", details: { address: ATTACKER, reason: "bad user name or password" } });
  });

  it("editor: wrong guesses never lock the operator out (Node-RED's own lockout counted the user name)", async () => {
    const token = (username: string, password: string, from: string) =>
      send(`${hub.baseUrl}/admin/auth/token`, {
        method: "POST",
        from,
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ client_id: "node-red-editor", grant_type: "password", scope: "*", username, password }).toString(),
      });
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await token("editor-target", `guess-${i}`, "127.0.0.3")).status);
    expect(statuses.slice(0, 4)).toEqual([403, 403, 403, 403]); // Node-RED's own answer to a refused grant
    expect(statuses.slice(4)).toEqual(Array(6).fill(429));
    // Also past Node-RED's six attempts per name in 10 minutes, from the flooding address itself:
    for (let i = 0; i < 8; i++) await token(OPERATOR.name, `guess-${i}`, "127.0.0.4");
    const ok = await token(OPERATOR.name, OPERATOR.password, "127.0.0.1");
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ access_token: expect.any(String) });
    await auditSeen((e) => e.action === "login.refused" && e.details?.channel === "editor" && e.details?.address === "127.0.0.4");
  });

  it("MQTT: a flood from one address is refused without a password check; the right password works from another", async () => {
    const port = Number(new URL(hub.mqttUrl).port);
    const connack = (username: string, password: string, from: string) =>
      new Promise<number>((resolve) => {
        const client = new mqtt.MqttClient(() => createConnection({ host: "127.0.0.1", port, localAddress: from }), {
          username,
          password,
          reconnectPeriod: 0,
          protocolVersion: 4,
        });
        client.once("connect", () => client.end(true, () => resolve(0)));
        client.once("error", (err) => client.end(true, () => resolve((err as { code?: number }).code ?? -1)));
      });
    const codes: number[] = [];
    for (let i = 0; i < 12; i++) codes.push(await connack(OPERATOR.name, `guess-${i}`, "127.0.0.5"));
    expect(codes.slice(0, 4)).toEqual([4, 4, 4, 4]); // bad user name or password
    expect(codes.slice(4)).toEqual(Array(8).fill(5)); // backing off: not authorized, no password check
    expect(await connack(OPERATOR.name, OPERATOR.password, "127.0.0.5")).toBe(5);
    expect(await connack(OPERATOR.name, OPERATOR.password, "127.0.0.1")).toBe(0);
    await auditSeen((e) => e.action === "login.refused" && e.details?.channel === "mqtt" && e.details?.address === "127.0.0.5");
  });

  it("denied subscribes and publishes are audited once per kind", async () => {
    const commands = topics.commands("web-9");
    /** The SUBACK code (128 = refused); MQTT.js rejects a refused subscribe, so it is read from the packet. */
    const subscribe = (filter: string) =>
      new Promise<number | undefined>((resolve) =>
        watcher.subscribe(filter, { qos: 1 }, (err, granted) => resolve((err as { packet?: { granted?: number[] } } | null)?.packet?.granted?.[0] ?? granted?.[0]?.qos)),
      );
    for (let i = 0; i < 5; i++) expect(await subscribe(commands)).toBe(128);
    for (let i = 0; i < 5; i++) await watcher.publishAsync(topics.info("web-9"), "{}", { qos: 1 });
    expect(await subscribe(topics.commands("marker"))).toBe(128);
    await auditSeen((e) => e.action === "access.denied" && e.target === topics.commands("marker"));
    const denied = events.filter((e) => e.action === "access.denied" && e.actor === VIEWER.name);
    expect(denied.map((e) => [e.target, e.details?.action])).toEqual([
      [commands, "subscribe"],
      [topics.info("web-9"), "publish"],
      [topics.commands("marker"), "subscribe"],
    ]);
    expect(denied[0]!.details).toMatchObject({ address: "127.0.0.1", reason: "not allowed for this role" });
  });
});
