/**
 * Durable state: a hub that stops in the middle of a rollout (simulated by detaching the engine,
 * so it neither sends nor saves anything more) and a new engine resuming from the same data dir
 * must never run a step twice, and must say "interrupted" when it cannot know what happened.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RolloutEngine } from "../../rollout/engine.js";
import { RolloutPlanner } from "../../rollout/planner.js";
import { RolloutStore } from "../../rollout/store.js";
import type { RolloutSpecInput } from "../../rollout/spec.js";
import type { AuditEvent } from "../../protocol/schemas.js";
import { FakeFleet, OLD_COMMIT } from "../support/fake-fleet.js";

const COMMIT = "e".repeat(40);
const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function setup(n: number, latencyMs: number) {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-resume-"));
  const fleet = new FakeFleet({ hosts: Array.from({ length: n }, (_, i) => ({ host: `h${i}`, priority: i })), latencyMs, expectedHead: COMMIT });
  cleanups.push(() => {
    fleet.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const stores: RolloutStore[] = [];
  const engine = (resumeGraceMs = 200) => {
    const store = new RolloutStore(dir);
    stores.push(store);
    return new RolloutEngine({ fleet, store, progressIntervalMs: 5, resumeGraceMs });
  };
  // The stopped hub's last write lands before the new one starts (in reality its process is gone).
  const settle = () => Promise.all(stores.map((s) => s.flush()));
  const plan = (spec: Omit<RolloutSpecInput, "commit">) =>
    new RolloutPlanner().plan(
      { commit: COMMIT, ...spec, strategy: { soakMs: 0, stepTimeouts: { pull: 3000, switch: 3000, test: 3000 }, healthTimeoutMs: 1000, ...spec.strategy } },
      fleet.hosts(),
    );
  return { dir, fleet, engine, plan, settle };
}

const until = async (cond: () => boolean | Promise<boolean>, ms = 3000) => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe("resume after a hub restart", () => {
  it("continues mid-switch without sending any step twice", async () => {
    const t = setup(4, 60);
    const plan = t.plan({ strategy: { canary: 1, waves: { size: 3 }, parallelism: 3 } });
    const first = t.engine();
    let switchesSent = 0;
    let stopped = false;
    // Stop the hub (synchronously, like a crash) the moment all of the wave's switches are out.
    t.fleet.onCommand((c) => {
      if (!stopped && c.op === "switch" && ++switchesSent === 4) {
        first.detach();
        stopped = true;
      }
    });
    void first.run(plan, "alice");
    await until(() => stopped);
    await t.settle();
    const commandsBefore = t.fleet.commands.length;

    const second = t.engine();
    const recovered: AuditEvent[] = [];
    second.on("audit", (e) => e.action === "command.recovered" && recovered.push(e));
    const final = await second.resume(plan.id);

    expect(final.state).toBe("completed");
    expect(recovered.map((e) => e.details?.step)).toEqual(["switch", "switch", "switch"]);
    for (const h of ["h0", "h1", "h2", "h3"]) {
      for (const op of ["pull", "switch", "test"]) {
        expect(t.fleet.ran(h, op), `${h} ${op}`).toBe(1);
        expect(t.fleet.commands.filter((c) => c.host === h && c.op === op), `${h} ${op} sent`).toHaveLength(1);
      }
      expect(t.fleet.generationOf(h)).toBe(2);
    }
    expect(t.fleet.commands.length).toBeGreaterThan(commandsBefore);
    expect((await new RolloutStore(t.dir).load(plan.id))?.finished).toBe(true);
  });

  it("a checkout being put back when the hub stopped is finished on resume, once, and noted once", async () => {
    const t = setup(2, 30);
    t.fleet.failTests("h0"); // the canary switches, fails its tests, is rolled back: then its checkout goes back
    const plan = t.plan({ onFailure: "rollback-failed", strategy: { canary: 1, waves: { size: 1 }, parallelism: 1 } });
    const first = t.engine();
    let stopped = false;
    t.fleet.onCommand((c) => {
      if (!stopped && c.host === "h0" && c.op === "pull" && c.args.commit === OLD_COMMIT) {
        first.detach(); // the hub stops with the restore pull out
        stopped = true;
      }
    });
    void first.run(plan, "alice");
    await until(() => stopped);
    await t.settle();

    const second = t.engine();
    const audits: AuditEvent[] = [];
    second.on("audit", (e) => audits.push(e));
    const final = await second.resume(plan.id);
    expect(final.hosts.h0!.state).toBe("rolled-back");
    expect(final.hosts.h0!.reason!.match(/checkout back at/g)).toHaveLength(1);
    expect(audits.filter((e) => e.action === "command.recovered").map((e) => e.details?.step)).toEqual(["restore-checkout"]);
    expect(audits.filter((e) => e.action === "host.checkout-restored")).toHaveLength(1);
    expect(t.fleet.commands.filter((c) => c.host === "h0" && c.op === "pull" && c.args.commit === OLD_COMMIT)).toHaveLength(1);
    expect(t.fleet.host("h0")?.info?.commit).toBe(OLD_COMMIT);
  });

  it("a step recorded but never delivered is reported interrupted, not resent", async () => {
    const t = setup(3, 5);
    t.fleet.loseNextCommand("h1", "switch"); // the hub dies between recording and publishing
    const plan = t.plan({ strategy: { canary: 0, waves: { size: 3 }, parallelism: 3 } });
    const first = t.engine();
    void first.run(plan, "alice");
    const store = new RolloutStore(t.dir);
    await until(async () => (await store.load(plan.id))?.steps["h1/switch"] !== undefined);
    first.detach();
    await t.settle();

    const final = await t.engine(100).resume(plan.id);
    expect(final.state).toBe("interrupted");
    expect(final.hosts.h1!.state).toBe("interrupted");
    expect(final.hosts.h1!.reason).toMatch(/never reported it; it was not sent again/);
    expect(t.fleet.ran("h1", "switch")).toBe(0);
    expect(t.fleet.commands.filter((c) => c.host === "h1" && c.op === "switch")).toHaveLength(0);
    for (const h of ["h0", "h2"]) for (const op of ["pull", "switch"]) expect(t.fleet.ran(h, op)).toBeLessThanOrEqual(1);
  });

  it("a restart during the soak waits only for the rest of it", async () => {
    const t = setup(2, 1);
    const plan = t.plan({ strategy: { canary: 1, soakMs: 1000 } });
    const first = t.engine();
    let soakStart = 0;
    first.on("audit", (e) => e.action === "soak.started" && (soakStart = Date.now()));
    void first.run(plan, "alice");
    await until(() => soakStart > 0);
    await new Promise((r) => setTimeout(r, 150));
    first.detach();
    await t.settle();
    await new Promise((r) => setTimeout(r, 100)); // the hub is down for a moment

    const final = await t.engine().resume(plan.id);
    const waveStart = Date.parse(final.hosts.h1!.startedAt!);
    expect(final.state).toBe("completed");
    expect(waveStart - soakStart).toBeGreaterThanOrEqual(990);
    expect(waveStart - soakStart).toBeLessThan(1200); // a second full soak would end after 1250 ms
    expect(t.fleet.ran("h0")).toBe(3);
  });

  it("resuming a finished rollout changes nothing", async () => {
    const t = setup(1, 1);
    const plan = t.plan({ strategy: { canary: 0 } });
    await t.engine().run(plan, "alice");
    const n = t.fleet.commands.length;
    const again = await t.engine().resume(plan.id);
    expect(again.state).toBe("completed");
    expect(t.fleet.commands.length).toBe(n);
  });
});
