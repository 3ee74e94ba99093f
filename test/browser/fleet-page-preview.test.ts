/**
 * The pending PR's preview on the fleet page, fed by a REAL preview run (test/demo/world.ts: the hub
 * child process with its PreviewService, the local GitHub, three real agents on git and Nix). The
 * update bumps hello and the kernel on alpha, changes nothing on beta and breaks gamma's build; the
 * hub asks the fleet (alpha and gamma are canaries, so they build) and republishes what the agents
 * found. The page must show, before "Merge & deploy": the fleet summary, the progress while hosts
 * still preview, each host's package list on expand, beta marked not affected, gamma red with the
 * build error's last lines. What it shows is compared with the previews the agents published.
 *
 * Screenshots: test-results/screenshots/preview-*.png. Needs `npm run build` (hub and agents run from dist/).
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatPackageChange, type HostPreview } from "../../protocol/index.js";
import { LockstepWorld, OPERATOR } from "../demo/world.js";
import { CHROMIUM_ARGS, CHROMIUM_PATH } from "./page-server.js";

const SHOTS = join(process.cwd(), "test-results", "screenshots");
mkdirSync(SHOTS, { recursive: true });
const HOSTS = ["alpha", "beta", "gamma"];
const FAILED_RED = "rgb(229, 57, 53)";

describe("fleet page: the preview of a pending update, from a real preview run", () => {
  let root: string;
  let world: LockstepWorld;
  let browser: Browser;
  let page: Page;
  let pr: { number: number; headSha: string };
  const pageErrors: string[] = [];
  const hostRow = (host: string) => `#preview details.pv-host[data-host="${host}"]`;
  const shot = (name: string) => page.locator("#update-card").screenshot({ path: join(SHOTS, `preview-${name}.png`) });
  /** The agents' preview of `host` for the PR's head (what the hub republished from). */
  const agentPreview = (host: string): HostPreview => {
    const p = world.fleet.previews.get(`${pr.number}/${host}`);
    if (!p || p.headSha !== pr.headSha) throw new Error(`no preview of ${host} for the PR head`);
    return p;
  };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lockstep-page-preview-"));
    world = await LockstepWorld.create({
      root,
      hosts: HOSTS,
      hostOptions: { alpha: { priority: 1, canary: true }, beta: { priority: 2 }, gamma: { priority: 3, canary: true } },
    });
    world.fleet.repo.setHostModule("alpha", { packages: ["hello", "coreutils"], kernel: true, switchScript: true, message: root });
    world.fleet.repo.setHostModule("beta", { packages: ["coreutils"] });
    world.fleet.repo.setHostModule("gamma", { packages: ["openssl"] });
    await world.fleet.bootstrap();
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: "light" });
    page = await context.newPage();
    page.on("pageerror", (err) => pageErrors.push(err.message));
    await page.goto(world.hub.baseUrl + "/");
    await page.fill("#login-username", OPERATOR.name);
    await page.fill("#login-password", OPERATOR.password);
    await page.click("#login-submit");
    await page.waitForSelector("#fleet-view:not([hidden])", { timeout: 20_000 });
    await page.waitForFunction(() => document.querySelectorAll("tr.host.online").length === 3, undefined, { timeout: 30_000 });
  }, 300_000);

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    await world?.stop();
    if (root && !process.env.LOCKSTEP_KEEP_E2E) rmSync(root, { recursive: true, force: true });
  }, 60_000);

  it("shows the fleet summary before Merge & deploy, with progress while hosts still preview", async () => {
    // Every text the progress badge shows, from the moment the PR appears.
    await page.evaluate(() => {
      const w = window as unknown as { __progress: string[] };
      w.__progress = [];
      new MutationObserver(() => {
        const text = document.querySelector("#preview-progress")?.textContent;
        if (text && w.__progress.at(-1) !== text) w.__progress.push(text);
      }).observe(document.querySelector("#update-body")!, { subtree: true, childList: true, characterData: true });
    });
    pr = await world.openLockUpdatePr({ packages: { hello: { version: "2.13", size: 60_000 }, openssl: { version: "3.0.16", broken: true }, linux: { version: "6.6.60" } } });
    world.github.setStatus(pr.headSha, "success", "ci/build");
    await page.waitForFunction((n) => document.querySelector("#update-body .pr-title")?.textContent?.includes(`#${n}`), pr.number, { timeout: 60_000 });
    // Done when the badge says how it ended (gamma does not build).
    await page.waitForFunction(() => document.querySelector("#preview .pv-head .badge")?.textContent === "does not build", undefined, { timeout: 300_000 });
    for (const h of HOSTS) await world.fleet.waitForPreview(pr.number, h, pr.headSha, 30_000);

    const summary = await page.textContent("#preview-summary");
    expect(summary).toContain("affects 2 of 3 hosts");
    expect(summary).toContain("1 needs a reboot");
    expect(summary).toContain("does not build on gamma");
    expect(summary).toContain("hello 2.12 → 2.13");
    // While the hosts previewed, the page said how far they had got.
    const progress = await page.evaluate(() => (window as unknown as { __progress: string[] }).__progress);
    expect(progress.length, JSON.stringify(progress)).toBeGreaterThan(0);
    for (const p of progress) expect(p).toMatch(/^previewing [0-2] of 3$/);
    // The summary comes before the button that merges.
    const order = await page.evaluate(() => document.querySelector("#preview")!.compareDocumentPosition(document.querySelector("#merge-deploy")!));
    expect(order & 4, "Merge & deploy follows the preview").toBe(4);
    // One row per host, with the outcome the agents found.
    const outcomes = await page.$$eval("#preview details.pv-host", (ds) => ds.map((d) => [(d as HTMLElement).dataset.host, (d as HTMLElement).dataset.outcome]));
    expect(outcomes).toEqual(HOSTS.map((h) => [h, agentPreview(h).outcome]));
    expect(outcomes).toEqual([["alpha", "affected"], ["beta", "not-affected"], ["gamma", "does-not-build"]]);
    await shot("summary");
  }, 360_000);

  it("expands a host to its package list (what the agent's diff-closures found)", async () => {
    await page.click(`${hostRow("alpha")} > summary`);
    await page.waitForSelector(`${hostRow("alpha")}[open] ul.pv-packages`);
    const items = await page.$$eval(`${hostRow("alpha")} ul.pv-packages li`, (lis) => lis.map((li) => li.textContent ?? ""));
    const alpha = agentPreview("alpha");
    const changed = alpha.packages.filter((c) => c.old.length || c.new.length);
    expect(items).toHaveLength(changed.length);
    changed.forEach((c, i) => expect(items[i]).toContain(formatPackageChange(c)));
    expect(items.some((t) => t.startsWith("hello 2.12 → 2.13"))).toBe(true);
    expect(items.some((t) => t.startsWith("linux 6.6.58 → 6.6.60"))).toBe(true);
    expect(await page.textContent(hostRow("alpha"))).toContain("reboot: yes");
    expect(await page.textContent(`${hostRow("alpha")} > summary`)).toContain("builds: yes");
    await shot("host-packages");
  }, 60_000);

  it("marks the host the update does not affect", async () => {
    await page.click(`${hostRow("alpha")} > summary`);
    await page.click(`${hostRow("beta")} > summary`);
    await page.waitForSelector(`${hostRow("beta")}[open]`);
    expect(await page.textContent(`${hostRow("beta")} .badge`)).toBe("not affected");
    expect(await page.textContent(hostRow("beta"))).toContain("changes nothing on this host");
    expect(await page.$(`${hostRow("beta")} ul.pv-packages`)).toBeNull();
    await shot("unaffected");
  }, 60_000);

  it("shows the failed preview red, with the last lines of the build error", async () => {
    await page.click(`${hostRow("beta")} > summary`);
    await page.click(`${hostRow("gamma")} > summary`);
    await page.waitForSelector(`${hostRow("gamma")}[open] pre.pv-reason`);
    const reason = (await page.textContent(`${hostRow("gamma")} pre.pv-reason`)) ?? "";
    expect(reason).toContain("openssl-3.0.16 does not build");
    const lastErrorLine = agentPreview("gamma").error!.split("\n").filter((l) => l.trim()).at(-1)!.trim();
    expect(reason.split("\n").at(-1)).toBe(lastErrorLine);
    expect(reason.split("\n").length).toBeLessThanOrEqual(3);
    expect(await page.$eval(`${hostRow("gamma")} .badge`, (e) => getComputedStyle(e).backgroundColor)).toBe(FAILED_RED);
    expect(await page.$eval(hostRow("gamma"), (e) => getComputedStyle(e).borderLeftColor)).toBe(FAILED_RED);
    expect(await page.$eval(`${hostRow("gamma")} pre.pv-reason`, (e) => getComputedStyle(e).color)).toBe(FAILED_RED);
    await shot("failed");
    expect(pageErrors).toEqual([]);
  }, 60_000);
});
