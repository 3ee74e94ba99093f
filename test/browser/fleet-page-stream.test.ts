/**
 * The fleet page's reading of the fleet stream (dashboard/modules/host-stream.js), in headless
 * Chromium against the embedded Aedes broker: malformed lines and hosts are counted as invalid
 * and skipped while the valid ones around them apply, and a host missing from a new snapshot
 * (the hub restarted without it) leaves the table; refusals in a row (the hub's stream cap) show
 * a banner with the hub's reason.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser, type Page } from "playwright-core";
import type { FleetChange, HostSnapshot } from "../../rollout/fleet-port.js";
import { startTestBroker, type TestBroker } from "../support/brokers.js";
import { CHROMIUM_ARGS, CHROMIUM_PATH, startPageServer, type PageServer } from "./page-server.js";
import { compartment, hostInfo } from "./fleet-fixture.js";

let browser: Browser;
let broker: TestBroker;
let operator: { username: string; password: string };
let server: PageServer | undefined;
let page: Page | undefined;
beforeAll(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  broker = await startTestBroker({ kind: "aedes" });
  operator = await broker.credentials("operator", "olga");
});
afterEach(async () => {
  await page?.context().close();
  await server?.close();
  page = undefined;
  server = undefined;
});
afterAll(async () => {
  await browser?.close();
  await broker?.stop();
});

const row = (host: string) => `tr.host[data-host="${host}"]`;
const invalid = (p: Page) => p.evaluate(() => (window as unknown as { lockstepStats: { invalid: number } }).lockstepStats.invalid);

async function login(s: PageServer): Promise<Page> {
  const p = await (await browser.newContext()).newPage();
  await p.goto(s.url);
  await p.fill("#login-username", operator.username);
  await p.fill("#login-password", operator.password);
  await p.click("#login-submit");
  await p.waitForSelector("#fleet-view:not([hidden])");
  return p;
}

function snapshotHost(host: string): HostSnapshot {
  return { host, availability: "online", info: hostInfo(host), compartments: { system: compartment("ok", "up to date") } };
}

describe("the fleet page reads the fleet stream", () => {
  it("skips malformed lines and hosts, counting each as invalid, and applies the valid ones", async () => {
    const good = (h: string) => ({ ...snapshotHost(h), lastSeen: null });
    const lines = [
      JSON.stringify({ kind: "snapshot", hosts: [good("a")], done: true }),
      "{not json",
      JSON.stringify({ kind: "shout" }),
      JSON.stringify({ kind: "changes" }),
      JSON.stringify({ kind: "changes", hosts: [5, { ...good("b"), info: { host: "b" } }, { ...good("c"), compartments: { system: { status: "weird" } } }] }),
      JSON.stringify({ kind: "changes", hosts: [good("d")] }),
    ];
    server = await startPageServer({
      broker,
      users: [{ ...operator, role: "operator" }],
      fleetStream: (_req, res) => {
        res.writeHead(200, { "content-type": "application/x-ndjson" });
        res.write(lines.join("\n") + "\n");
      },
    });
    page = await login(server);
    // d comes last: once its row is there, every line before it was read.
    await page.waitForSelector(row("d"));
    await page.waitForSelector(row("a"));
    await page.waitForSelector(row("c"));
    expect(await page.locator(row("b")).count()).toBe(0);
    // not JSON, not a stream line, no hosts, not a host (5), b's info, c's system compartment
    expect(await invalid(page)).toBe(6);
    expect(await page.getAttribute(`${row("c")} td[data-compartment="system"] .cell`, "class")).not.toMatch(/\bok\b/);
    expect(await page.getAttribute(`${row("a")} td[data-compartment="system"] .cell`, "class")).toMatch(/\bok\b/);
  });

  it("removes a host a new snapshot does not have (the hub restarted without it)", async () => {
    const hosts = new Map([
      ["a", snapshotHost("a")],
      ["b", snapshotHost("b")],
    ]);
    const fleet = {
      hosts: () => [...hosts.values()],
      host: (id: string) => hosts.get(id),
      onChange: (_l: (c: FleetChange) => void) => () => undefined,
    };
    server = await startPageServer({ broker, users: [{ ...operator, role: "operator" }], fleet });
    page = await login(server);
    await page.waitForSelector(row("b"));
    await page.waitForSelector(row("a"));
    // A restarted hub's fleet view lacks b altogether (no change was sent for it): only the next snapshot tells.
    hosts.delete("b");
    server.dropFleetStreams();
    await page.waitForSelector(row("b"), { state: "detached" });
    expect(server.fleetStreamsOpened()).toBe(2);
    expect(await page.locator(row("a")).count()).toBe(1);
  });

  it("shows the hub's reason after fleet streams refused in a row", async () => {
    let refused = 0;
    server = await startPageServer({
      broker,
      users: [{ ...operator, role: "operator" }],
      fleetStream: (_req, res) => {
        refused++;
        res.writeHead(503, { "content-type": "application/json", "retry-after": "5" });
        res.end(JSON.stringify({ error: "olga streams the fleet to 10 pages already" }));
      },
    });
    page = await login(server);
    await page.waitForSelector("#banner:not([hidden]):has-text('olga streams the fleet to 10 pages already')");
    expect(refused).toBeGreaterThanOrEqual(2);
  });
});

