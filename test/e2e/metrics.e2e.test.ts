/**
 * GET /metrics on a real hub (child process, shipped flows, local GitHub) with real agents,
 * scraped as Prometheus would (a viewer user, Basic auth) and parsed with a Prometheus
 * text-format parser: 401 without a login, refused logins counted, and the values compared with
 * the fleet's own state (as the test fleet's MQTT client sees it: hosts by compartment and status,
 * online, current, steps by op and outcome, last switches) before, during and after a
 * rollout. "During" is a rollout held at a known point: the canary done and the wave waiting for
 * its one host, which is offline. Needs `npm run build`.
 */
import mqtt from "mqtt";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import parsePrometheusTextFormat, { type PromFamily } from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditEvent, COMPARTMENTS, decodeJson, STATUSES, TERMINAL_JOB_STATES } from "../../protocol/index.js";
import { LockstepWorld } from "../demo/world.js";

const HOSTS = ["alpha", "beta"];
const SCRAPER = { name: "prometheus", role: "viewer" as const, password: "prometheus-scrape-password" };
const basic = (name: string, password: string) => `Basic ${Buffer.from(`${name}:${password}`).toString("base64")}`;

type Families = Map<string, PromFamily>;

/** The value of one series (labels matched exactly), or undefined when it is absent. */
function value(families: Families, name: string, labels: Record<string, string> = {}): number | undefined {
  const key = (l: Record<string, string>) => JSON.stringify(Object.entries(l).sort());
  const sample = families.get(name)?.metrics.find((m) => key(m.labels ?? {}) === key(labels));
  return sample?.value === undefined ? undefined : Number(sample.value);
}

/** What the metrics must say about the fleet, from the test fleet's own view of it. */
interface FleetFigures {
  hosts: Record<string, number>;
  online: Record<string, number>;
  current: Record<string, number>;
  steps: Record<string, number>;
  lastSwitch: Record<string, number>;
}

function fleetFigures(world: LockstepWorld): FleetFigures {
  const hosts: Record<string, number> = {};
  for (const c of COMPARTMENTS) for (const s of STATUSES) hosts[`${c}/${s}`] = HOSTS.filter((h) => (world.fleet.compartment(h, c)?.status ?? "unknown") === s).length;
  const online = Object.fromEntries(HOSTS.map((h) => [h, world.availability.get(h) === "online" ? 1 : 0]));
  const current = Object.fromEntries(HOSTS.map((h) => [h, world.fleet.compartment(h, "system")?.status === "ok" ? 1 : 0]));
  const steps: Record<string, number> = {};
  const lastSwitch: Record<string, number> = {};
  for (const [host, jobs] of world.fleet.jobs) {
    for (const j of jobs.values()) {
      if (!TERMINAL_JOB_STATES.includes(j.state)) continue;
      steps[`${j.op}/${j.state}`] = (steps[`${j.op}/${j.state}`] ?? 0) + 1;
      if (j.op === "switch" && j.state === "succeeded" && j.finishedAt) lastSwitch[host] = Math.max(lastSwitch[host] ?? 0, Date.parse(j.finishedAt) / 1000);
    }
  }
  return { hosts, online, current, steps, lastSwitch };
}

function scrapedFigures(families: Families): FleetFigures {
  const by = (name: string, key: (l: Record<string, string>) => string) =>
    Object.fromEntries((families.get(name)?.metrics ?? []).map((m) => [key(m.labels ?? {}), Number(m.value)]));
  return {
    hosts: by("lockstep_hosts", (l) => `${l.compartment}/${l.status}`),
    online: by("lockstep_host_online", (l) => l.host!),
    current: by("lockstep_host_current", (l) => l.host!),
    steps: by("lockstep_steps_total", (l) => `${l.op}/${l.outcome}`),
    lastSwitch: by("lockstep_host_last_successful_switch_timestamp_seconds", (l) => l.host!),
  };
}

