/**
 * Fleet page benchmark: 500 hosts as retained topics on the embedded broker, the page in headless
 * Chromium. Measures how long a fresh login takes to show the whole fleet, how fast one change
 * reaches its cell, how a burst of 500 changes renders, and the longest render frame.
 * Starts and stops everything itself; returns numbers in milliseconds.
 */
import mqtt from "mqtt";
import { chromium } from "playwright-core";
import { COMPARTMENTS, Topics, type CompartmentName, type Status } from "../../protocol/index.js";
import { startTestBroker } from "../support/brokers.js";
import { CHROMIUM_ARGS, CHROMIUM_PATH, startPageServer } from "../browser/page-server.js";
import { compartment, expectedState, hostInfo, publishHost, type SeedHost } from "../browser/fleet-fixture.js";

const HOSTS = 500;

function seedHost(i: number): SeedHost {
  const id = `host-${String(i).padStart(3, "0")}`;
  const statuses: Status[] = ["ok", "ok", "ok", "outdated", "failed"];
  const compartments: SeedHost["compartments"] = {};
  COMPARTMENTS.forEach((name, k) => (compartments[name] = compartment(statuses[(i + k) % statuses.length]!, `${name} of ${id}`)));
  return {
    info: hostInfo(id, { tags: [`rack-${i % 20}`], location: `site-${i % 3}` }),
    availability: i % 17 === 0 ? "offline" : "online",
    compartments,
  };
}

export async function benchDashboard(): Promise<Record<string, number>> {
  const topics = new Topics();
  const broker = await startTestBroker({ kind: "aedes" });
  const operator = await broker.credentials("operator", "bench");
  const hub = await mqtt.connectAsync(broker.url, { ...(await broker.credentials("hub", "bench")), reconnectPeriod: 0 });
  const server = await startPageServer({ broker, users: [{ ...operator, role: "operator" }] });
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  try {
    const seeded = Array.from({ length: HOSTS }, (_, i) => seedHost(i));
    const tSeed = performance.now();
    await hub.publishAsync(topics.expected(), JSON.stringify(expectedState(null)), { qos: 1, retain: true });
    for (let i = 0; i < seeded.length; i += 50) await Promise.all(seeded.slice(i, i + 50).map((h) => publishHost(hub, topics, h)));
    const seedMs = performance.now() - tSeed;

    const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
    await page.goto(server.url);
    await page.fill("#login-username", operator.username);
    await page.fill("#login-password", operator.password);
    // The last host's last compartment is the last retained message: when it shows, all did.
    const last = seeded.at(-1)!;
    const lastStatus = last.compartments.tests!.status;
    const t0 = performance.now();
    await page.click("#login-submit");
    await page.waitForFunction((n) => (window as unknown as { lockstepStats?: { messages: number } }).lockstepStats!.messages >= n, HOSTS * 7, { timeout: 60_000, polling: 10 });
    const loginToAllMessagesMs = performance.now() - t0;
    await page.waitForFunction(
      ([n, host, status]) =>
        document.querySelectorAll("tr.host").length === n &&
        document.querySelector(`tr.host[data-host="${host}"] td[data-compartment="tests"] .cell`)?.className === `cell ${status}`,
      [HOSTS, last.info.host, lastStatus] as const,
      { timeout: 60_000, polling: "raf" },
    );
    const loginToFullFleetMs = performance.now() - t0;

    // One change, end to end: MQTT publish → WebSocket → render.
    const target = "host-250";
    const cellIs = (host: string, c: CompartmentName, status: Status) =>
      page.waitForFunction(
        ([h, name, st]) => document.querySelector(`tr.host[data-host="${h}"] td[data-compartment="${name}"] .cell`)?.className === `cell ${st}`,
        [host, c, status] as const,
        { timeout: 30_000, polling: "raf" },
      );
    const t1 = performance.now();
    await hub.publishAsync(topics.compartment(target, "system"), JSON.stringify(compartment("working", "switching…")), { qos: 1, retain: true });
    await cellIs(target, "system", "working");
    const singleUpdateMs = performance.now() - t1;

    // A burst: every host's tests turn blue at once (a fleet-wide test run).
    const t2 = performance.now();
    await Promise.all(seeded.map((h) => hub.publishAsync(topics.compartment(h.info.host, "tests"), JSON.stringify(compartment("working", "running tests…")), { qos: 1, retain: true })));
    await page.waitForFunction(() => document.querySelectorAll('td[data-compartment="tests"] .cell.working').length === 500, undefined, { timeout: 60_000, polling: "raf" });
    const burst500UpdatesMs = performance.now() - t2;

    const stats = (await page.evaluate(() => (window as unknown as { lockstepStats: Record<string, number> }).lockstepStats)) ?? {};

    const t3 = performance.now();
    await page.reload();
    await page.waitForFunction(
      (n) => document.querySelectorAll("tr.host").length === n && document.querySelectorAll('td[data-compartment="tests"] .cell.working').length === n,
      HOSTS,
      { timeout: 60_000, polling: "raf" },
    );
    const reloadToFullFleetMs = performance.now() - t3;

    return {
      hosts: HOSTS,
      seedRetainedMs: Math.round(seedMs),
      loginToAllMessagesMs: Math.round(loginToAllMessagesMs),
      loginToFullFleetMs: Math.round(loginToFullFleetMs),
      singleUpdateMs: Math.round(singleUpdateMs),
      burst500UpdatesMs: Math.round(burst500UpdatesMs),
      reloadToFullFleetMs: Math.round(reloadToFullFleetMs),
      maxRenderFrameMs: Math.round((stats.maxRenderMs ?? 0) * 10) / 10,
      renderFrames: stats.renders ?? 0,
      totalRenderMs: Math.round(stats.totalRenderMs ?? 0),
      messageHandlingMs: Math.round(stats.handleMs ?? 0),
      messages: stats.messages ?? 0,
    };
  } finally {
    await browser.close();
    await server.close();
    await hub.endAsync();
    await broker.stop();
  }
}

// `node dist/test/bench/dashboard.js` runs it alone.
if (typeof require !== "undefined" && typeof module !== "undefined" && require.main === module) {
  benchDashboard().then(
    (r) => console.log(JSON.stringify(r, null, 2)),
    (err) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
