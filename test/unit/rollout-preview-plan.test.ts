/**
 * A rollout of a previewed update: hosts the preview of the merged PR's head showed not affected
 * are planned pull only (no switch, no tests), hosts that need a reboot are marked; the agent's
 * evaluation after the pull still decides. And when a preview carries over to the merge commit.
 */
import { afterEach, describe, expect, it } from "vitest";
import { engineOnFakeFleet } from "../support/rollout-fixture.js";
import { RolloutPlanner } from "../../rollout/planner.js";
import { carryOverPreview, previewPlanHints } from "../../rollout/previews.js";
import type { HostPreview } from "../../protocol/index.js";
import { OLD_COMMIT } from "../support/fake-fleet.js";

const MERGED = "e".repeat(40);
const HEAD = "f".repeat(40);
const FAST = { soakMs: 0, canary: 0, stepTimeouts: { pull: 2000, switch: 2000, test: 2000 }, healthTimeoutMs: 1000 };
const at = "2026-12-04T10:00:00.000Z";

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function setup() {
  const { fleet, engine, audits, close } = engineOnFakeFleet({
    hosts: ["alpha", "beta", "gamma"].map((host, i) => ({ host, priority: i })),
    expectedHead: MERGED,
    // beta runs what the merge commit builds; gamma's preview said "not affected", but the merge commit builds something else there.
    systemOf: (host, c) => (host === "beta" ? "/nix/store/beta-same" : `/nix/store/${host}-${c === MERGED ? "new" : c === OLD_COMMIT ? "old" : c}`),
  });
  cleanups.push(close);
  const preview = { pr: 7, headSha: HEAD, notAffected: ["beta", "gamma"], reboot: { alpha: ["kernel", "initrd"] } };
  const plan = () => new RolloutPlanner().plan({ commit: MERGED, strategy: FAST, prNumber: 7, preview }, fleet.hosts());
  return { fleet, engine, audits, plan };
}

const hp = (host: string, over: Partial<HostPreview>): HostPreview => ({ pr: 7, host, headSha: HEAD, outcome: "affected", summary: "", affected: true, builds: true, packages: [], reboot: null, units: null, builtOn: host, startedAt: at, finishedAt: at, ...over });

describe("a rollout of a previewed update", () => {
  it("plans the hosts the preview showed not affected as pull only and marks the ones that need a reboot", () => {
    const plan = setup().plan();
    expect(Object.keys(plan.pullOnly).sort()).toEqual(["beta", "gamma"]);
    expect(plan.pullOnly.beta).toBe(`pull only: the preview of PR #7 at ${HEAD.slice(0, 8)} showed this host not affected (its system does not change)`);
    expect(plan.notAffected).toEqual(["beta", "gamma"]);
    expect(plan.reboot).toEqual({ alpha: "reboot needed: kernel, initrd" });
  });

  it("pulls only on a host that is not affected (no switch, no tests); switches a host whose evaluation disagrees; shows the reboot", async () => {
    const t = setup();
    const final = await t.engine.run(t.plan(), "weekly flow");
    expect(final.state, JSON.stringify(final, null, 1)).toBe("completed");
    expect([t.fleet.ran("beta", "pull"), t.fleet.ran("beta", "refresh"), t.fleet.ran("beta", "switch"), t.fleet.ran("beta", "test")]).toEqual([1, 1, 0, 0]);
    expect(t.fleet.generationOf("beta")).toBe(1);
    expect(final.hosts.beta).toMatchObject({ state: "succeeded", pullOnly: expect.stringContaining("not affected") });
    // gamma: the merge commit evaluates to another system than it runs, so the plan's promise is dropped.
    expect([t.fleet.ran("gamma", "switch"), t.fleet.ran("gamma", "test")]).toEqual([1, 1]);
    expect(final.hosts.gamma!.pullOnly).toBeUndefined();
    expect(t.audits.find((a) => a.action === "host.switch-needed")).toMatchObject({ target: "gamma" });
    expect([t.fleet.ran("alpha", "switch"), t.fleet.ran("alpha", "test")]).toEqual([1, 1]);
    expect(final.hosts.alpha!.reboot).toBe("reboot needed: kernel, initrd");
  });
});

describe("previews carried over to the merge commit", () => {
  const previews = [
    hp("alpha", { reboot: { needed: true, changed: ["kernel"] } }),
    hp("beta", { outcome: "not-affected", affected: false, builds: null }),
    hp("gamma", { outcome: "not-affected", affected: false, builds: null, headSha: "a".repeat(40) }), // another head: does not count
  ];
  it("reads the head's not-affected hosts and reboots", () => {
    expect(previewPlanHints(7, HEAD, previews)).toEqual({ pr: 7, headSha: HEAD, notAffected: ["beta"], reboot: { alpha: ["kernel"] } });
  });
  it("carry over only when the merged flake.lock is the previewed one", () => {
    const hints = previewPlanHints(7, HEAD, previews);
    const lock = "1".repeat(64);
    expect(carryOverPreview(hints, { previewed: lock, merged: lock })).toBe(hints);
    expect(carryOverPreview(hints, { previewed: lock, merged: "2".repeat(64) })).toBeUndefined();
    expect(carryOverPreview(hints, { previewed: lock })).toBeUndefined();
    expect(carryOverPreview(undefined, { previewed: lock, merged: lock })).toBeUndefined();
  });
});
