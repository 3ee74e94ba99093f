/**
 * The fleet page in headless Chromium against a real broker (each kind in BROKER_KINDS), with
 * state seeded as retained protocol payloads: login, compartment colours and tooltips, operator
 * actions that publish real Commands and show job output, Merge & deploy, rollout progress,
 * history, and a viewer who sees no actions and whose command the broker refuses.
 * Screenshots go to test-results/screenshots/.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { Command, Compartment, JobOutput, JobState, Topics, type CompartmentName } from "../../protocol/index.js";
import { BROKER_KINDS, startTestBroker, type Role, type TestBroker } from "../support/brokers.js";
import { CHROMIUM_ARGS, CHROMIUM_PATH, startPageServer, type PageServer } from "./page-server.js";
import { HEAD, PENDING_PR, compartment, expectedState, historyEntry, publishHost, rolloutProgress, threeHosts } from "./fleet-fixture.js";

const SHOTS = join(process.cwd(), "test-results", "screenshots");
mkdirSync(SHOTS, { recursive: true });
const topics = new Topics();

let browser: Browser;
beforeAll(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
});
afterAll(async () => {
  await browser?.close();
});

interface Inbox {
  messages: { topic: string; payload: string }[];
  wait(pred: (m: { topic: string; payload: string }) => boolean, timeoutMs?: number): Promise<{ topic: string; payload: string }>;
}
function inbox(client: MqttClient): Inbox {
  const messages: { topic: string; payload: string }[] = [];
  client.on("message", (topic, payload) => messages.push({ topic, payload: payload.toString() }));
  return {
    messages,
    async wait(pred, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = messages.find(pred);
        if (m) return m;
        if (Date.now() > deadline) throw new Error("timed out waiting for an MQTT message");
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

describe.each(BROKER_KINDS)("fleet page on %s", (kind) => {
  let broker: TestBroker;
  let server: PageServer;
  let hub: MqttClient;
  let agent: MqttClient;
  let agentInbox: Inbox;
  let operator: { username: string; password: string };
  let viewer: { username: string; password: string };
  let context: BrowserContext;
  let page: Page;
  const shot = (name: string, p: Page = page) => p.screenshot({ path: join(SHOTS, `${kind}-${name}.png`), fullPage: true });

  async function connect(role: Role, name: string): Promise<MqttClient> {
    const c = await broker.credentials(role, name);
    return mqtt.connectAsync(broker.url, { ...c, reconnectPeriod: 0, clientId: c.clientId ?? `${role}-${name}-${Math.random().toString(16).slice(2)}` });
  }

  async function login(p: Page, user: { username: string; password: string }) {
    await p.goto(server.url);
    await p.fill("#login-username", user.username);
    await p.fill("#login-password", user.password);
    await p.click("#login-submit");
    await p.waitForSelector("#fleet-view:not([hidden])");
  }

  const cellClass = (p: Page, host: string, c: CompartmentName) =>
    p.getAttribute(`tr.host[data-host="${host}"] td[data-compartment="${c}"] .cell`, "class");

  beforeAll(async () => {
    broker = await startTestBroker({ kind });
    operator = await broker.credentials("operator", "olga");
    viewer = await broker.credentials("viewer", "victor");
    hub = await connect("hub", "hub");
    await hub.publishAsync(topics.hubAvailability(), "online", { qos: 1, retain: true });
    await hub.publishAsync(topics.expected(), JSON.stringify(expectedState(PENDING_PR)), { qos: 1, retain: true });
    for (const h of threeHosts()) await publishHost(hub, topics, h);
    const past = historyEntry("r-20251210", "2025-12-10T03:20:00Z", [
      { host: "web-1", state: "succeeded" },
      { host: "db-1", state: "succeeded" },
      { host: "mac-1", state: "skipped", reason: "offline" },
    ]);
    await hub.publishAsync(topics.history(past.rolloutId), JSON.stringify(past), { qos: 1, retain: true });

    agent = await connect("agent", "web-1");
    agentInbox = inbox(agent);
    await agent.subscribeAsync(topics.commands("web-1"), { qos: 1 });

    server = await startPageServer({
      broker,
      users: [
        { ...operator, role: "operator" },
        { ...viewer, role: "viewer" },
      ],
      auditEvents: [{ id: "e-seeded", at: "2025-12-10T03:00:00.000Z", actor: "olga", action: "command.sent", target: "db-1", details: { op: "pull", id: "c-1", requestedBy: "olga" } }],
      // The fake hub endpoint starts a "rollout" and publishes its progress like the rollout engine.
      async onMergeAndDeploy(body) {
        const id = `r-pr${body.pr_number}`;
        const p = rolloutProgress(id, ["web-1", "db-1", "mac-1"], { "web-1": "succeeded", "db-1": "switching" }, "running");
        await hub.publishAsync(topics.rollout(id), JSON.stringify(p), { qos: 1, retain: true });
        // An update of several PRs: the hub merged the first and GitHub refused the second.
        if (body.parts && body.parts.length > 1) return { job_id: id, merged: body.parts.slice(0, 1), not_merged: [{ pr_number: body.parts[1]!, reason: "conflict in flake.lock" }] };
        return { job_id: id };
      },
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    page = await context.newPage();
    page.on("pageerror", (err) => console.error("page error:", err.message));
  });

  afterAll(async () => {
    await context?.close();
    await server?.close();
    for (const c of [hub, agent]) await c?.endAsync();
    await broker?.stop();
  });

  it("refuses a wrong password with a clear error", async () => {
    await page.goto(server.url);
    await page.fill("#login-username", operator.username);
    await page.fill("#login-password", operator.password + "-wrong");
    await page.click("#login-submit");
    await page.waitForSelector("#login-error:not([hidden])");
    expect(await page.textContent("#login-error")).toBe("Wrong username or password.");
    expect(await page.isHidden("#fleet-view")).toBe(true);
    await shot("login-error");
  });

  it("shows three hosts with the right compartment colours, offline dimmed", async () => {
    const t0 = Date.now();
    await login(page, operator);
    const want: Record<string, Record<CompartmentName, string>> = {
      "web-1": { agent: "ok", git: "ok", lock: "ok", system: "ok", tests: "ok" },
      "db-1": { agent: "ok", git: "outdated", lock: "outdated", system: "outdated", tests: "ok" },
      "mac-1": { agent: "failed", git: "ok", lock: "ok", system: "failed", tests: "unknown" },
    };
    // Retained messages arrive in any order across subscriptions: wait until the page settles.
    await page
      .waitForFunction(
        (w) =>
          document.querySelectorAll("tr.host").length === 3 &&
          !!document.querySelector('tr.host.online[data-host="web-1"]') &&
          Object.entries(w).every(([host, comps]) =>
            Object.entries(comps).every(([c, st]) => document.querySelector(`tr.host[data-host="${host}"] td[data-compartment="${c}"] .cell`)?.className === `cell ${st}`),
          ),
        want,
        { timeout: 5000 },
      )
      .catch(() => undefined); // the assertions below then say what differs
    console.log(`[${kind}] login to three hosts rendered: ${Date.now() - t0} ms`);
    for (const [host, comps] of Object.entries(want)) {
      for (const [c, status] of Object.entries(comps)) expect(await cellClass(page, host, c as CompartmentName), `${host} ${c}`).toBe(`cell ${status}`);
    }
    expect(await page.getAttribute('tr.host[data-host="mac-1"]', "class")).toContain("offline");
    expect(await page.getAttribute('tr.host[data-host="web-1"]', "class")).toContain("online");
    expect(await page.textContent('tr.host[data-host="mac-1"] .c-os')).toBe("macOS");
    expect(await page.textContent('tr.host[data-host="web-1"] .c-where')).toContain("Berlin");
    expect(await page.textContent('tr.host[data-host="db-1"] .c-gen')).toBe("17");
    expect(await page.textContent("#fleet-counts")).toContain("3 hosts");
    await shot("fleet");
  });

  it("shows the audit log in the Activity card: loaded after login, then live from fleet/events", async () => {
    await page.waitForSelector('#activity li[data-event="e-seeded"]');
    expect(await page.textContent('#activity li[data-event="e-seeded"]')).toMatch(/olga.*command\.sent.*db-1.*pull/);
    const live = { id: "e-live-1", at: new Date().toISOString(), actor: "rollout:r-1", action: "host.failed", target: "mac-1", details: { rolloutId: "r-1", reason: "health gate: tests failed" } };
    await hub.publishAsync(topics.events(), JSON.stringify(live), { qos: 1 });
    await page.waitForSelector('#activity li[data-event="e-live-1"]');
    const rows = await page.$$eval("#activity > li", (lis) => lis.map((li) => (li as HTMLElement).dataset.event));
    expect(rows).toEqual(["e-live-1", "e-seeded"]); // newest first
    expect(await page.textContent('#activity li[data-event="e-live-1"]')).toContain("health gate: tests failed · rollout r-1");
  });

  it("explains a compartment's colour in its tooltip, with the pending PR's lock diff", async () => {
    await page.hover('tr.host[data-host="db-1"] td[data-compartment="lock"] .cell');
    await page.waitForSelector("#tooltip:not([hidden])");
    const tip = await page.textContent("#tooltip");
    expect(tip).toContain("Lock: outdated");
    expect(tip).toContain("nixpkgs 2025-12-10 → 2025-12-17");
    expect(tip).toContain("Update PR #17 pending (CI success)");
    await shot("tooltip-lock");
    await page.hover('tr.host[data-host="mac-1"] td[data-compartment="agent"] .cell');
    expect(await page.textContent("#tooltip")).toContain("fleet expects 0.1.0");
    await page.hover('tr.host[data-host="db-1"] td[data-compartment="git"] .cell');
    expect(await page.textContent("#tooltip")).toContain("2 commit(s) behind");
    await page.mouse.move(5, 5);
  });

  it("shows the pending update PR with its lock diff and CI state", async () => {
    const card = await page.textContent("#update-card");
    expect(card).toContain("#17");
    expect(card).toContain("nixpkgs 2025-12-10 → 2025-12-17");
    expect(card).toContain("CI success");
    expect(await page.isVisible("#merge-deploy")).toBe(true);
  });

  it("lets an operator run Switch: a valid Command is published and the job output appears", async () => {
    await page.click('tr.host[data-host="web-1"] .c-host');
    await page.waitForSelector('button[data-op="switch"][data-host="web-1"]');
    const ops = await page.$$eval('tr.detail button[data-op]', (bs) => bs.map((b) => (b as HTMLElement).dataset.op));
    expect(ops).toEqual(["pull", "switch", "test", "rollback", "restart", "hold"]);
    await page.click('button[data-op="switch"][data-host="web-1"]');
    await page.waitForSelector("#confirm[open]");
    await shot("confirm-switch");
    await page.click("#confirm-ok");

    const m = await agentInbox.wait((x) => x.topic === topics.commands("web-1"));
    const command = Command.parse(JSON.parse(m.payload));
    expect(command.op).toBe("switch");
    expect(command.requestedBy).toBe(operator.username);
    expect(Date.parse(command.expiresAt)).toBeGreaterThan(Date.now());

    // The agent answers: job running, output lines, system compartment working.
    const now = new Date().toISOString();
    const job = JobState.parse({ id: command.id, host: "web-1", op: "switch", state: "running", summary: "switching to generation 42", acceptedAt: now, startedAt: now });
    await agent.publishAsync(topics.job("web-1", command.id), JSON.stringify(job), { qos: 1, retain: true });
    const out = JobOutput.parse({ id: command.id, seq: 0, lines: [{ stream: "stdout", text: "building the system configuration...", t: Date.now() }, { stream: "stderr", text: "warning: Git tree is dirty", t: Date.now() }] });
    await agent.publishAsync(topics.jobOutput("web-1", command.id), JSON.stringify(out), { qos: 0 });
    await agent.publishAsync(topics.compartment("web-1", "system"), JSON.stringify(compartment("working", "switching…")), { qos: 1, retain: true });

    await page.waitForFunction(() => document.querySelector("pre.job-output")?.textContent?.includes("building the system configuration..."));
    await page.waitForFunction(() => document.querySelector('tr.host[data-host="web-1"] td[data-compartment="system"] .cell')?.classList.contains("working"));
    expect(await page.textContent("tr.detail .job-head")).toContain("running");
    await shot("switch-running");

    await agent.publishAsync(topics.job("web-1", command.id), JSON.stringify({ ...job, state: "succeeded", summary: "generation 42 active", finishedAt: new Date().toISOString() }), { qos: 1, retain: true });
    await agent.publishAsync(topics.compartment("web-1", "system"), JSON.stringify(Compartment.parse(compartment("ok", "generation 42 is current", {}, 42))), { qos: 1, retain: true });
    await page.waitForFunction(() => document.querySelector('tr.host[data-host="web-1"] td[data-compartment="system"] .cell')?.classList.contains("ok"));
    await page.waitForFunction(() => document.querySelector('tr.host[data-host="web-1"] .c-gen')?.textContent === "42");
    expect(await page.textContent("tr.detail .job-head")).toContain("succeeded");
  });

  it("Merge & deploy calls the hub endpoint and shows the rollout's progress, then history", async () => {
    await page.click("#merge-deploy");
    await page.waitForSelector("#confirm[open]");
    await page.click("#confirm-ok");
    await page.waitForFunction(() => document.querySelector("#rollout-title")?.textContent === "Deploying 1/3");
    expect(server.calls).toContainEqual({ path: "/api/flake-updates/merge-and-deploy", user: operator.username, body: { pr_number: 17 } });
    const rolloutText = await page.textContent("#rollout-card");
    expect(rolloutText).toContain("canary");
    expect(rolloutText).toContain("wave-1");
    expect(await page.textContent('#rollout-card .chip[data-host="db-1"]')).toContain("switching");
    await shot("rollout-running");

    const done = rolloutProgress("r-pr17", ["web-1", "db-1", "mac-1"], { "web-1": "succeeded", "db-1": "succeeded", "mac-1": "succeeded" }, "completed");
    await hub.publishAsync(topics.rollout("r-pr17"), JSON.stringify(done), { qos: 1, retain: true });
    await page.waitForFunction(() => document.querySelector("#rollout-title")?.textContent === "Deployed 3/3");
    const entry = historyEntry("r-pr17", new Date().toISOString(), [
      { host: "web-1", state: "succeeded" },
      { host: "db-1", state: "succeeded" },
      { host: "mac-1", state: "failed", reason: "health gate: tests failed" },
    ], 17, PENDING_PR.lockDiff, HEAD);
    await hub.publishAsync(topics.history(entry.rolloutId), JSON.stringify(entry), { qos: 1, retain: true });
    await page.waitForSelector('#history li[data-rollout="r-pr17"]');
    const items = await page.$$eval("#history > li", (lis) => lis.map((li) => (li as HTMLElement).dataset.rollout));
    expect(items).toEqual(["r-pr17", "r-20251210"]); // newest first
    const text = await page.textContent('#history li[data-rollout="r-pr17"]');
    expect(text).toContain("PR #17");
    expect(text).toContain("mac-1");
    expect(text).toContain("nixpkgs 2025-12-10 → 2025-12-17");
    expect(await page.textContent('#history li[data-rollout="r-20251210"]')).toContain("nixpkgs 2025-12-03 → 2025-12-10");
    await shot("rollout-done-history");
  });

  it("shows the full state again right after a reload (retained topics only)", async () => {
    const t0 = Date.now();
    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll("tr.host").length === 3 && !!document.querySelector('#history li[data-rollout="r-pr17"]'));
    console.log(`[${kind}] reload to full state: ${Date.now() - t0} ms`);
    expect(await cellClass(page, "db-1", "lock")).toBe("cell outdated");
    expect(await page.textContent("#rollout-title")).toBe("Deployed 3/3");
  });

  it("tells a failed update, its revert and the convergence as one history entry", async () => {
    const at = (min: number) => new Date(Date.now() - min * 60_000).toISOString();
    const broken = { ...historyEntry("r-broken", at(30), [{ host: "web-1", state: "rolled-back" }, { host: "db-1", state: "failed", reason: "switch failed" }], 18), state: "rolled-back" as const, revertPr: { number: 19, url: "https://github.com/acme/fleet/pull/19" } };
    const back = { ...historyEntry("r-back", at(10), [{ host: "web-1", state: "succeeded" }, { host: "db-1", state: "succeeded" }], 19), converges: "r-broken", requestedBy: "lockstep automatic (mergeReverts)" };
    await hub.publishAsync(topics.history(back.rolloutId), JSON.stringify(back), { qos: 1, retain: true });
    await hub.publishAsync(topics.history(broken.rolloutId), JSON.stringify(broken), { qos: 1, retain: true });
    await page.waitForFunction(() => document.querySelector('#history li[data-rollout="r-broken"]')?.textContent?.includes("converged onto it by rollout r-back"));
    expect(await page.textContent('#history li[data-rollout="r-broken"]')).toContain("merged by lockstep automatic (mergeReverts)");
    expect(await page.$('#history li[data-rollout="r-back"]')).toBeNull();
    for (const id of [broken.rolloutId, back.rolloutId]) await hub.publishAsync(topics.history(id), "", { qos: 1, retain: true });
    await page.waitForFunction(() => !document.querySelector('#history li[data-rollout="r-broken"]'));
  });

  it("ignores an invalid payload with a console warning and keeps the last good state", async () => {
    const warnings: string[] = [];
    const onConsole = (m: { type(): string; text(): string }) => {
      if (m.type() === "warning") warnings.push(m.text());
    };
    page.on("console", onConsole);
    const hostStates = () => page.evaluate(() => (window as unknown as { lockstepStats: { hostStates: number } }).lockstepStats.hostStates);
    const before = await hostStates();
    // Host state: the hub's fleet view drops what is invalid, so the fleet stream never carries it.
    await hub.publishAsync(topics.compartment("db-1", "lock"), JSON.stringify({ status: "purple", summary: 1 }), { qos: 1, retain: false });
    await hub.publishAsync(topics.info("db-1"), "{not json", { qos: 1, retain: false });
    // A valid info after them (the stream is in order): once it is in, the invalid ones were passed over.
    await hub.publishAsync(topics.info("db-1"), JSON.stringify(threeHosts().find((h) => h.info.host === "db-1")!.info), { qos: 1, retain: true });
    await page.waitForFunction((n) => (window as unknown as { lockstepStats: { hostStates: number } }).lockstepStats.hostStates > n, before);
    // The topics the page reads from MQTT itself are checked by the page.
    await hub.publishAsync(topics.automatic(), "{not json", { qos: 1, retain: false });
    await hub.publishAsync(topics.rollout("r-bad"), JSON.stringify({ id: "r-bad", state: 1 }), { qos: 1, retain: false });
    await page.waitForFunction(() => (window as unknown as { lockstepStats: { invalid: number } }).lockstepStats.invalid >= 2);
    page.off("console", onConsole);
    expect(await cellClass(page, "db-1", "lock")).toBe("cell outdated");
    expect(await page.textContent('tr.host[data-host="db-1"] .c-gen')).toBe("17");
    expect(warnings.some((w) => w.includes(topics.rollout("r-bad")) && w.includes("not a rollout"))).toBe(true);
    expect(warnings.some((w) => w.includes(topics.automatic()) && w.includes("not JSON"))).toBe(true);
  });

  it("says loudly while the hub cannot write its data dir (hub/storage), and clears once it can", async () => {
    const since = new Date(Date.now() - 60_000).toISOString();
    const fault = {
      state: "fault", since, dataDir: "/var/lib/lockstep", code: "ENOSPC", path: "/var/lib/lockstep/rollouts/r-1.log",
      hint: "Free space on the data dir's file system.", faults: [{ writer: "rollouts", code: "ENOSPC", path: "/var/lib/lockstep/rollouts/r-1.log", message: "no space left on device", since }],
      heldRollouts: ["r-1"], updatedAt: since,
    };
    await hub.publishAsync(topics.hubStorage(), JSON.stringify(fault), { qos: 1, retain: true });
    await page.waitForFunction(() => (document.querySelector("#banner") as HTMLElement | null)?.dataset.storage === "fault");
    const text = await page.textContent("#banner");
    expect(text).toContain("cannot write its data dir (ENOSPC at /var/lib/lockstep/rollouts/r-1.log)");
    expect(text).toContain("new rollouts are refused. 1 rollout is held until it can. Free space");
    expect(await page.isVisible("#banner")).toBe(true);
    await hub.publishAsync(topics.hubStorage(), JSON.stringify({ state: "ok", since, dataDir: "/var/lib/lockstep", faults: [], heldRollouts: [], updatedAt: since }), { qos: 1, retain: true });
    await page.waitForFunction(() => (document.querySelector("#banner") as HTMLElement | null)?.hidden === true);
    await hub.publishAsync(topics.hubStorage(), "", { qos: 1, retain: true });
  });

  it("shows a viewer no actions, and the broker refuses the viewer's command anyway", async () => {
    const vctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const vpage = await vctx.newPage();
    await login(vpage, viewer);
    await vpage.waitForFunction(() => document.querySelectorAll("tr.host").length === 3);
    expect(await vpage.textContent("#session-user")).toContain("viewer");
    await vpage.click('tr.host[data-host="web-1"] .c-host');
    await vpage.waitForSelector("tr.detail");
    expect(await vpage.$$("button[data-op]")).toHaveLength(0);
    expect(await vpage.$("#merge-deploy")).toBeNull();
    expect(await vpage.isHidden("#check-updates")).toBe(true);
    await shot("viewer", vpage);
    await vctx.close();

    // The same command the page would send, published with the viewer's credentials.
    const seen = agentInbox.messages.length;
    const v = await mqtt.connectAsync(broker.url, { ...viewer, reconnectPeriod: 0, clientId: `viewer-probe-${Date.now()}` });
    const now = new Date();
    const cmd = Command.parse({ id: "viewer-attempt-1", op: "switch", args: {}, issuedAt: now.toISOString(), expiresAt: new Date(now.getTime() + 60_000).toISOString(), requestedBy: viewer.username });
    v.publish(topics.commands("web-1"), JSON.stringify(cmd), { qos: 1 });
    await new Promise((r) => setTimeout(r, 800));
    await v.endAsync(true);
    expect(agentInbox.messages.slice(seen).filter((m) => m.topic === topics.commands("web-1"))).toEqual([]);
  });

  it("shows an update made of several PRs part by part and merges them together", async () => {
    const part = (number: number, input: string, ci: "success" | "pending") => ({
      ...PENDING_PR,
      number,
      title: `Update flake input: ${input}`,
      url: `https://github.com/example/fleet/pull/${number}`,
      headBranch: `update-${input}`,
      lockDiff: { added: [], removed: [], updated: [{ input, old: { type: "github", date: "2025-12-10" }, new: { type: "github", date: "2025-12-17" } }] },
      ci: { state: ci },
    });
    const parts = [part(21, "nixpkgs", "success"), part(22, "home-manager", "pending")];
    await hub.publishAsync(topics.expected(), JSON.stringify(expectedState({ ...parts[0]!, superseded: [], parts })), { qos: 1, retain: true });
    await page.waitForFunction(() => document.querySelectorAll("#update-body li.part").length === 2);
    const items = await page.$$eval("#update-body li.part", (lis) => lis.map((li) => [(li as HTMLElement).dataset.pr, li.textContent]));
    expect(items.map(([pr]) => pr)).toEqual(["21", "22"]);
    expect(items[0]![1]).toContain("nixpkgs");
    expect(items[1]![1]).toContain("CI pending");
    // The update is green only when every part is.
    expect(await page.getAttribute("#merge-deploy", "title")).toBe("CI is pending");
    parts[1]!.ci = { state: "success" };
    await hub.publishAsync(topics.expected(), JSON.stringify(expectedState({ ...parts[0]!, superseded: [], parts })), { qos: 1, retain: true });
    await page.waitForFunction(() => document.querySelector("#merge-deploy")?.getAttribute("title") === "");
    expect(await page.textContent("#merge-deploy")).toBe("Merge 2 PRs & deploy");
    await shot("update-in-parts");

    await page.click("#merge-deploy");
    await page.waitForSelector("#confirm[open]");
    expect(await page.textContent("#confirm")).toContain("Merge PRs #21, #22 (in this order) and deploy?");
    await page.click("#confirm-ok");
    await page.waitForFunction(() => document.querySelector("#banner")?.textContent?.includes("not merged"));
    expect(server.calls).toContainEqual({ path: "/api/flake-updates/merge-and-deploy", user: operator.username, body: { pr_number: 21, parts: [21, 22] } });
    expect(await page.textContent("#banner")).toBe("Merged #21; not merged: #22 (conflict in flake.lock). Rollout r-pr21 deploys what was merged.");
  });

  it("fits a phone screen", async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const p = await phone.newPage();
    await login(p, operator);
    await p.waitForFunction(() => document.querySelectorAll("tr.host").length === 3);
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await shot("phone", p);
    await phone.close();
  });
});
