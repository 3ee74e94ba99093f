/**
 * The fleet page explains itself (issue 9), in headless Chromium against the embedded Aedes broker
 * (what the hub runs; the page's rendering does not depend on the broker, fleet-page.test.ts covers
 * each kind): an empty hub says what to do next; the lock diff shows revs, dates, compare links and
 * follows; a failed host's reason is visible without hovering; a rollback says so; the header says
 * how many hosts need attention and why; the Activity card groups a rollout's events; nothing
 * overlaps at phone width. Screenshots at 1400×900 and 390×844 go to test-results/screenshots/.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { FleetExpected, HubStatus, RolloutProgress, Topics, type LockDiff, type PendingUpdate } from "../../protocol/index.js";
import { startTestBroker, type TestBroker } from "../support/brokers.js";
import { CHROMIUM_ARGS, CHROMIUM_PATH, startPageServer, type PageServer } from "./page-server.js";
import { PENDING_PR, expectedState, publishHost, rolloutProgress, threeHosts } from "./fleet-fixture.js";

const SHOTS = join(process.cwd(), "test-results", "screenshots");
mkdirSync(SHOTS, { recursive: true });
const topics = new Topics();
const DESKTOP = { width: 1400, height: 900 };
const PHONE = { width: 390, height: 844 };
const A = "1a".repeat(20);
const B = "2b".repeat(20);

/** A lock diff as GitHub PR detection reports it: full revs, a follows-only input, a new follows. */
const DIFF: LockDiff = {
  added: [],
  removed: [],
  updated: [
    { input: "home-manager", old: { type: "github", owner: "nix-community", repo: "home-manager", rev: "3c".repeat(20), date: "2025-12-08" }, new: { type: "github", owner: "nix-community", repo: "home-manager", rev: "4d".repeat(20), date: "2025-12-16" } },
    { input: "home-manager/nixpkgs", old: { type: "github", owner: "NixOS", repo: "nixpkgs", rev: A, date: "2025-12-10", follows: "nixpkgs" }, new: { type: "github", owner: "NixOS", repo: "nixpkgs", rev: B, date: "2025-12-17", follows: "nixpkgs" } },
    { input: "nixpkgs", old: { type: "github", owner: "NixOS", repo: "nixpkgs", rev: A, date: "2025-12-10" }, new: { type: "github", owner: "NixOS", repo: "nixpkgs", rev: B, date: "2025-12-17" } },
    { input: "sops-nix/nixpkgs", old: { type: "github", owner: "NixOS", repo: "nixpkgs", rev: "5e".repeat(20), date: "2025-11-30" }, new: { type: "github", owner: "NixOS", repo: "nixpkgs", rev: B, date: "2025-12-17", follows: "nixpkgs" } },
  ],
};
const PR: PendingUpdate = { ...PENDING_PR, lockDiff: DIFF };

const BUILD_ERROR = [
  "switch failed: nixos-rebuild exited with 1",
  "error: builder for '/nix/store/8k2j-nginx-1.27.3.drv' failed with exit code 2;",
  "       last 3 log lines:",
  "       > src/http/ngx_http.c:12: error: unknown type name 'ngx_foo_t'",
  "       > make[1]: *** [objs/Makefile:880: objs/src/http/ngx_http.o] Error 1",
  "       > make: *** [Makefile:10: build] Error 2",
].join("\n");
const GATE_ERROR = "health gate: Tests failed: nginx-responds, tls-cert-valid";

const ROLLOUT_EVENTS = (() => {
  const at = (s: number) => new Date(Date.UTC(2025, 11, 17, 3, 0, s)).toISOString();
  const ev = (n: number, action: string, target: string | undefined, details: Record<string, unknown>, actor = "rollout:r-pr17") => ({
    id: `e-${n}`,
    at: at(n),
    actor,
    action,
    ...(target ? { target } : {}),
    details: { rolloutId: "r-pr17", ...details },
  });
  return [
    ev(6, "policy.rollback", undefined, { policy: "rollback-all", hosts: ["web-1", "db-1"] }),
    ev(5, "host.failed", "mac-1", { reason: "switch failed: nixos-rebuild exited with 1", phase: "wave-1" }),
    ev(4, "rollout.warning", undefined, { warning: "mac-1 is offline: the rollout waits up to 10 min for it" }),
    ev(3, "host.succeeded", "web-1", { generationBefore: 41, generationAfter: 42 }),
    ev(2, "phase.started", undefined, { phase: "canary", hosts: ["web-1"] }),
    ev(1, "rollout.started", undefined, { commit: "c0ffee" }, "olga"),
    { id: "e-0", at: at(0), actor: "olga", action: "command.sent", target: "db-1", details: { op: "pull", id: "c-1" } },
  ];
})();

