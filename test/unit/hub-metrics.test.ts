/**
 * hub/metrics.ts against a simulated fleet (test/support/fake-fleet.ts) and the real rollout
 * service: the exposition text is parsed with a Prometheus text-format parser, and its values are
 * compared with the fleet's own state during and after a rollout.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { LastSwitchFile } from "../../hub/last-switch-file.js";
import parsePrometheusTextFormat, { type PromFamily } from "parse-prometheus-text-format";
import { HubMetrics, type MetricsFleet } from "../../hub/metrics.js";
import { COMPARTMENTS, STATUSES, type FleetExpected, type JobState } from "../../protocol/schemas.js";
import type { FakeFleet } from "../support/fake-fleet.js";
import { serviceOnFakeFleet } from "../support/rollout-fixture.js";

const COMMIT = "f".repeat(40);
const FAST = { soakMs: 0, stepTimeouts: { pull: 5000, switch: 5000, test: 5000 }, healthTimeoutMs: 2000 };
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function setup(latencyMs: number) {
  const { fleet, service, close } = serviceOnFakeFleet(latencyMs, COMMIT);
  cleanups.push(close);
  return { fleet, service };
}

async function scrape(metrics: HubMetrics): Promise<Map<string, PromFamily>> {
  const { body, contentType } = await metrics.scrape();
  expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  return new Map(parsePrometheusTextFormat(body).map((f) => [f.name, f]));
}

/** The value of one series (labels matched exactly), or undefined when the series is absent. */
function value(families: Map<string, PromFamily>, name: string, labels: Record<string, string> = {}): number | undefined {
  const sample = families.get(name)?.metrics.find((m) => JSON.stringify(Object.entries(m.labels ?? {}).sort()) === JSON.stringify(Object.entries(labels).sort()));
  return sample?.value === undefined ? undefined : Number(sample.value);
}

/** lockstep_hosts as the fleet's own snapshots say it should be. */
function expectedHostCounts(fleet: FakeFleet): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const compartment of COMPARTMENTS) {
    for (const status of STATUSES) counts[`${compartment}/${status}`] = fleet.hosts().filter((h) => (h.compartments[compartment]?.status ?? "unknown") === status).length;
  }
  return counts;
}
function scrapedHostCounts(families: Map<string, PromFamily>): Record<string, number> {
  return Object.fromEntries(families.get("lockstep_hosts")!.metrics.map((m) => [`${m.labels!.compartment}/${m.labels!.status}`, Number(m.value)]));
}

