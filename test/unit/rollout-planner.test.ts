import { describe, expect, it } from "vitest";
import { RolloutPlanner } from "../../rollout/planner.js";
import { parseRolloutSpec } from "../../rollout/spec.js";
import { RolloutPlanError, RolloutSpecError } from "../../rollout/errors.js";
import { FakeFleet, type FakeHostOptions } from "../support/fake-fleet.js";

const COMMIT = "b".repeat(40);
// Saturday 2026-11-21 12:00 UTC
const NOW = new Date("2026-11-21T12:00:00Z");

function snapshots(hosts: FakeHostOptions[]) {
  return new FakeFleet({ hosts }).hosts();
}

const planner = new RolloutPlanner();
const names = (hs: { host: string }[]) => hs.map((h) => h.host);

describe("RolloutSpec", () => {
  it("fills defaults and requires only the commit", () => {
    const s = parseRolloutSpec({ commit: COMMIT });
    expect(s.selection).toBe("all");
    expect(s.onFailure).toBe("halt");
    expect(s.offline).toBe("skip");
    expect(s.respectWindows).toBe(true);
    expect(s.strategy.parallelism).toBe(5);
    expect(s.strategy.stepTimeouts.switch).toBe(60 * 60_000);
  });

  it("rejects a short sha, an unknown key and a bad policy with the field named", () => {
    expect(() => parseRolloutSpec({ commit: "abc123" })).toThrow(RolloutSpecError);
    expect(() => parseRolloutSpec({ commit: COMMIT, onfailure: "halt" })).toThrow(/onfailure|unrecognized/i);
    expect(() => parseRolloutSpec({ commit: COMMIT, onFailure: "explode" })).toThrow(/onFailure/);
    expect(() => parseRolloutSpec({ commit: COMMIT, strategy: { waves: { percent: 0 } } })).toThrow(/strategy\.waves/);
  });
});

