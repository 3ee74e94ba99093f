/**
 * The fleet page in headless Chromium against the REAL world (test/demo/world.ts): the hub child
 * process (embedded broker, Node-RED with the shipped flows, the page at `/`, MQTT over WebSocket
 * at `/mqtt`), the local GitHub with a real lock-update PR, and three real agents on git and Nix.
 *
 * One world for the file, in order: an operator logs in and sees the three hosts with the
 * compartment colours the agents report; clicks Switch on beta and watches the job's output and
 * the System compartment go working → ok; sees the pending PR (lock diff, CI green) and starts
 * Merge & deploy; watches the rollout finish. A viewer sees no action buttons, and the broker
 * drops the viewer's command anyway.
 *
 * Screenshots: test-results/screenshots/real-*.png. Needs `npm run build` (hub and agents run from dist/).
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CredentialStore } from "../../broker/credentials.js";
import { COMPARTMENTS, type CompartmentName } from "../../protocol/index.js";
import { LockstepWorld, OPERATOR } from "../demo/world.js";
import { CHROMIUM_ARGS, CHROMIUM_PATH } from "./page-server.js";

const SHOTS = join(process.cwd(), "test-results", "screenshots");
mkdirSync(SHOTS, { recursive: true });

const HOSTS = ["alpha", "beta", "gamma"];
const VIEWER = { name: "page-viewer", password: "viewer-password-for-page-tests" };
/** The page's colours (dashboard/style.css, light scheme) as Chromium computes them. */
const COLOURS: Record<string, string> = {
  ok: "rgb(67, 160, 71)",
  outdated: "rgb(249, 198, 35)",
  failed: "rgb(229, 57, 53)",
  working: "rgb(30, 136, 229)",
  unknown: "rgb(160, 166, 173)",
};

const cellSel = (host: string, c: CompartmentName) => `tr.host[data-host="${host}"] td[data-compartment="${c}"] .cell`;

