/**
 * The hub as people run it: `lockstep hub` in its own process. It prints where everything is and
 * the first operator password once; the editor needs a login (operators and hub users only); the
 * API needs HTTP Basic auth; the fleet page and MQTT over WebSocket share the HTTP port; a restart
 * keeps the user's flow edits. Needs `npm run build`.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CredentialStore } from "../../broker/credentials.js";
import { AuditEvent, Command, HubStatus, Topics } from "../../protocol/index.js";
import { startHubProcess, type HubProcess } from "../demo/hub-process.js";

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

async function editorToken(baseUrl: string, username: string, password: string): Promise<Response> {
  return fetch(`${baseUrl}/admin/auth/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ client_id: "node-red-editor", grant_type: "password", scope: "*", username, password }),
  });
}

describe("lockstep hub process", () => {
  let dataDir: string;
  let hub: HubProcess;
  let password: string;
  const viewer = { name: "viewer1", password: "viewer-password-1" };

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "lockstep-hub-"));
    hub = await startHubProcess({ dataDir });
    password = hub.operatorPassword ?? "";
    const store = await CredentialStore.open(join(dataDir, "credentials.json"));
    await store.add(viewer.name, "viewer", viewer.password);
  });

  afterAll(async () => {
    await hub?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("prints the editor, page, API and broker addresses and the first operator password", () => {
    const out = hub.output();
    expect(out).toMatch(/fleet page:\s+http:\/\/127\.0\.0\.1:\d+\//);
    expect(out).toMatch(/Node-RED editor:\s+http:\/\/127\.0\.0\.1:\d+\/admin\//);
    expect(out).toMatch(/HTTP API:\s+http:\/\/127\.0\.0\.1:\d+\/api\//);
    expect(out).toMatch(/MQTT:\s+mqtt:\/\/127\.0\.0\.1:\d+/);
    expect(password).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    // Stored hashed, never in clear.
    expect(readFileSync(join(dataDir, "credentials.json"), "utf8")).not.toContain(password);
  });

  it("serves the fleet page and its config at /", async () => {
    const page = await fetch(`${hub.baseUrl}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/text\/html/);
    const config = (await (await fetch(`${hub.baseUrl}/config.json`)).json()) as { prefix: string };
    expect(config.prefix).toBe("lockstep");
  });

  it("requires a login for the editor; operators get in, viewers and wrong passwords do not", async () => {
    const login = (await (await fetch(`${hub.baseUrl}/admin/auth/login`)).json()) as { type?: string };
    expect(login.type).toBe("credentials");
    expect((await fetch(`${hub.baseUrl}/admin/flows`)).status).toBe(401);
    // Node-RED answers a refused password grant with 403.
    expect((await editorToken(hub.baseUrl, "admin", "wrong-password")).status).toBe(403);
    expect((await editorToken(hub.baseUrl, viewer.name, viewer.password)).status).toBe(403);

    const res = await editorToken(hub.baseUrl, "admin", password);
    expect(res.status).toBe(200);
    const { access_token } = (await res.json()) as { access_token: string };
    const flows = await fetch(`${hub.baseUrl}/admin/flows`, { headers: { authorization: `Bearer ${access_token}` } });
    expect(flows.status).toBe(200);
    const nodes = (await flows.json()) as Array<{ type: string }>;
    expect(nodes.some((n) => n.type === "lockstep-fleet")).toBe(true);
  });

  it("requires HTTP Basic auth for /api/ and says who is logged in", async () => {
    const anonymous = await fetch(`${hub.baseUrl}/api/whoami`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get("www-authenticate")).toMatch(/^Basic/);
    expect((await fetch(`${hub.baseUrl}/api/whoami`, { headers: { authorization: basic("admin", "nope") } })).status).toBe(401);
    const op = await fetch(`${hub.baseUrl}/api/whoami`, { headers: { authorization: basic("admin", password) } });
    expect(await op.json()).toEqual({ user: "admin", role: "operator" });
    const view = await fetch(`${hub.baseUrl}/api/whoami`, { headers: { authorization: basic(viewer.name, viewer.password) } });
    expect(await view.json()).toEqual({ user: viewer.name, role: "viewer" });
  });

  it("lets only operators POST to the API, and checks the request body", async () => {
    const url = `${hub.baseUrl}/api/flake-updates/merge-and-deploy`;
    const post = (auth: string | undefined, body: unknown) =>
      fetch(url, { method: "POST", headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) }, body: JSON.stringify(body) });
    expect((await post(undefined, { pr_number: 1 })).status).toBe(401);
    expect((await post(basic(viewer.name, viewer.password), { pr_number: 1 })).status).toBe(403);
    const bad = await post(basic("admin", password), { pr_number: 1, force: true });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/unknown field\(s\): force/);
    // A wrongly typed pr_number is refused by the merge node's zod check (no GitHub is configured here).
    const typed = await post(basic("admin", password), { pr_number: "twelve" });
    expect(typed.status).toBe(400);
  });

  it("speaks MQTT over WebSocket at /mqtt and announces itself on hub/availability", async () => {
    expect(hub.mqttWsUrl).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/mqtt$/);
    const client = await mqtt.connectAsync(hub.mqttWsUrl!, { username: viewer.name, password: viewer.password, reconnectPeriod: 0 });
    try {
      const availability = new Promise<string>((resolve) => client.on("message", (_t, p) => resolve(p.toString())));
      await client.subscribeAsync("lockstep/v1/hub/availability");
      expect(await availability).toBe("online");
    } finally {
      await client.endAsync();
    }
  });

  it("publishes a retained hub/status: no GitHub repository configured, the MQTT port agents use", async () => {
    const client = await mqtt.connectAsync(hub.mqttUrl, { username: viewer.name, password: viewer.password, reconnectPeriod: 0 });
    try {
      const payload = new Promise<string>((resolve) => client.on("message", (_t, p) => resolve(p.toString())));
      await client.subscribeAsync(new Topics().hubStatus());
      const status = HubStatus.parse(JSON.parse(await payload));
      expect(status.github).toEqual({ configured: false });
      expect(status.mqttPort).toBe(Number(new URL(hub.mqttUrl).port));
    } finally {
      await client.endAsync();
    }
  });

  it("records who sent a command: the broker's authenticated user, in GET /api/audit and audit.jsonl", async () => {
    const op = await mqtt.connectAsync(hub.mqttUrl, { username: "admin", password, reconnectPeriod: 0 });
    const now = new Date();
    const command = Command.parse({ id: "c-audit-1", op: "refresh", args: {}, issuedAt: now.toISOString(), expiresAt: new Date(now.getTime() + 60_000).toISOString(), requestedBy: "claimed-name" });
    try {
      await op.publishAsync("lockstep/v1/hosts/web-1/commands", JSON.stringify(command), { qos: 1 });
    } finally {
      await op.endAsync();
    }
    const auth = { authorization: basic(viewer.name, viewer.password) };
    let found: AuditEvent | undefined;
    for (const deadline = Date.now() + 5000; !found && Date.now() < deadline; ) {
      const res = await fetch(`${hub.baseUrl}/api/audit?limit=50`, { headers: auth });
      expect(res.status).toBe(200);
      const { events } = (await res.json()) as { events: AuditEvent[] };
      found = events.find((e) => e.action === "command.sent" && e.details?.id === "c-audit-1");
      if (!found) await new Promise((r) => setTimeout(r, 50));
    }
    expect(found).toMatchObject({ actor: "admin", target: "web-1", details: { op: "refresh", id: "c-audit-1", requestedBy: "claimed-name" } });
    const lines = readFileSync(join(dataDir, "audit.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as AuditEvent);
    expect(lines.find((e) => e.id === found!.id)).toEqual(found);

    expect((await fetch(`${hub.baseUrl}/api/audit`)).status).toBe(401);
    const bad = await fetch(`${hub.baseUrl}/api/audit?limit=0`, { headers: auth });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/limit/);
  });

  it("keeps the user's flow edits across a restart and prints no new password", async () => {
    const { access_token } = (await (await editorToken(hub.baseUrl, "admin", password)).json()) as { access_token: string };
    const auth = { authorization: `Bearer ${access_token}`, "content-type": "application/json" };
    const current = (await (await fetch(`${hub.baseUrl}/admin/flows`, { headers: auth })).json()) as unknown[];
    const edited = [...current, { id: "user-comment", type: "comment", z: "", name: "my edit", x: 100, y: 100, wires: [] }];
    const deploy = await fetch(`${hub.baseUrl}/admin/flows`, { method: "POST", headers: { ...auth, "Node-RED-Deployment-Type": "full" }, body: JSON.stringify(edited) });
    expect(deploy.status).toBe(204);

    const code = await hub.stop();
    expect(code, hub.output().split("\n").slice(-15).join("\n")).toBe(0);
    hub = await startHubProcess({ dataDir });
    expect(hub.operatorPassword).toBeUndefined();
    const { access_token: token2 } = (await (await editorToken(hub.baseUrl, "admin", password)).json()) as { access_token: string };
    const flows = (await (await fetch(`${hub.baseUrl}/admin/flows`, { headers: { authorization: `Bearer ${token2}` } })).json()) as Array<{ id: string; name?: string }>;
    expect(flows.find((n) => n.id === "user-comment")?.name).toBe("my edit");
    // The audit log is read back from audit.jsonl.
    const audit = (await (await fetch(`${hub.baseUrl}/api/audit`, { headers: { authorization: basic("admin", password) } })).json()) as { events: AuditEvent[] };
    expect(audit.events.some((e) => e.details?.id === "c-audit-1")).toBe(true);
  });
});