describe("GET /metrics on a running hub", () => {
  let root: string;
  let world: LockstepWorld;

  const scrapeAs = (authorization?: string) => fetch(`${world.hub.baseUrl}/metrics`, authorization ? { headers: { authorization } } : {});
  async function scrape(): Promise<Families> {
    const res = await scrapeAs(basic(SCRAPER.name, SCRAPER.password));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    return new Map(parsePrometheusTextFormat(await res.text()).map((f) => [f.name, f]));
  }

  /**
   * Scrape until the metrics match the fleet's state as the test fleet sees it (the hub and the
   * test fleet are two MQTT clients: one may have a message the other is about to get), then
   * return that scrape. Fails with both sides when they never agree.
   */
  async function scrapeMatchingFleet(what: string, timeoutMs = 30_000): Promise<Families> {
    let last: { scraped: FleetFigures; fleet: FleetFigures } | undefined;
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
      const before = fleetFigures(world);
      const families = await scrape();
      const after = fleetFigures(world);
      const scraped = scrapedFigures(families);
      last = { scraped, fleet: after };
      if (isDeepStrictEqual(before, after) && isDeepStrictEqual(scraped, after)) return families;
    }
    expect(last!.scraped, `metrics ${what}`).toEqual(last!.fleet);
    throw new Error("unreachable");
  }

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lockstep-metrics-"));
    world = await LockstepWorld.create({
      root,
      hosts: HOSTS,
      users: [SCRAPER],
      hostOptions: { alpha: { priority: 1, canary: true }, beta: { priority: 2 } },
      // An offline host is waited for: the rollout stays running, at a known step, until it is back.
      hubConfig: {
        rollout: {
          offline: { wait: 600_000 },
          strategy: { soakMs: 0, waves: { size: 1 }, healthTimeoutMs: 60_000, stepTimeouts: { pull: 60_000, switch: 120_000, test: 60_000 } },
        },
      },
    });
    await world.fleet.bootstrap();
    for (const h of HOSTS) await world.waitForAvailability(h, "online", 30_000);
  }, 240_000);

  afterAll(async () => {
    await world?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("answers 401 without a login or with a wrong password, and counts refused logins (HTTP and MQTT)", async () => {
    const start = await scrape();
    const none = await scrapeAs();
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/^Basic realm="Lockstep"/);
    expect(await none.text()).not.toContain("lockstep_");
    expect((await scrapeAs(basic(SCRAPER.name, "wrong"))).status).toBe(401);
    expect((await scrapeAs(basic("nobody", "wrong"))).status).toBe(401);

    // An MQTT login with a wrong password, refused by the embedded broker.
    const refused = await mqtt.connectAsync(world.hub.mqttUrl, { username: "alpha", password: "wrong", reconnectPeriod: 0, protocolVersion: 4 }).then(
      (c) => (c.end(true), "connected"),
      (err: Error) => err.message,
    );
    expect(refused).toMatch(/Bad username or password/i);

    const after = await scrape();
    const failures = (f: Families, protocol: string) => value(f, "lockstep_auth_failures_total", { protocol })!;
    expect(failures(after, "http") - failures(start, "http")).toBe(2);
    expect(failures(after, "mqtt") - failures(start, "mqtt")).toBe(1);
  }, 60_000);

  it("matches the fleet before, during and after a rollout", async () => {
    const pr = await world.openLockUpdatePr();
    for (const h of HOSTS) await world.fleet.waitFor(h, "lock", (c) => c.summary.startsWith(`update PR #${pr.number} pending`), 30_000);

    const before = await scrapeMatchingFleet("before the rollout");
    expect(before.get("lockstep_hosts")!.metrics).toHaveLength(COMPARTMENTS.length * STATUSES.length);
    expect(value(before, "lockstep_rollouts_running")).toBe(0);
    for (const outcome of ["completed", "failed"]) expect(value(before, "lockstep_rollouts_total", { outcome })).toBe(0);
    // Bootstrap switched every host: each has a last successful switch, as its job says.
    expect(Object.keys(scrapedFigures(before).lastSwitch).sort()).toEqual(HOSTS);
    const opened = Date.parse(world.github.pullRequest(pr.number).createdAt) / 1000;
    const pendingAge = value(before, "lockstep_pending_update_age_seconds", { pr: String(pr.number) })!;
    expect(pendingAge).toBeGreaterThanOrEqual(0);
    expect(pendingAge).toBeLessThanOrEqual(Date.now() / 1000 - opened + 1);
    // The hub's GitHub client: real requests to the local GitHub, and its rate-limit header.
    expect(value(before, "lockstep_github_requests_total", { status: "200" })).toBeGreaterThan(0);
    const remaining = value(before, "lockstep_github_rate_limit_remaining")!;
    expect(remaining).toBeLessThan(5000);
    expect(remaining).toBeGreaterThanOrEqual(5000 - world.github.stats().rateLimited);
    // The embedded broker: the hub, two agents, the test fleet and the world's watcher at least.
    expect(value(before, "lockstep_broker_clients")).toBeGreaterThanOrEqual(5);
    const messagesBefore = value(before, "lockstep_broker_messages_total")!;
    expect(messagesBefore).toBeGreaterThan(0);
    expect(value(before, "lockstep_broker_bytes_total")).toBeGreaterThan(messagesBefore);

    // beta goes offline: the rollout does the canary (alpha), then waits for beta.
    await world.fleet.stopAgent("beta");
    await world.waitForAvailability("beta", "offline", 30_000);
    const events = await mqtt.connectAsync(world.hub.mqttUrl, { ...world.mqttOperator, protocolVersion: 4 });
    try {
      const waiting = new Promise<AuditEvent>((resolve) => {
        events.on("message", (_topic, payload) => {
          const e = decodeJson(AuditEvent, payload);
          if (e.ok && e.value.action === "host.waiting" && e.value.target === "beta") resolve(e.value);
        });
      });
      await events.subscribeAsync(world.topics.events(), { qos: 1 });
      const res = await world.api("POST", "/api/flake-updates/merge-and-deploy", { pr_number: pr.number });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      const id = (res.body as { rollout_id: string }).rollout_id;
      const waitingFor = await waiting;
      expect(waitingFor.details?.rolloutId).toBe(id);

      const during = await scrapeMatchingFleet("while the rollout waits for beta");
      expect(value(during, "lockstep_rollouts_running")).toBe(1);
      expect(value(during, "lockstep_host_online", { host: "alpha" })).toBe(1);
      expect(value(during, "lockstep_host_online", { host: "beta" })).toBe(0);
      const canary = world.rollouts.get(id)!.hosts.alpha!;
      expect(canary.state).toBe("succeeded");
      const canarySwitch = canary.jobIds.map((j) => world.fleet.job("alpha", j)).find((j) => j?.op === "switch")!;
      expect(value(during, "lockstep_host_last_successful_switch_timestamp_seconds", { host: "alpha" })).toBe(Date.parse(canarySwitch.finishedAt!) / 1000);
      const succeeded = (f: Families, op: string) => value(f, "lockstep_steps_total", { op, outcome: "succeeded" }) ?? 0;
      for (const op of ["pull", "switch", "test"]) expect(succeeded(during, op) - succeeded(before, op), op).toBe(1);
      expect(value(during, "lockstep_rollouts_total", { outcome: "completed" })).toBe(0);
      // Merged: no pending update any more once the watcher has looked again.
      await world.fleet.waitFor("alpha", "lock", (c) => !c.summary.includes("pending"), 30_000);

      // beta is back: the rollout goes on and completes.
      await world.fleet.startAgent("beta");
      const final = await world.waitForRolloutEnd(id, 240_000);
      expect(final.state, JSON.stringify(final, null, 1)).toBe("completed");
      const after = await scrapeMatchingFleet("after the rollout");
      expect(value(after, "lockstep_rollouts_running")).toBe(0);
      expect(value(after, "lockstep_rollouts_total", { outcome: "completed" })).toBe(1);
      expect(value(after, "lockstep_rollouts_total", { outcome: "failed" })).toBe(0);
      // The parser drops a labelled histogram's labels but keeps its buckets: one rollout observed.
      expect(after.get("lockstep_rollout_duration_seconds")!.metrics[0]!.buckets!["+Inf"]).toBe("1");
      for (const op of ["pull", "switch", "test"]) expect(succeeded(after, op) - succeeded(before, op), op).toBe(2);
      for (const h of HOSTS) expect(value(after, "lockstep_host_generation", { host: h })).toBe(world.fleet.generation(h).generation);
      expect(value(after, "lockstep_pending_update_age_seconds", { pr: String(pr.number) })).toBeUndefined();
      // The lock's age: now minus the merged lock's newest lastModified.
      const lockModified = world.fleet.expectedAtHead().lockLastModified!;
      const lockAge = value(after, "lockstep_lock_age_seconds", { branch: world.fleet.repo.branch })!;
      expect(Math.abs(lockAge - (Date.now() / 1000 - lockModified))).toBeLessThan(120);
      expect(value(after, "lockstep_broker_messages_total")).toBeGreaterThan(messagesBefore);
    } finally {
      await events.endAsync();
    }
  }, 400_000);
});