describe("RolloutPlanner", () => {
  it("orders by ascending priority, canary (flagged) first, then waves by size", () => {
    const hosts = snapshots([
      { host: "e", priority: 50 },
      { host: "a", priority: 10 },
      { host: "d", priority: 10 },
      { host: "c", priority: 5, canary: true },
      { host: "b", priority: 100 },
    ]);
    const plan = planner.plan({ commit: COMMIT, strategy: { waves: { size: 2 } } }, hosts, NOW);
    expect(plan.phases).toEqual([
      { name: "canary", kind: "canary", hosts: ["c"] },
      { name: "wave-1", kind: "wave", hosts: ["a", "d"] },
      { name: "wave-2", kind: "wave", hosts: ["e", "b"] },
    ]);
    expect(plan.commit).toBe(COMMIT);
    expect(plan.generationsAtPlan).toEqual({ a: 1, b: 1, c: 1, d: 1, e: 1 });
  });

  it("without flagged canaries picks the highest-priority (lowest number) host", () => {
    const hosts = snapshots([{ host: "x", priority: 30 }, { host: "y", priority: 20 }, { host: "z", priority: 40 }]);
    const plan = planner.plan({ commit: COMMIT }, hosts, NOW);
    expect(plan.phases[0]).toEqual({ name: "canary", kind: "canary", hosts: ["y"] });
  });

  it("waves by percent round up, canary count and explicit canaries", () => {
    const hosts = snapshots(Array.from({ length: 10 }, (_, i) => ({ host: `h${i}`, priority: i })));
    const byPercent = planner.plan({ commit: COMMIT, strategy: { canary: 2, waves: { percent: 30 } } }, hosts, NOW);
    expect(byPercent.phases.map((p) => p.hosts.length)).toEqual([2, 3, 3, 2]);
    expect(byPercent.phases[0]!.hosts).toEqual(["h0", "h1"]);

    const explicit = planner.plan({ commit: COMMIT, strategy: { canary: ["h7"], waves: { percent: 100 } } }, hosts, NOW);
    expect(explicit.phases[0]!.hosts).toEqual(["h7"]);
    expect(explicit.phases[1]!.hosts).not.toContain("h7");
    expect(explicit.phases).toHaveLength(2);

    const none = planner.plan({ commit: COMMIT, strategy: { canary: 0, waves: { size: 10 } } }, hosts, NOW);
    expect(none.phases).toEqual([{ name: "wave-1", kind: "wave", hosts: names(hosts).sort() }]);
  });

  it("selects by tags or explicit hosts and records every exclusion with its reason", () => {
    const hosts = snapshots([
      { host: "web1", tags: ["web"] },
      { host: "web2", tags: ["web"], hold: true, holdReason: "disk replacement" },
      { host: "db1", tags: ["db"] },
      { host: "web3", tags: ["web"], online: false },
      { host: "web4", tags: ["web"], maintenanceWindow: { days: ["sun"], start: "02:00", end: "05:00", timeZone: "UTC" } },
    ]);
    const plan = planner.plan({ commit: COMMIT, selection: { tags: ["web"] } }, hosts, NOW);
    expect(plan.phases.flatMap((p) => p.hosts)).toEqual(["web1"]);
    const why = Object.fromEntries(plan.excluded.map((e) => [e.host, [e.code, e.reason]]));
    expect(why.db1).toEqual(["not-selected", "not in the selection"]);
    expect(why.web2).toEqual(["held", "held: disk replacement"]);
    expect(why.web3![0]).toBe("offline");
    expect(why.web4).toEqual(["window", "outside maintenance window sun 02:00-05:00 UTC"]);

    const explicit = planner.plan({ commit: COMMIT, selection: { hosts: ["db1", "ghost"] } }, hosts, NOW);
    expect(explicit.phases.flatMap((p) => p.hosts)).toEqual(["db1"]);
    expect(explicit.excluded.find((e) => e.host === "ghost")?.code).toBe("unknown-host");
  });

  it("ignores windows when respectWindows is false", () => {
    const hosts = snapshots([{ host: "w", maintenanceWindow: { days: ["mon"], start: "01:00", end: "02:00", timeZone: "UTC" } }]);
    expect(() => planner.plan({ commit: COMMIT }, hosts, NOW)).toThrow(RolloutPlanError);
    expect(planner.plan({ commit: COMMIT, respectWindows: false }, hosts, NOW).phases[0]!.hosts).toEqual(["w"]);
  });

  it("keeps offline hosts under wait (in order) and queue (last phase), never as canary", () => {
    const hosts = snapshots([
      { host: "a", priority: 1, online: false },
      { host: "b", priority: 2 },
      { host: "c", priority: 3 },
    ]);
    const wait = planner.plan({ commit: COMMIT, offline: { wait: 1000 }, strategy: { waves: { size: 5 } } }, hosts, NOW);
    expect(wait.phases).toEqual([
      { name: "canary", kind: "canary", hosts: ["b"] },
      { name: "wave-1", kind: "wave", hosts: ["a", "c"] },
    ]);
    expect(wait.offlineAtPlan).toEqual(["a"]);
    const queue = planner.plan({ commit: COMMIT, offline: { queue: 60_000 } }, hosts, NOW);
    expect(queue.phases.at(-1)).toEqual({ name: "queued", kind: "queued", hosts: ["a"] });
    expect(queue.phases[0]!.hosts).toEqual(["b"]);
  });

  it("refuses plans with nothing to deploy or an ineligible named canary", () => {
    const hosts = snapshots([{ host: "a", hold: true }, { host: "b", online: false }]);
    expect(() => planner.plan({ commit: COMMIT }, hosts, NOW)).toThrow(/a: held.*b: offline/);
    const ok = snapshots([{ host: "a" }, { host: "b", hold: true }]);
    expect(() => planner.plan({ commit: COMMIT, strategy: { canary: ["b"] } }, ok, NOW)).toThrow(/canary host "b"/);
  });
});
