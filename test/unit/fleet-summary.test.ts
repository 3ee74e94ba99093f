/**
 * The hub's retained fleet summary: what summarizeFleet counts (the page's attention rule), that it
 * stays small at 10,000 hosts, and that the publisher sends it at a bounded rate, skips unchanged
 * summaries and sends the last change.
 */
import { describe, expect, it, vi } from "vitest";
import pino from "pino";
import type { MqttClient } from "mqtt";
import { COMPARTMENTS, FleetSummary, SUMMARY_MAX_LISTED, Topics, summarizeFleet, type SummaryHost } from "../../protocol/index.js";
import { FleetSummaryPublisher } from "../../hub/fleet-summary.js";
import type { FleetChange, HostSnapshot } from "../../rollout/fleet-port.js";

const ok = Object.fromEntries(COMPARTMENTS.map((c) => [c, { status: "ok" as const }]));

describe("summarizeFleet", () => {
  it("counts hosts with info, online, statuses per compartment and attention reasons, failed first", () => {
    const hosts: SummaryHost[] = [
      { host: "a", info: {}, availability: "online", compartments: ok },
      { host: "b", info: {}, availability: "offline", compartments: ok },
      { host: "c", info: {}, availability: "online", compartments: { ...ok, system: { status: "failed" } } },
      { host: "d", info: {}, availability: "online", compartments: { ...ok, lock: { status: "outdated" } } },
      { host: "e", info: {}, availability: "online", compartments: { agent: { status: "ok" } } },
      { host: "no-info", availability: "online", compartments: ok },
    ];
    const s = FleetSummary.parse(summarizeFleet(hosts, new Date("2026-12-05T00:00:00Z")));
    expect(s.hosts).toBe(5);
    expect(s.online).toBe(4);
    expect(s.attention).toEqual({ failed: 1, offline: 1, outdated: 1, "no report": 1 });
    expect(s.needsAttention).toEqual([
      { host: "c", why: "failed" },
      { host: "b", why: "offline" },
      { host: "d", why: "outdated" },
      { host: "e", why: "no report" },
    ]);
    expect(s.compartments.system).toEqual({ ok: 3, outdated: 0, failed: 1, working: 0, unknown: 1 });
  });

  it("stays a few kilobytes at 10,000 hosts, all of them needing attention", () => {
    const hosts: SummaryHost[] = Array.from({ length: 10_000 }, (_, i) => ({ host: `h-${i}`, info: {}, availability: "offline", compartments: ok }));
    const s = summarizeFleet(hosts);
    expect(s.attention.offline).toBe(10_000);
    expect(s.needsAttention).toHaveLength(SUMMARY_MAX_LISTED);
    expect(JSON.stringify(s).length).toBeLessThan(8_000);
  });
});

describe("FleetSummaryPublisher", () => {
  function harness() {
    const hosts = new Map<string, HostSnapshot>();
    const listeners = new Set<(c: FleetChange) => void>();
    const published: FleetSummary[] = [];
    const client = { publishAsync: vi.fn(async (_t: string, payload: string) => void published.push(JSON.parse(payload))) } as unknown as MqttClient;
    const fleet = {
      hosts: () => [...hosts.values()],
      onChange: (l: (c: FleetChange) => void) => (listeners.add(l), () => listeners.delete(l)),
      onConnection: () => () => undefined,
    };
    const publisher = new FleetSummaryPublisher({ fleet, client, topics: new Topics(), log: pino({ level: "silent" }), intervalMs: 1000 });
    const change = (host: string) => {
      hosts.set(host, { host, info: {} as HostSnapshot["info"], availability: "online", compartments: ok });
      for (const l of listeners) l({ kind: "info", host });
    };
    return { publisher, published, change, client };
  }

  it("publishes at most once per interval, the last change included, and nothing when unchanged", async () => {
    vi.useFakeTimers();
    try {
      const { publisher, published, change, client } = harness();
      publisher.start();
      await vi.advanceTimersByTimeAsync(0);
      expect(published.map((s) => s.hosts)).toEqual([0]);
      for (let i = 0; i < 50; i++) change(`h-${i}`);
      await vi.advanceTimersByTimeAsync(500);
      expect(published).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(600);
      expect(published.map((s) => s.hosts)).toEqual([0, 50]);
      expect((client.publishAsync as ReturnType<typeof vi.fn>).mock.calls[1]![0]).toBe(new Topics().fleetSummary());
      expect((client.publishAsync as ReturnType<typeof vi.fn>).mock.calls[1]![2]).toEqual({ qos: 1, retain: true });
      // A change that changes nothing counted (the same host again): no publish.
      change("h-0");
      await vi.advanceTimersByTimeAsync(2000);
      expect(published).toHaveLength(2);
      publisher.stop();
    } finally {
      vi.useRealTimers();
    }
  });
});
