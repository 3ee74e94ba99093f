/**
 * The hub's API as a script meets it (every answer JSON: the route list, unknown routes, bad and
 * oversized bodies, errors with the status their code stands for) and the hub's exit: within 5 s
 * of SIGTERM although a browser still has the fleet page and the Node-RED editor open (keep-alive,
 * WebSocket and fleet stream connections). Needs `npm run build` and Debian's chromium.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CredentialStore } from "../../broker/credentials.js";
import { FLEET_STREAM_PATH, LineSplitter } from "../../protocol/fleet-stream.js";
import { startHubProcess, type HubProcess } from "../demo/hub-process.js";
import { CHROMIUM_ARGS, CHROMIUM_PATH } from "../browser/page-server.js";

const OPERATOR = { name: "api-op", password: "api-operator-password" };
const auth = `Basic ${Buffer.from(`${OPERATOR.name}:${OPERATOR.password}`).toString("base64")}`;

describe("the hub's API and its exit", () => {
  let dataDir: string;
  let hub: HubProcess;
  let browser: Browser | undefined;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "lockstep-hub-api-"));
    const store = await CredentialStore.open(join(dataDir, "credentials.json"));
    await store.add(OPERATOR.name, "operator", OPERATOR.password);
    hub = await startHubProcess({ dataDir, env: { LOCKSTEP_HA_ENABLED: "false" } });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await hub?.stop("SIGKILL");
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const call = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(`${hub.baseUrl}${path}`, { ...init, headers: { authorization: auth, ...(init.headers ?? {}) } });
    return { status: res.status, type: res.headers.get("content-type") ?? "", body: (await res.text()) as string };
  };

  it("GET /api/ lists the routes as JSON, with who may call them", async () => {
    const res = await call("/api/");
    expect(res.status).toBe(200);
    expect(res.type).toMatch(/application\/json/);
    const routes = (JSON.parse(res.body) as { routes: Array<{ method: string; path: string; access: string }> }).routes;
    expect(routes).toEqual(
      expect.arrayContaining([
        { method: "GET", path: "/api/", access: "reader" },
        { method: "GET", path: "/api/whoami", access: "reader" },
        { method: "GET", path: "/api/audit", access: "reader" },
        { method: "GET", path: "/api/fleet/stream", access: "reader" },
        { method: "POST", path: "/api/flake-updates/merge-and-deploy", access: "operator" },
        { method: "POST", path: "/api/flake-updates/check", access: "operator" },
        { method: "POST", path: "/api/flake-updates/merge-revert", access: "operator" },
        { method: "POST", path: "/api/github/webhook", access: "signature" },
      ]),
    );
  });

  it("answers unknown /api/ routes, bad bodies and errors as JSON", async () => {
    const missing = await call("/api/nope");
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body)).toMatchObject({ code: "not-found" });

    const post = (body: string) => call("/api/flake-updates/merge-and-deploy", { method: "POST", body, headers: { "content-type": "application/json" } });
    const malformed = await post('{"pr_number": ');
    expect(malformed.status).toBe(400);
    expect(JSON.parse(malformed.body)).toMatchObject({ code: "invalid-json" });

    const oversized = await post(JSON.stringify({ pr_number: 1, hosts: ["x".repeat(100_000)] }));
    expect(oversized.status).toBe(413);
    expect(JSON.parse(oversized.body)).toMatchObject({ code: "body-too-large" });

    // No hosts and no GitHub repository on this hub: the rollout is checked before anything is merged
    // (flows/02-manual.json), so the check's RolloutPlanError answers first: a 422, said as JSON.
    const unplannable = await post(JSON.stringify({ pr_number: 1 }));
    expect(unplannable.status).toBe(422);
    expect(unplannable.type).toMatch(/application\/json/);
    expect(JSON.parse(unplannable.body)).toMatchObject({ code: "rollout-plan", error: expect.any(String) });

    // The hub's own merge-revert route: a bad body is a 400, and without a repository it says so (503), as JSON.
    const revert = (body: string) => call("/api/flake-updates/merge-revert", { method: "POST", body, headers: { "content-type": "application/json" } });
    expect(JSON.parse((await revert('{"pr_number": ')).body)).toMatchObject({ code: "invalid-json" });
    const noRepo = await revert(JSON.stringify({ pr_number: 3 }));
    expect(noRepo.status).toBe(503);
    expect(JSON.parse(noRepo.body)).toMatchObject({ code: "config" });
  });

  it("streams the fleet (GET /api/fleet/stream) to a logged-in user only", async () => {
    expect((await fetch(`${hub.baseUrl}${FLEET_STREAM_PATH}`)).status).toBe(401);
    const res = await fetch(`${hub.baseUrl}${FLEET_STREAM_PATH}`, { headers: { authorization: auth } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/application\/x-ndjson/);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const split = new LineSplitter();
    let lines: string[] = [];
    while (lines.length === 0) lines = split.push((await reader.read()).value ?? "");
    // No agent connected: the snapshot is one empty part.
    expect(JSON.parse(lines[0]!)).toEqual({ kind: "snapshot", hosts: [], done: true });
    await reader.cancel();
  });

  it("exits within 5 s of SIGTERM after a browser used the page and the editor", async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
    const page = await browser.newPage();
    await page.goto(`${hub.baseUrl}/`);
    // Logged in: the page's fleet stream is a long response the hub must end too.
    await page.fill("#login-username", OPERATOR.name);
    await page.fill("#login-password", OPERATOR.password);
    await page.click("#login-submit");
    await page.waitForFunction(() => (window as unknown as { lockstepStats: { fleetLoaded: boolean } }).lockstepStats.fleetLoaded, undefined, { timeout: 30_000 });
    const editor = await browser.newPage();
    await editor.goto(`${hub.baseUrl}/admin/`);
    await editor.fill("#node-dialog-login-username", OPERATOR.name);
    await editor.fill("#node-dialog-login-password", OPERATOR.password);
    await editor.click("#node-dialog-login-submit");
    await editor.waitForSelector('.red-ui-palette-node[data-palette-type="lockstep-deploy"]', { timeout: 30_000 });
    // Both stay open: their keep-alive and WebSocket connections are what used to keep the hub up.
    const t0 = Date.now();
    const code = await hub.stop("SIGTERM");
    const ms = Date.now() - t0;
    expect(code).toBe(0);
    expect(ms).toBeLessThan(5000);
  }, 90_000);
});