describe("hub metrics", () => {
  it("match the fleet's state during and after a rollout", async () => {
    const { fleet, service } = setup(20);
    const metrics = new HubMetrics({ fleet, rollouts: service });
    cleanups.push(() => metrics.stop());

    const before = await scrape(metrics);
    expect(scrapedHostCounts(before)).toEqual(expectedHostCounts(fleet));
    expect(["a", "b", "c"].map((host) => value(before, "lockstep_host_online", { host }))).toEqual([1, 1, 1]);
    expect(["a", "b", "c"].map((host) => value(before, "lockstep_host_generation", { host }))).toEqual([1, 1, 1]);
    const current = (families: Map<string, PromFamily>) => ["a", "b", "c"].map((host) => value(families, "lockstep_host_current", { host }));
    const systemOk = () => ["a", "b", "c"].map((host) => (fleet.host(host)?.compartments.system?.status === "ok" ? 1 : 0));
    expect(current(before)).toEqual(systemOk());
    expect(value(before, "lockstep_rollouts_running")).toBe(0);
    expect(before.get("lockstep_host_last_successful_switch_timestamp_seconds")!.metrics).toEqual([]);

    // Scrape while the rollout runs, at the moment host a's switch is under way.
    const during: Promise<{ families: Map<string, PromFamily>; expected: Record<string, number>; current: number[] }> = new Promise((resolve) => {
      const off = fleet.onChange((c) => {
        if (c.kind !== "job" || fleet.job(c.host, c.jobId)?.op !== "switch" || fleet.job(c.host, c.jobId)?.state !== "running") return;
        off();
        const expected = expectedHostCounts(fleet);
        const current = systemOk();
        void scrape(metrics).then((families) => resolve({ families, expected, current }));
      });
    });
    const startedAt = Date.now() / 1000;
    const id = service.start({ commit: COMMIT, strategy: FAST }, "alice");
    const mid = await during;
    expect(value(mid.families, "lockstep_rollouts_running")).toBe(1);
    expect(scrapedHostCounts(mid.families)).toEqual(mid.expected);
    expect(current(mid.families)).toEqual(mid.current);
    expect(mid.current[0]).toBe(0); // a is switching: its system compartment is working
    expect(value(mid.families, "lockstep_steps_total", { op: "pull", outcome: "succeeded" })).toBeGreaterThanOrEqual(1);

    const final = await service.wait(id);
    expect(final.state).toBe("completed");
    const after = await scrape(metrics);
    expect(scrapedHostCounts(after)).toEqual(expectedHostCounts(fleet));
    expect(current(after)).toEqual(systemOk());
    expect(value(after, "lockstep_rollouts_running")).toBe(0);
    expect(value(after, "lockstep_rollouts_total", { outcome: "completed" })).toBe(1);
    // The parser keeps a labelled histogram's buckets but drops its labels, _sum and _count:
    // those are read back from prom-client's registry.
    expect(after.get("lockstep_rollout_duration_seconds")!.metrics[0]!.buckets!["+Inf"]).toBe("1");
    const [histogram] = await metrics.registry.getMetricsAsJSON().then((all) => all.filter((m) => m.name === "lockstep_rollout_duration_seconds"));
    const samples = (histogram as unknown as { values: Array<{ metricName: string; labels: Record<string, string>; value: number }> }).values;
    expect(samples.find((v) => v.metricName === "lockstep_rollout_duration_seconds_count")).toMatchObject({ labels: { outcome: "completed" }, value: 1 });
    const sum = samples.find((v) => v.metricName === "lockstep_rollout_duration_seconds_sum")!.value;
    expect(sum).toBeCloseTo((Date.parse(final.finishedAt!) - Date.parse(final.createdAt)) / 1000, 3);
    // a and b pulled, switched and were tested; c is held.
    for (const op of ["pull", "switch"]) expect(value(after, "lockstep_steps_total", { op, outcome: "succeeded" })).toBe(2);
    for (const host of ["a", "b"]) {
      expect(value(after, "lockstep_host_generation", { host })).toBe(fleet.generationOf(host));
      expect(value(after, "lockstep_host_last_successful_switch_timestamp_seconds", { host })).toBeGreaterThanOrEqual(Math.floor(startedAt));
    }
    expect(value(after, "lockstep_host_last_successful_switch_timestamp_seconds", { host: "c" })).toBeUndefined();

    fleet.setOnline("b", false);
    expect(value(await scrape(metrics), "lockstep_host_online", { host: "b" })).toBe(0);
  });

  it("count a failed rollout and its failed step", async () => {
    const { fleet, service } = setup(1);
    const metrics = new HubMetrics({ fleet, rollouts: service });
    cleanups.push(() => metrics.stop());
    fleet.failBuild("a");
    const final = await service.wait(service.start({ commit: COMMIT, strategy: FAST }, "alice"));
    const families = await scrape(metrics);
    expect(value(families, "lockstep_rollouts_total", { outcome: final.state })).toBe(1);
    expect(final.state).not.toBe("completed");
    expect(value(families, "lockstep_steps_total", { op: "switch", outcome: "failed" })).toBe(1);
    expect(value(families, "lockstep_host_last_successful_switch_timestamp_seconds", { host: "a" })).toBeUndefined();
  });

  it("report lock and pending-update age, GitHub, broker and auth counters", async () => {
    const { fleet } = setup(1);
    const now = new Date("2026-12-04T12:00:00Z");
    const expected: FleetExpected = {
      ...fleet.expected()!,
      lockLastModified: now.getTime() / 1000 - 3 * 86400,
      pendingUpdate: { number: 7, title: "flake.lock: update", url: "https://x/7", headSha: COMMIT, headBranch: "update", openedAt: "2026-12-04T10:00:00Z", lockDiff: { updated: [], added: [], removed: [] }, ci: { state: "pending" }, superseded: [] },
    };
    const view: MetricsFleet = { hosts: () => fleet.hosts(), job: (h, j) => fleet.job(h, j), onChange: (l) => fleet.onChange(l), expected: () => expected };
    const broker = { clients: 4, messages: 0, bytes: 0, queueDropped: 0 };
    const metrics = new HubMetrics({ fleet: view, broker: () => broker, now: () => now });
    cleanups.push(() => metrics.stop());
    metrics.recordGitHubResponse(200, 4999);
    metrics.recordGitHubResponse(200, 4998);
    metrics.recordGitHubResponse(502);
    metrics.recordGitHubResponse(undefined);
    metrics.recordAuthFailure("mqtt");
    Object.assign(broker, { clients: 5, messages: 2, bytes: 120 });
    const families = await scrape(metrics);
    expect(value(families, "lockstep_lock_age_seconds", { branch: "main" })).toBe(3 * 86400);
    expect(value(families, "lockstep_pending_update_age_seconds", { pr: "7" })).toBe(2 * 3600);
    expect(value(families, "lockstep_github_requests_total", { status: "200" })).toBe(2);
    expect(value(families, "lockstep_github_requests_total", { status: "502" })).toBe(1);
    expect(value(families, "lockstep_github_requests_total", { status: "error" })).toBe(1);
    expect(value(families, "lockstep_github_rate_limit_remaining")).toBe(4998);
    expect(value(families, "lockstep_broker_clients")).toBe(5);
    expect(value(families, "lockstep_broker_messages_total")).toBe(2);
    expect(value(families, "lockstep_broker_bytes_total")).toBe(120);
    expect(value(families, "lockstep_auth_failures_total", { protocol: "mqtt" })).toBe(1);
    expect(value(families, "lockstep_auth_failures_total", { protocol: "http" })).toBe(0);
    // The broker's counts are read at every scrape (they only grow).
    Object.assign(broker, { messages: 7, bytes: 500 });
    const later = await scrape(metrics);
    expect(value(later, "lockstep_broker_messages_total")).toBe(7);
    expect(value(later, "lockstep_broker_bytes_total")).toBe(500);
    // No pending update, no lock date: the series are absent rather than 0.
    const bare = new HubMetrics({ fleet: { ...view, expected: () => undefined } });
    const none = await scrape(bare);
    expect(none.get("lockstep_lock_age_seconds")?.metrics ?? []).toEqual([]);
    expect(none.get("lockstep_pending_update_age_seconds")?.metrics ?? []).toEqual([]);
    bare.stop();
  });

  it("count a step once, not the retained states of earlier runs, and bound op labels", async () => {
    const listeners = new Set<(c: { kind: "job"; host: string; jobId: string }) => void>();
    const jobs = new Map<string, JobState>();
    const view: MetricsFleet = { hosts: () => [{ host: "a", availability: "online", compartments: {} }], expected: () => undefined, job: (h, j) => jobs.get(`${h}/${j}`), onChange: (l) => (listeners.add(l), () => listeners.delete(l)) };
    const metrics = new HubMetrics({ fleet: view });
    cleanups.push(() => metrics.stop());
    const emit = (job: JobState) => {
      jobs.set(`${job.host}/${job.id}`, job);
      for (const l of listeners) l({ kind: "job", host: job.host, jobId: job.id });
    };
    const at = (offsetS: number) => new Date(Date.now() + offsetS * 1000).toISOString();
    // A switch that finished before the hub started: sets the last switch, is not counted as a step.
    emit({ id: "old", host: "a", op: "switch", state: "succeeded", summary: "", acceptedAt: at(-3600), finishedAt: at(-3500) });
    emit({ id: "j1", host: "a", op: "switch", state: "running", summary: "", acceptedAt: at(0) });
    emit({ id: "j1", host: "a", op: "switch", state: "succeeded", summary: "", acceptedAt: at(0), finishedAt: at(1) });
    emit({ id: "j1", host: "a", op: "switch", state: "succeeded", summary: "", acceptedAt: at(0), finishedAt: at(1) });
    emit({ id: "j2", host: "a", op: "x".repeat(200), state: "failed", summary: "", acceptedAt: at(0), finishedAt: at(1) });
    const families = await scrape(metrics);
    expect(families.get("lockstep_steps_total")!.metrics.map((m) => [m.labels, Number(m.value)])).toEqual([
      [{ op: "switch", outcome: "succeeded" }, 1],
      [{ op: "other", outcome: "failed" }, 1],
    ]);
    expect(value(families, "lockstep_host_last_successful_switch_timestamp_seconds", { host: "a" })).toBe(Date.parse(jobs.get("a/j1")!.finishedAt!) / 1000);
    // A nightly self-update that activated another generation is a switch too; one that found
    // the system current is not.
    emit({ id: "s1", host: "a", op: "self-update", state: "succeeded", summary: "", acceptedAt: at(2), finishedAt: at(3), generationBefore: 4, generationAfter: 5 });
    emit({ id: "s2", host: "a", op: "self-update", state: "succeeded", summary: "", acceptedAt: at(4), finishedAt: at(5), generationBefore: 5, generationAfter: 5 });
    emit({ id: "s3", host: "a", op: "self-update", state: "failed", summary: "", acceptedAt: at(6), finishedAt: at(7), generationBefore: 5, generationAfter: 6 });
    const selfUpdated = await scrape(metrics);
    expect(value(selfUpdated, "lockstep_host_last_successful_switch_timestamp_seconds", { host: "a" })).toBe(Date.parse(jobs.get("a/s1")!.finishedAt!) / 1000);
    expect(value(selfUpdated, "lockstep_steps_total", { op: "self-update", outcome: "succeeded" })).toBe(2);
    metrics.stop();
    emit({ id: "j3", host: "a", op: "pull", state: "succeeded", summary: "", acceptedAt: at(0), finishedAt: at(2) });
    expect(value(await scrape(metrics), "lockstep_steps_total", { op: "pull", outcome: "succeeded" })).toBeUndefined();
  });

  it("keep the last switch per host across a restart (a file in the data dir), for hosts the fleet still has", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-metrics-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = new LastSwitchFile(join(dir, "last-switch.json"), pino({ level: "silent" }));
    const listeners = new Set<(c: { kind: "job"; host: string; jobId: string }) => void>();
    const jobs = new Map<string, JobState>();
    let hosts = ["a", "b"];
    const view: MetricsFleet = {
      hosts: () => hosts.map((host) => ({ host, availability: "online" as const, compartments: {} })),
      expected: () => undefined,
      job: (h, j) => jobs.get(`${h}/${j}`),
      onChange: (l) => (listeners.add(l), () => listeners.delete(l)),
    };
    const first = new HubMetrics({ fleet: view, lastSwitchFile: file });
    const finishedAt = "2026-12-01T03:04:05.000Z";
    const job: JobState = { id: "j1", host: "a", op: "switch", state: "succeeded", summary: "", acceptedAt: "2026-12-01T03:00:00.000Z", finishedAt };
    jobs.set("a/j1", job);
    for (const l of listeners) l({ kind: "job", host: "a", jobId: "j1" });
    first.stop();
    // A new hub: no job state arrives again (older than the agent's newest keepJobs), the file has it.
    jobs.clear();
    const second = new HubMetrics({ fleet: view, lastSwitchFile: file });
    cleanups.push(() => second.stop());
    expect(value(await scrape(second), "lockstep_host_last_successful_switch_timestamp_seconds", { host: "a" })).toBe(Date.parse(finishedAt) / 1000);
    hosts = ["b"];
    expect(value(await scrape(second), "lockstep_host_last_successful_switch_timestamp_seconds", { host: "a" })).toBeUndefined();
    // A file that is not ours is not trusted: no series, and the hub starts anyway.
    writeFileSync(join(dir, "last-switch.json"), JSON.stringify({ version: 1, hosts: { "../etc": 1 } }));
    expect(file.load().size).toBe(0);
  });
});
