/**
 * Converging after a revert: hosts that already run what the target builds (rolled back, or never
 * switched) are planned "pull only" and switch only when their agent's evaluation disagrees.
 */
import { afterEach, describe, expect, it } from "vitest";
import { engineOnFakeFleet } from "../support/rollout-fixture.js";
import { RolloutPlanner } from "../../rollout/planner.js";
import type { RolloutHistoryEntry } from "../../protocol/schemas.js";
import { OLD_COMMIT, type FakeFleetOptions } from "../support/fake-fleet.js";

const REVERT = "d".repeat(40);
const OLD_LOCK = "1".repeat(64);
const FAST = { soakMs: 0, canary: 0, stepTimeouts: { pull: 2000, switch: 2000, test: 2000 }, healthTimeoutMs: 1000 };

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function setup(opts: Partial<FakeFleetOptions> = {}) {
  const { fleet, engine, audits, close } = engineOnFakeFleet({
    hosts: ["h0", "h1", "h2"].map((host, i) => ({ host, priority: i })),
    expectedHead: REVERT,
    // The revert restores the old lock: every host's checkout (OLD_COMMIT) has it, and builds the same system.
    lockOf: (c) => (c === OLD_COMMIT || c === REVERT ? OLD_LOCK : undefined),
    systemOf: (host, c) => `/nix/store/${host}-${c === REVERT ? OLD_COMMIT : c}`,
    ...opts,
  });
  const history: RolloutHistoryEntry[] = [];
  engine.on("history", (h) => history.push(h));
  cleanups.push(close);
  const plan = (lockHash?: string) => new RolloutPlanner().plan({ commit: REVERT, strategy: FAST, converges: "r-failed", ...(lockHash ? { lockHash } : {}) }, fleet.hosts());
  return { fleet, engine, audits, history, plan };
}

describe("converging rollout (pull only when the system already matches)", () => {
  it("plans hosts on the target's lock with a generation built from their checkout as pull only, and never switches them", async () => {
    const t = setup();
    const plan = t.plan(OLD_LOCK);
    expect(Object.keys(plan.pullOnly).sort()).toEqual(["h0", "h1", "h2"]);
    expect(plan.pullOnly.h0).toMatch(/^pull only: system already matches/);

    const final = await t.engine.run(plan, "alice");
    expect(final.state, JSON.stringify(final, null, 1)).toBe("completed");
    for (const h of ["h0", "h1", "h2"]) {
      expect(t.fleet.ran(h, "switch"), h).toBe(0);
      expect(t.fleet.ran(h, "pull"), h).toBe(1);
      expect(t.fleet.ran(h, "refresh"), h).toBe(1);
      expect(t.fleet.ran(h, "test"), h).toBe(1);
      expect(t.fleet.generationOf(h)).toBe(1);
      expect(final.hosts[h]!.reason).toMatch(/pull only: system already matches/);
    }
    expect(final.converges).toBe("r-failed");
    expect(final.summary).toContain("3 pulled only");
    expect(t.audits.filter((a) => a.action === "host.pull-only")).toHaveLength(3);
    expect(t.audits.find((a) => a.action === "rollout.started")?.details).toMatchObject({ converges: "r-failed" });
    expect(t.history[0]).toMatchObject({ converges: "r-failed" });
    expect(t.history[0]!.hosts.every((h) => h.pullOnly === true)).toBe(true);
  });

  it("a host whose evaluation differs from what it runs switches after all", async () => {
    const t = setup({ systemOf: (host, c) => (host === "h1" && c === REVERT ? "/nix/store/h1-different" : `/nix/store/${host}-${c === REVERT ? OLD_COMMIT : c}`) });
    const final = await t.engine.run(t.plan(OLD_LOCK), "alice");
    expect(final.state, JSON.stringify(final, null, 1)).toBe("completed");
    expect(t.fleet.ran("h1", "switch")).toBe(1);
    expect(t.fleet.ran("h0", "switch")).toBe(0);
    expect(final.hosts.h1!.pullOnly).toBeUndefined();
    expect(t.audits.find((a) => a.action === "host.switch-needed")).toMatchObject({ target: "h1" });
    expect(t.history[0]!.hosts.find((h) => h.host === "h1")?.pullOnly).toBeUndefined();
  });

  it("without the target's lock hash, or on another lock, every host switches", async () => {
    const t = setup({ lockOf: (c) => (c === REVERT ? OLD_LOCK : "2".repeat(64)) });
    expect(t.plan(OLD_LOCK).pullOnly).toEqual({});
    expect(t.plan().pullOnly).toEqual({});
    const final = await t.engine.run(t.plan(OLD_LOCK), "alice");
    expect(final.state).toBe("completed");
    for (const h of ["h0", "h1", "h2"]) expect(t.fleet.ran(h, "switch"), h).toBe(1);
  });
});