interface Box {
  name: string;
  x: number;
  y: number;
  width: number;
  height: number;
}
const intersects = (a: Box, b: Box) => a.x < b.x + b.width - 0.5 && b.x < a.x + a.width - 0.5 && a.y < b.y + b.height - 0.5 && b.y < a.y + a.height - 0.5;
/** Pairs of visible elements (matching each selector) whose boxes overlap. */
async function overlaps(p: Page, selectors: string[]): Promise<string[]> {
  const boxes: Box[] = await p.evaluate((sels) => {
    const out: Box[] = [];
    for (const sel of sels) {
      document.querySelectorAll(sel).forEach((node, i) => {
        const r = node.getBoundingClientRect();
        if (r.width > 0 && r.height > 0) out.push({ name: `${sel}[${i}]`, x: r.x, y: r.y, width: r.width, height: r.height });
      });
    }
    return out;
  }, selectors);
  const hits: string[] = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) if (intersects(boxes[i]!, boxes[j]!)) hits.push(`${boxes[i]!.name} × ${boxes[j]!.name}`);
  return hits;
}

describe("the fleet page explains itself", () => {
  let broker: TestBroker;
  let server: PageServer;
  let hub: MqttClient;
  let browser: Browser;
  let operator: { username: string; password: string };
  const contexts: BrowserContext[] = [];

  async function open(viewport: { width: number; height: number }): Promise<Page> {
    const ctx = await browser.newContext({ viewport, ...(viewport.width < 500 ? { deviceScaleFactor: 2, isMobile: true, hasTouch: true } : {}) });
    contexts.push(ctx);
    const p = await ctx.newPage();
    p.on("pageerror", (err) => console.error("page error:", err.message));
    await p.goto(server.url);
    await p.fill("#login-username", operator.username);
    await p.fill("#login-password", operator.password);
    await p.click("#login-submit");
    await p.waitForSelector("#fleet-view:not([hidden])");
    return p;
  }
  const shot = (p: Page, name: string) => p.screenshot({ path: join(SHOTS, `explains-${name}.png`), fullPage: true });
  const retain = (topic: string, payload: unknown) => hub.publishAsync(topic, typeof payload === "string" ? payload : JSON.stringify(payload), { qos: 1, retain: true });

  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
    broker = await startTestBroker({ kind: "aedes" });
    operator = await broker.credentials("operator", "olga");
    const c = await broker.credentials("hub", "hub");
    hub = await mqtt.connectAsync(broker.url, { ...c, reconnectPeriod: 0, clientId: `hub-${Date.now()}` });
    await retain(topics.hubAvailability(), "online");
    const status: HubStatus = { version: "0.1.0", startedAt: new Date().toISOString(), github: { configured: false }, mqttPort: Number(new URL(broker.url).port) };
    await retain(topics.hubStatus(), HubStatus.parse(status));
    server = await startPageServer({ broker, users: [{ ...operator, role: "operator" }], auditEvents: ROLLOUT_EVENTS });
  });

  afterAll(async () => {
    for (const ctx of contexts) await ctx.close();
    await browser?.close();
    await server?.close();
    await hub?.endAsync();
    await broker?.stop();
  });

  it("an empty hub says: no repository configured (and how), no hosts yet (the commands, a copyable agent config), and where the docs are", async () => {
    const page = await open(DESKTOP);
    await page.waitForSelector("#no-repo");
    expect(await page.textContent("#no-repo")).toContain("No GitHub repository is configured.");
    expect(await page.textContent("#no-repo")).toContain("LOCKSTEP_GITHUB_REPO=owner/repo");
    await page.waitForSelector("#no-hosts");
    const steps = await page.$$eval("#no-hosts .steps pre", (pres) => pres.map((p) => p.textContent));
    expect(steps).toEqual([
      "lockstep users add web-1 --role agent",
      "sudo install -D -m 600 /dev/stdin /etc/lockstep/agent-password",
      "lockstep-agent check-config --config /etc/lockstep/agent.json",
      "sudo lockstep-agent run --config /etc/lockstep/agent.json",
    ]);
    const config = JSON.parse((await page.textContent("#no-hosts > .copy-box pre"))!) as { broker: { url: string } };
    expect(config.broker.url).toBe(`mqtt://127.0.0.1:${new URL(broker.url).port}`);
    expect(await page.isVisible('#no-hosts button[aria-label="Copy agent config"]')).toBe(true);
    // The docs it links to are served by the hub.
    const links = await page.$$eval("#no-hosts .docs-links a", (as) => as.map((a) => (a as HTMLAnchorElement).href));
    expect(links.length).toBe(4);
    for (const href of links) expect((await page.request.get(href)).status(), href).toBe(200);
    await shot(page, "empty-hub-desktop");
    const phone = await open(PHONE);
    await phone.waitForSelector("#no-hosts");
    expect(await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);
    await shot(phone, "empty-hub-phone");
  });

  it("shows the lock diff per input with old rev and date → new rev and date, compare links, and follows", async () => {
    await retain(topics.expected(), FleetExpected.parse({ ...expectedState(PR), pendingUpdate: PR }));
    for (const h of threeHosts()) await publishHost(hub, topics, h);
    const page = await open(DESKTOP);
    await page.waitForSelector('#update-card li[data-input="nixpkgs"]');
    const nixpkgs = '#update-card li[data-input="nixpkgs"]';
    expect(await page.textContent(`${nixpkgs} .d-text`)).toBe("nixpkgs 2025-12-10 → 2025-12-17 (1a1a1a1 → 2b2b2b2)");
    expect(await page.getAttribute(`${nixpkgs} a.d-compare`, "href")).toBe(`https://github.com/NixOS/nixpkgs/compare/${A}...${B}`);
    // The input that only follows nixpkgs is listed under it, not on its own line.
    expect(await page.textContent(`${nixpkgs} .d-followers`)).toBe("followed by home-manager/nixpkgs");
    expect(await page.$('#update-card li[data-input="home-manager/nixpkgs"]')).toBeNull();
    expect(await page.textContent('#update-card li[data-input="sops-nix/nixpkgs"]')).toBe("sops-nix/nixpkgs → follows 'nixpkgs'");
    expect(await page.getAttribute('#update-card li[data-input="home-manager"] a.d-compare', "href")).toContain("github.com/nix-community/home-manager/compare/");
    expect(await page.$$eval("#update-card li.d-row", (lis) => lis.length)).toBe(3);
    await shot(page, "lock-diff");
  });

  it("says how many hosts need attention and why; an online host is seen now", async () => {
    const page = await open(DESKTOP);
    await page.waitForFunction(() => document.querySelectorAll("tr.host").length === 3);
    await page.waitForSelector("#attention");
    expect(await page.textContent("#attention")).toBe("⚠ 2 need attention: 1 failed, 1 outdated");
    expect(await page.textContent('tr.host[data-host="web-1"] .c-seen')).toBe("now");
    expect(await page.textContent('tr.host[data-host="mac-1"] .c-seen')).toMatch(/^offline, /);
  });

  it("a rollback says so, and each failed host's reason is visible without hovering (rollout card, row, host detail)", async () => {
    const hosts = ["web-1", "db-1", "mac-1"];
    const p = rolloutProgress("r-pr17", hosts, { "web-1": "rolling-back", "db-1": "rolling-back", "mac-1": "failed" }, "rolling-back");
    p.hosts["mac-1"]!.reason = BUILD_ERROR;
    p.hosts["db-1"]!.reason = GATE_ERROR;
    await retain(topics.rollout("r-pr17"), RolloutProgress.parse(p));
    const page = await open(DESKTOP);
    await page.waitForFunction(() => document.querySelector("#rollout-title")?.textContent === "Rolling back 2 hosts");
    const mac = '#rollout-card .why-list li[data-host="mac-1"]';
    expect(await page.isVisible(mac)).toBe(true);
    const macText = (await page.textContent(mac))!;
    expect(macText).toContain("make: *** [Makefile:10: build] Error 2"); // the last lines of the build error
    expect(macText).not.toContain("builder for"); // not the whole log
    expect(await page.textContent('#rollout-card .why-list li[data-host="db-1"]')).toBe(`db-1: ${GATE_ERROR}`);
    // In the host's row (a phone has no hover) and first in its detail.
    await page.waitForSelector('tr.host[data-host="mac-1"] .why-line');
    expect(await page.textContent('tr.host[data-host="mac-1"] .why-line')).toBe("failed: make: *** [Makefile:10: build] Error 2");
    await page.click('tr.host[data-host="mac-1"] .c-host');
    await page.waitForSelector("tr.detail .why-box");
    const box = (await page.textContent("tr.detail .why-box"))!;
    expect(box).toContain("Rollout r-pr17: mac-1 failed");
    expect(box).toContain("error: builder for '/nix/store/8k2j-nginx-1.27.3.drv' failed with exit code 2;");
    await shot(page, "rolling-back-desktop");

    const done = rolloutProgress("r-pr17", hosts, { "web-1": "rolled-back", "db-1": "rolled-back", "mac-1": "failed" }, "rolled-back");
    done.hosts["mac-1"]!.reason = BUILD_ERROR;
    await retain(topics.rollout("r-pr17"), RolloutProgress.parse(done));
    await page.waitForFunction(() => document.querySelector("#rollout-title")?.textContent === "Rolled back 2 hosts; 1 host failed");
  });

  it("groups a rollout's events in Activity under one line that expands; short actors; warnings show their text", async () => {
    const page = await open(DESKTOP);
    await page.waitForSelector('#activity > li.a-group[data-rollout="r-pr17"]');
    const top = await page.$$eval("#activity > li", (lis) => lis.map((li) => (li as HTMLElement).dataset.rollout ?? (li as HTMLElement).dataset.event));
    expect(top).toEqual(["r-pr17", "e-0"]);
    const line = '#activity li.a-group[data-rollout="r-pr17"] summary';
    expect(await page.textContent(`${line} .a-actor`)).toBe("olga");
    expect(await page.textContent(`${line} .a-target`)).toBe("PR #17");
    expect(await page.textContent(`${line} .a-detail`)).toBe("6 events · rolled-back · 1 host failed");
    expect(await page.isVisible('#activity li[data-event="e-5"]')).toBe(false);
    await page.click(line);
    await page.waitForSelector('#activity li[data-event="e-5"]', { state: "visible" });
    expect(await page.textContent('#activity li[data-event="e-5"] .a-actor')).toBe("rollout");
    expect(await page.textContent('#activity li[data-event="e-4"] .a-detail')).toBe("mac-1 is offline: the rollout waits up to 10 min for it");
    await shot(page, "activity-grouped");
  });

  it("works at phone width: nothing overlaps, compartment cells keep an icon, the host detail wraps", async () => {
    const page = await open(PHONE);
    await page.waitForFunction(() => document.querySelectorAll("tr.host").length === 3 && !!document.querySelector("#rollout-title"));
    expect(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);
    expect(await overlaps(page, [".topbar .brand", ".topbar .fleet-counts .count", ".topbar .session"])).toEqual([]);
    expect(await overlaps(page, [".hosts thead th"])).toEqual([]);
    expect(await overlaps(page, ["#rollout-card .card-head > *", "#update-card .card-head > *", ".hosts-card .card-head h2", ".hosts-card .filters > *"])).toEqual([]);
    // Every compartment cell shows a glyph (not colour alone) and it fits the cell.
    const icons = await page.$$eval("tr.host .cell", (cells) => cells.map((c) => getComputedStyle(c, "::before").content));
    expect(icons).toHaveLength(15);
    for (const icon of icons) expect(icon).toMatch(/^"[✓↑✕⟳?]"$/);
    await page.click('tr.host[data-host="mac-1"] .c-host');
    await page.waitForSelector("tr.detail .why-box");
    const hostColumn = await page.evaluate(() => document.querySelector(".hosts thead th.c-host")!.getBoundingClientRect().width);
    expect(hostColumn).toBeGreaterThan(100); // the detail row does not squeeze the host column
    const detail = await page.evaluate(() => {
      const td = document.querySelector("tr.detail > td")!;
      return { scroll: td.scrollWidth, client: td.clientWidth, right: td.getBoundingClientRect().right };
    });
    expect(detail.scroll).toBeLessThanOrEqual(detail.client);
    expect(detail.right).toBeLessThanOrEqual(PHONE.width);
    expect(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);
    await shot(page, "phone");
  });
});
