/**
 * Fleet page benchmark (issue 15): N hosts as retained protocol topics on the embedded broker and on
 * Mosquitto (same run), the page in headless Chromium. Per fleet size and broker:
 * - login → full fleet: from the click on "Sign in" until every host is in the table (the page's
 *   own count, lockstepStats.rows) and the hub's fleet stream (hub/fleet-stream.ts) has given the
 *   page its whole snapshot; the page takes host state from that stream, not from the broker's
 *   retained replay, so both brokers serve the same host state here (the other topics differ);
 * - login → first summary: until the header shows the fleet's counts (the hub's retained summary);
 * - the longest frame while loading: the largest gap between animation frames and the longest
 *   task Chromium reports (PerformanceObserver "longtask");
 * - one change end to end, a burst of changes, "Needs attention" on and off.
 * Starts and stops everything itself; returns numbers in milliseconds.
 */
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { chromium, type Browser, type Page } from "playwright-core";
import pino from "pino";
import { Topics, type CompartmentName, type Status } from "../../protocol/index.js";
import { FleetView } from "../../rollout/fleet-view.js";
import { FleetSummaryPublisher } from "../../hub/fleet-summary.js";
import { startTestBroker, type BrokerKind } from "../support/brokers.js";
import { mosquittoAvailable } from "../support/mosquitto.js";
import { summarizeTrace } from "./chromium-trace.js";
import { CHROMIUM_ARGS, CHROMIUM_PATH, startPageServer } from "../browser/page-server.js";
import { compartment, expectedState, largeFleetHost, needingAttention, publishFleet } from "../browser/fleet-fixture.js";

export interface DashboardBenchOptions {
  /** Fleet sizes, e.g. [1000, 10000]. */
  hosts: number[];
  /** Leave Mosquitto out. */
  embeddedOnly?: boolean;
  /** Give up on one phase after this long (default 5 min). */
  phaseTimeoutMs?: number;
  /** Write a Chromium trace of each login → full fleet here and add its summary to the figures. */
  traceDir?: string;
}