describe("fleet page against the real hub, GitHub and three agents", () => {
  let root: string;
  let world: LockstepWorld;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let prNumber = 0;
  const pageErrors: string[] = [];
  const t0 = Date.now();
  /** A full-page screenshot from the top (the sticky top bar would cover what a scrolled page has above it). */
  async function shot(name: string, p: Page = page): Promise<void> {
    await p.evaluate(() => window.scrollTo(0, 0));
    await p.screenshot({ path: join(SHOTS, `real-${name}.png`), fullPage: true });
  }

  async function login(p: Page, user: { name: string; password: string }): Promise<void> {
    await p.goto(world.hub.baseUrl + "/");
    await p.fill("#login-username", user.name);
    await p.fill("#login-password", user.password);
    await p.click("#login-submit");
    await p.waitForSelector("#fleet-view:not([hidden])", { timeout: 20_000 });
  }

  /** What the page shows for each host's compartments, as "cell <status>" classes. */
  const pageCells = (p: Page) =>
    p.evaluate(
      ({ hosts, names }) =>
        Object.fromEntries(
          hosts.map((h) => [h, Object.fromEntries(names.map((c) => [c, document.querySelector(`tr.host[data-host="${h}"] td[data-compartment="${c}"] .cell`)?.className ?? "missing"]))]),
        ),
      { hosts: HOSTS, names: [...COMPARTMENTS] },
    );

  /** What the agents report (the test fleet's own MQTT view), in the same shape. */
  const agentCells = () =>
    Object.fromEntries(HOSTS.map((h) => [h, Object.fromEntries(COMPARTMENTS.map((c) => [c, `cell ${world.fleet.compartment(h, c)?.status ?? "unknown"}`]))]));

  /** Wait until the page's cells equal `want` (a function: the agents' view moves too). */
  async function waitForCells(p: Page, want: () => Record<string, Record<string, string>>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = await pageCells(p);
      const expected = want();
      if (JSON.stringify(got) === JSON.stringify(expected)) return;
      if (Date.now() > deadline) {
        expect(got, "the page's compartment cells").toEqual(expected);
        return;
      }
      await p.waitForTimeout(250);
    }
  }

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lockstep-page-real-"));
    world = await LockstepWorld.create({
      root,
      hosts: HOSTS,
      hostOptions: { alpha: { priority: 1, canary: true, location: "Berlin" }, beta: { priority: 2, tags: ["web"] }, gamma: { priority: 3, tags: ["db"] } },
      hubConfig: {
        rollout: {
          strategy: {
            soakMs: 500,
            waves: { size: 2 },
            parallelism: 2,
            healthTimeoutMs: 60_000,
            stepTimeouts: { pull: 60_000, switch: 120_000, test: 60_000 },
          },
        },
      },
    });
    // A viewer, added the way `lockstep users add` does (the running broker reloads the file).
    const store = await CredentialStore.open(join(world.dataDir, "credentials.json"));
    await store.add(VIEWER.name, "viewer", VIEWER.password);
    await world.fleet.bootstrap();
    for (const deadline = Date.now() + 20_000; (await world.api("GET", "/api/whoami", undefined, VIEWER)).status !== 200; ) {
      if (Date.now() > deadline) throw new Error("the hub does not know the viewer 20 s after it was added");
      await new Promise((r) => setTimeout(r, 250));
    }
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: "light" });
    page = await context.newPage();
    page.on("pageerror", (err) => pageErrors.push(err.message));
    console.log(`[page-real] world up and bootstrapped in ${Date.now() - t0} ms`);
  }, 180_000);

  afterAll(async () => {
    await context?.close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    await world?.stop();
    if (root && !process.env.LOCKSTEP_KEEP_E2E) rmSync(root, { recursive: true, force: true });
    console.log(`[page-real] whole file: ${Date.now() - t0} ms`);
  }, 60_000);

  it("logs the operator in and shows the three hosts with the compartment colours the agents report", async () => {
    await login(page, OPERATOR);
    expect(await page.textContent("#session-user")).toBe(`${OPERATOR.name} · operator`);
    await page.waitForFunction(() => document.querySelectorAll("tr.host.online").length === 3, undefined, { timeout: 20_000 });
    // After the bootstrap (pull, switch, test at head, no PR open) every compartment is green.
    const allOk = Object.fromEntries(HOSTS.map((h) => [h, Object.fromEntries(COMPARTMENTS.map((c) => [c, "cell ok"]))]));
    await waitForCells(page, () => allOk, 20_000);
    expect(agentCells()).toEqual(allOk);
    for (const h of HOSTS) {
      expect(await page.textContent(`tr.host[data-host="${h}"] .c-gen`), h).toBe(String(world.fleet.generation(h).generation));
      for (const c of COMPARTMENTS) {
        const bg = await page.$eval(cellSel(h, c), (e) => getComputedStyle(e).backgroundColor);
        expect(bg, `${h} ${c}`).toBe(COLOURS.ok);
      }
    }
    expect(await page.textContent('tr.host[data-host="alpha"] .flags')).toContain("canary");
    expect(await page.textContent('tr.host[data-host="alpha"] .c-where')).toContain("Berlin");
    expect(await page.textContent("#fleet-counts")).toContain("3 hosts");
    expect(await page.textContent("#fleet-counts")).toContain("3 online");
    // No PR is open yet: the hub's fleet/expected says so.
    await page.waitForFunction(() => document.querySelector("#update-body")?.textContent?.includes("no update PR is open"), undefined, { timeout: 20_000 });
    await shot("fleet");
  }, 60_000);

  it("Switch on beta: the real agent runs it, the page shows its live output and System goes working → ok", async () => {
    // Record every class the System cell takes: a fast switch can be blue for a moment only.
    await page.evaluate((sel) => {
      const w = window as unknown as { __systemClasses: string[] };
      w.__systemClasses = [];
      const cell = document.querySelector(sel)!;
      new MutationObserver(() => w.__systemClasses.push(cell.className)).observe(cell, { attributes: true, attributeFilter: ["class"] });
    }, cellSel("beta", "system"));
    const jobsBefore = new Set(world.fleet.jobs.get("beta")?.keys() ?? []);

    await page.click('tr.host[data-host="beta"] .c-host');
    await page.waitForSelector('button[data-op="switch"][data-host="beta"]');
    const ops = await page.$$eval('tr.detail[data-detail-for="beta"] button[data-op]', (bs) => bs.map((b) => (b as HTMLElement).dataset.op));
    expect(ops).toEqual(["pull", "switch", "test", "rollback", "restart", "hold"]);
    // Record every state the job's badge shows in the open detail row.
    await page.evaluate(() => {
      const w = window as unknown as { __jobBadges: string[] };
      w.__jobBadges = [];
      const td = document.querySelector('tr.detail[data-detail-for="beta"]')!;
      new MutationObserver(() => {
        const text = td.querySelector(".job-head")?.textContent ?? "";
        if (text && w.__jobBadges.at(-1) !== text) w.__jobBadges.push(text);
      }).observe(td, { subtree: true, childList: true, characterData: true });
    });
    await page.click('button[data-op="switch"][data-host="beta"]');
    await page.waitForSelector("#confirm[open]");
    expect(await page.textContent("#confirm-text")).toContain("beta");
    await page.click("#confirm-ok");

    // The real agent accepted the page's command: a new switch job by the operator.
    const job = await world.fleet.until(
      () => [...(world.fleet.jobs.get("beta")?.values() ?? [])].find((j) => !jobsBefore.has(j.id) && j.op === "switch"),
      30_000,
      "beta's switch job",
    );
    expect(job.id).toMatch(/^page-switch-/);
    // Its output streams into the detail row.
    await page.waitForFunction(() => (document.querySelector('tr.detail[data-detail-for="beta"] pre.job-output')?.textContent ?? "").trim().length > 0, undefined, { timeout: 60_000 });
    await shot("switch-output");
    await page.waitForFunction(() => document.querySelector('tr.detail[data-detail-for="beta"] .job-head .badge')?.textContent === "succeeded", undefined, { timeout: 90_000 });
    const done = await world.fleet.waitForJob("beta", job.id, { timeoutMs: 30_000 });
    expect(done.state).toBe("succeeded");
    expect(await page.textContent('tr.detail[data-detail-for="beta"] .job-head')).toContain("switch");
    // The page showed the job while it ran, then its end.
    const badges = await page.evaluate(() => (window as unknown as { __jobBadges: string[] }).__jobBadges);
    const running = badges.findIndex((b) => b.startsWith("switchrunning"));
    expect(running, JSON.stringify(badges)).toBeGreaterThanOrEqual(0);
    expect(badges.findIndex((b) => b.startsWith("switchsucceeded"))).toBeGreaterThan(running);
    // The page shows what the agent printed (its first line at least).
    const lines = world.fleet.jobOutput("beta", job.id);
    expect(lines.length).toBeGreaterThan(0);
    expect(await page.textContent('tr.detail[data-detail-for="beta"] pre.job-output')).toContain(lines[0]!.text);

    // System went blue while the switch ran, and is green again now.
    await page.waitForFunction((sel) => document.querySelector(sel)?.className === "cell ok", cellSel("beta", "system"), { timeout: 30_000 });
    const seen = await page.evaluate(() => (window as unknown as { __systemClasses: string[] }).__systemClasses);
    expect(seen).toContain("cell working");
    expect(seen.indexOf("cell working")).toBeLessThan(seen.lastIndexOf("cell ok"));
    expect(await page.$eval(cellSel("beta", "system"), (e) => getComputedStyle(e).backgroundColor)).toBe(COLOURS.ok);
    await shot("switch-done");
  }, 120_000);

  it("shows the pending lock-update PR with its diff and green CI; the Lock cells turn yellow", async () => {
    const pr = await world.openLockUpdatePr();
    prNumber = pr.number;
    world.github.setStatus(pr.headSha, "success", "ci/build");
    await page.waitForFunction((n) => document.querySelector("#update-body .pr-title")?.textContent?.includes(`#${n}`), pr.number, { timeout: 30_000 });
    // The status webhook may land before or after the PR's: "Check now" asks the hub to look again.
    const ciGreen = () => page.waitForFunction(() => document.querySelector("#update-body .pr-meta")?.textContent?.includes("CI success"), undefined, { timeout: 15_000 });
    await ciGreen().catch(async () => {
      await page.click("#check-updates");
      await ciGreen();
    });
    const card = await page.textContent("#update-body");
    expect(card).toMatch(/nixpkgs .+ → .+/);
    expect(await page.isEnabled("#merge-deploy")).toBe(true);
    for (const h of HOSTS) {
      await page.waitForFunction((sel) => document.querySelector(sel)?.className === "cell outdated", cellSel(h, "lock"), { timeout: 30_000 });
      expect(await page.$eval(cellSel(h, "lock"), (e) => getComputedStyle(e).backgroundColor), h).toBe(COLOURS.outdated);
    }
    // The tooltip says why: the PR and its lock diff.
    await page.hover(cellSel("gamma", "lock"));
    await page.waitForSelector("#tooltip:not([hidden])");
    const tip = await page.textContent("#tooltip");
    expect(tip).toContain(`Update PR #${pr.number} pending (CI success)`);
    expect(tip).toMatch(/nixpkgs .+ → .+/);
    await shot("pending-pr");
    await page.mouse.move(5, 5);
  }, 60_000);

  it("Merge & deploy from the page merges the PR on GitHub and the page follows the rollout to the end", async () => {
    expect(prNumber).toBeGreaterThan(0);
    await page.click("#merge-deploy");
    await page.waitForSelector("#confirm[open]");
    expect(await page.textContent("#confirm-title")).toBe(`Merge PR #${prNumber} and deploy?`);
    await page.click("#confirm-ok");

    // The hub answered 202 with the rollout's id: the page says so and follows that rollout.
    await page.waitForFunction((n) => document.querySelector("#banner")?.textContent?.startsWith(`Merging PR #${n}; rollout `), prNumber, { timeout: 30_000 });
    const rolloutId = /rollout (\S+) started/.exec((await page.textContent("#banner")) ?? "")?.[1];
    expect(rolloutId).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]+$/);
    await page.waitForFunction(() => /^Deploying \d\/3$/.test(document.querySelector("#rollout-title")?.textContent ?? ""), undefined, { timeout: 30_000 });
    const merged = world.github.pullRequest(prNumber);
    expect(merged.merged).toBe(true);
    const commit = merged.mergeCommitSha!;
    expect(await page.textContent("#rollout-body")).toContain(`commit ${commit.slice(0, 8)}`);
    expect(await page.textContent("#rollout-body")).toContain(`by api:${OPERATOR.name}`);
    const phases = await page.$$eval("#rollout-body .phase", (ps) => ps.map((p) => (p as HTMLElement).dataset.phase));
    expect(phases).toEqual(["canary", "wave-1"]);
    await shot("rollout-running");

    await page.waitForFunction(() => document.querySelector("#rollout-title")?.textContent === "Deployed 3/3", undefined, { timeout: 150_000 });
    expect(await page.textContent("#rollout-state")).toBe("completed");
    for (const h of HOSTS) {
      expect(await page.textContent(`#rollout-body .chip[data-host="${h}"] .badge`), h).toBe("succeeded");
      expect(world.fleet.checkoutHead(h), h).toBe(commit);
    }
    const rollout = await world.waitForRolloutEnd(rolloutId!, 30_000);
    expect(rollout.state).toBe("completed");
    expect(rollout.commit).toBe(commit);
    // The PR is merged and no other is open: every host is green again, as its agent reports.
    await waitForCells(page, agentCells, 60_000);
    await waitForCells(page, () => Object.fromEntries(HOSTS.map((h) => [h, Object.fromEntries(COMPARTMENTS.map((c) => [c, "cell ok"]))])), 60_000);
    for (const h of HOSTS) expect(await page.textContent(`tr.host[data-host="${h}"] .c-gen`), h).toBe(String(world.fleet.generation(h).generation));
    // The finished rollout is in the history with its PR.
    await page.waitForSelector(`#history li[data-rollout="${rollout.id}"]`, { timeout: 30_000 });
    expect(await page.textContent(`#history li[data-rollout="${rollout.id}"]`)).toContain(`PR #${prNumber}`);
    await shot("rollout-done");
  }, 180_000);

  it("shows a viewer no actions, and the broker drops the viewer's command anyway", async () => {
    const vctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: "light" });
    try {
      const vpage = await vctx.newPage();
      await login(vpage, VIEWER);
      expect(await vpage.textContent("#session-user")).toBe(`${VIEWER.name} · viewer`);
      await vpage.waitForFunction(() => document.querySelectorAll("tr.host.online").length === 3, undefined, { timeout: 20_000 });
      await waitForCells(vpage, agentCells, 20_000);
      await vpage.click('tr.host[data-host="beta"] .c-host');
      await vpage.waitForSelector('tr.detail[data-detail-for="beta"]');
      expect(await vpage.$$("button[data-op]")).toHaveLength(0);
      expect(await vpage.$("#merge-deploy")).toBeNull();
      expect(await vpage.isHidden("#check-updates")).toBe(true);
      await shot("viewer", vpage);
    } finally {
      await vctx.close();
    }

    // The command the page would send, published with the viewer's own MQTT login.
    const v = await mqtt.connectAsync(world.hub.mqttUrl, { username: VIEWER.name, password: VIEWER.password, reconnectPeriod: 0, protocolVersion: 4 });
    const id = `viewer-attempt-${Date.now().toString(36)}`;
    const now = Date.now();
    try {
      await v.publishAsync(
        world.topics.commands("beta"),
        JSON.stringify({ id, op: "switch", args: {}, issuedAt: new Date(now).toISOString(), expiresAt: new Date(now + 60_000).toISOString(), requestedBy: VIEWER.name }),
        { qos: 1 },
      );
    } finally {
      await v.endAsync();
    }
    // The hub's broker logs the refusal; only then is "no job" meaningful.
    await world.fleet.until(() => world.hub.output().split("\n").find((l) => l.includes("mqtt publish denied") && l.includes(VIEWER.name)), 15_000, "the broker's denial");
    expect(world.fleet.job("beta", id)).toBeUndefined();
    expect(pageErrors).toEqual([]);
  }, 60_000);
});