/** Installed before the page's own scripts: frame gaps and long tasks, measured while `armed`. */
function frameMonitor(): void {
  const w = window as unknown as { __frames: { armed: boolean; maxGap: number; longestTask: number; longTasks: number; last: number } };
  const f = (w.__frames = { armed: false, maxGap: 0, longestTask: 0, longTasks: 0, last: 0 });
  new PerformanceObserver((list) => {
    if (!f.armed) return;
    for (const e of list.getEntries()) {
      f.longTasks++;
      f.longestTask = Math.max(f.longestTask, e.duration);
    }
  }).observe({ type: "longtask", buffered: false });
  const tick = (t: number) => {
    if (f.armed && f.last) f.maxGap = Math.max(f.maxGap, t - f.last);
    f.last = t;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

interface Frames {
  maxGap: number;
  longestTask: number;
  longTasks: number;
}
const arm = (page: Page) =>
  page.evaluate(() => {
    const f = (window as unknown as { __frames: Frames & { armed: boolean; last: number } }).__frames;
    Object.assign(f, { armed: true, maxGap: 0, longestTask: 0, longTasks: 0, last: 0 });
  });
const disarm = (page: Page) =>
  page.evaluate(() => {
    const f = (window as unknown as { __frames: Frames & { armed: boolean } }).__frames;
    f.armed = false;
    return { maxGap: f.maxGap, longestTask: f.longestTask, longTasks: f.longTasks };
  });

/** Every host is in the table and the fleet stream's snapshot is in (polls each frame, after the page's render). */
const fleetShown = (page: Page, n: number, timeout: number) =>
  page.waitForFunction(
    (rows) => {
      const s = (window as unknown as { lockstepStats?: { rows: number; fleetLoaded: boolean } }).lockstepStats;
      return !!s && s.fleetLoaded && s.rows === rows;
    },
    n,
    { timeout, polling: "raf" },
  );
/** The page has applied at least `n` host states from the fleet stream. */
const hostStatesAre = (page: Page, n: number, timeout: number) =>
  page.waitForFunction((want) => (window as unknown as { lockstepStats: { hostStates: number } }).lockstepStats.hostStates >= want, n, { timeout, polling: "raf" });
const hostStates = (page: Page) => page.evaluate(() => (window as unknown as { lockstepStats: { hostStates: number } }).lockstepStats.hostStates);

async function runOnce(browser: Browser, kind: BrokerKind, hosts: number, timeout: number, traceDir?: string): Promise<Record<string, number>> {
  const topics = new Topics();
  const phase = (what: string) => process.stderr.write(`  dashboard ${hosts}h ${kind}: ${what}\n`);
  const broker = await startTestBroker({ kind });
  let hub: MqttClient | undefined;
  let fleet: FleetView | undefined;
  let summary: FleetSummaryPublisher | undefined;
  let server: Awaited<ReturnType<typeof startPageServer>> | undefined;
  try {
    const operator = await broker.credentials("operator", "bench");
    hub = await mqtt.connectAsync(broker.url, { ...(await broker.credentials("hub", "bench")), reconnectPeriod: 0 });
    // The hub's summary publisher, as the hub runs it, keeps fleet/summary retained while seeding.
    fleet = new FleetView({ client: hub, topics, logger: pino({ level: "silent" }) });
    await fleet.start();
    summary = new FleetSummaryPublisher({ fleet, client: hub, topics, log: pino({ level: "silent" }) });
    summary.start();
    const seeded = Array.from({ length: hosts }, (_, i) => largeFleetHost(i));
    phase("seeding");
    const tSeed = performance.now();
    await publishFleet(hub, topics, seeded);
    await hub.publishAsync(topics.expected(), JSON.stringify(expectedState(null)), { qos: 1, retain: true });
    await summary.flush();
    const seedMs = performance.now() - tSeed;

    phase("logging in");
    // The hub's fleet stream reads the same fleet view as the summary (as in the hub).
    server = await startPageServer({ broker, fleet, users: [{ ...operator, role: "operator" }] });
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    await context.addInitScript(frameMonitor);
    const page = await context.newPage();
    await page.goto(server.url);
    await page.fill("#login-username", operator.username);
    await page.fill("#login-password", operator.password);
    const traceFile = traceDir ? join(traceDir, `page-${hosts}h-${kind}.json`) : undefined;
    if (traceFile) await browser.startTracing(page, { path: traceFile, screenshots: false });
    await arm(page);
    const t0 = performance.now();
    await page.click("#login-submit");
    // The header shows the fleet's size (from the summary, or once every host is in).
    let loginToSummaryMs = NaN;
    const firstSummary = page
      .waitForFunction(
        (n) => [String(n), n.toLocaleString("en-US")].some((text) => document.querySelector("#fleet-counts")?.textContent?.includes(`${text} hosts`)),
        hosts,
        { timeout, polling: "raf" },
      )
      .then(() => (loginToSummaryMs = performance.now() - t0));
    await fleetShown(page, hosts, timeout);
    const loginToFullFleetMs = performance.now() - t0;
    const loading = await disarm(page);
    if (traceFile) await browser.stopTracing();
    const trace = traceFile ? Object.fromEntries(Object.entries(summarizeTrace(traceFile)).map(([k, v]) => [`trace ${k}`, v])) : {};
    await Promise.race([firstSummary, new Promise((resolve) => setTimeout(resolve, 2000))]).catch(() => undefined);

    phase("filters");
    // "Needs attention" on, then off (before the changes below, which change who needs it): the click until the first rows shown are the right hosts.
    const firstShown = (ids: string[]) =>
      page.waitForFunction(
        (want) => {
          const shown = Array.from(document.querySelectorAll<HTMLElement>("tr.host")).filter((tr) => !tr.hidden);
          return want.every((id, i) => shown[i]?.dataset.host === id);
        },
        ids,
        { timeout, polling: "raf" },
      );
    const needing = needingAttention(seeded);
    const t3 = performance.now();
    await page.check("#problems-only");
    await firstShown(needing.slice(0, 5));
    const attentionFilterMs = performance.now() - t3;
    const t4 = performance.now();
    await page.uncheck("#problems-only");
    await firstShown(seeded.slice(0, 5).map((h) => h.info.host));
    const attentionFilterOffMs = performance.now() - t4;

    phase("one change");
    // One change, end to end: MQTT publish → WebSocket → render (the first host is on screen).
    const target = seeded[0]!.info.host;
    const cellIs = (host: string, c: CompartmentName, status: Status) =>
      page.waitForFunction(
        ([h, name, st]) => document.querySelector(`tr.host[data-host="${h}"] td[data-compartment="${name}"] .cell`)?.className === `cell ${st}`,
        [host, c, status] as const,
        { timeout, polling: "raf" },
      );
    const t1 = performance.now();
    await hub.publishAsync(topics.compartment(target, "system"), JSON.stringify(compartment("working", "switching…")), { qos: 1, retain: true });
    await cellIs(target, "system", "working");
    const singleUpdateMs = performance.now() - t1;

    phase("a burst of changes");
    // A burst: 1,000 hosts' tests turn blue at once; the last one's cell is on screen when done.
    const burst = seeded.slice(0, 1000);
    const statesBefore = await hostStates(page);
    await arm(page);
    const t2 = performance.now();
    await Promise.all(burst.map((h) => hub!.publishAsync(topics.compartment(h.info.host, "tests"), JSON.stringify(compartment("working", "running tests…")), { qos: 1, retain: true })));
    // Each burst host changed once: the stream sends each at least once (never two changes of different hosts as one).
    await hostStatesAre(page, statesBefore + burst.length, timeout);
    await cellIs(target, "tests", "working");
    const burst1000UpdatesMs = performance.now() - t2;
    const burstFrames = await disarm(page);

    const stats = (await page.evaluate(() => (window as unknown as { lockstepStats: Record<string, number> }).lockstepStats)) ?? {};
    await context.close();
    const r = (x: number) => Math.round(x);
    return {
      seedRetainedMs: r(seedMs),
      loginToSummaryMs: r(loginToSummaryMs),
      loginToFullFleetMs: r(loginToFullFleetMs),
      longestFrameMs: r(loading.maxGap),
      longestTaskMs: r(loading.longestTask),
      longTasks: loading.longTasks,
      singleUpdateMs: r(singleUpdateMs),
      burst1000UpdatesMs: r(burst1000UpdatesMs),
      burstLongestFrameMs: r(burstFrames.maxGap),
      attentionFilterMs: r(attentionFilterMs),
      attentionFilterOffMs: r(attentionFilterOffMs),
      rowElements: (stats.rendered ?? stats.rows) as number,
      maxRenderMs: Math.round((stats.maxRenderMs ?? 0) * 10) / 10,
      totalRenderMs: r(stats.totalRenderMs ?? 0),
      messageHandlingMs: r(stats.handleMs ?? 0),
      ...trace,
    };
  } finally {
    await server?.close();
    summary?.stop();
    await fleet?.stop();
    await hub?.endAsync();
    await broker.stop();
  }
}

/** Figures per fleet size and broker: `<hosts>h <figure> <embedded|mosquitto>`. */
export async function benchDashboard(options: DashboardBenchOptions = { hosts: [1_000, 10_000] }): Promise<Record<string, number>> {
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  const out: Record<string, number> = {};
  const kinds: BrokerKind[] = options.embeddedOnly || !mosquittoAvailable() ? ["aedes"] : ["aedes", "mosquitto"];
  try {
    for (const hosts of options.hosts) {
      for (const kind of kinds) {
        const column = `${hosts}h ${kind === "aedes" ? "embedded" : kind}`;
        try {
          const figures = await runOnce(browser, kind, hosts, options.phaseTimeoutMs ?? 5 * 60_000, options.traceDir);
          for (const [k, v] of Object.entries(figures)) out[`${hosts}h ${k} ${kind === "aedes" ? "embedded" : kind}`] = v;
        } catch (err) {
          // One run giving up (a phase timed out) keeps the others' figures; the JSON shows NaN.
          process.stderr.write(`  dashboard ${column}: failed: ${(err as Error).message.split("\n")[0]}\n`);
          out[`${hosts}h loginToFullFleetMs ${kind === "aedes" ? "embedded" : kind}`] = NaN;
        }
      }
    }
  } finally {
    await browser.close();
  }
  printTable(out, options.hosts, kinds);
  return out;
}

/** One line per figure, one column per fleet size and broker (run.ts prints every figure as well). */
function printTable(out: Record<string, number>, sizes: number[], kinds: BrokerKind[]): void {
  const columns = sizes.flatMap((h) => kinds.map((k) => `${h}h ${k === "aedes" ? "embedded" : k}`));
  const figures = [...new Set(Object.keys(out).map((key) => key.split(" ").slice(1, -1).join(" ")))];
  const width = Math.max(...figures.map((f) => f.length));
  const cell = (v: number | undefined) => String(v ?? "–").padStart(18);
  console.log(`\n  ${"page figure".padEnd(width)}${columns.map((c) => c.padStart(18)).join("")}`);
  for (const f of figures) console.log(`  ${f.padEnd(width)}${columns.map((c) => cell(out[`${c.split(" ")[0]} ${f} ${c.split(" ")[1]}`])).join("")}`);
}

// `node dist/test/bench/dashboard.js [hosts,...] [--embedded-only] [--trace DIR]` runs it alone.
if (typeof require !== "undefined" && typeof module !== "undefined" && require.main === module) {
  const hosts = (process.argv[2] ?? "1000,10000").split(",").map(Number);
  const traceAt = process.argv.indexOf("--trace");
  benchDashboard({ hosts, embeddedOnly: process.argv.includes("--embedded-only"), ...(traceAt > 0 ? { traceDir: process.argv[traceAt + 1]! } : {}) }).then(
    (r) => console.log(JSON.stringify(r, null, 2)),
    (err) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
