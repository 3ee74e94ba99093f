import { afterEach, describe, expect, it } from "vitest";
import { RolloutService } from "../../rollout/service.js";
import { RolloutStore } from "../../rollout/store.js";
import { RolloutConflictError, RolloutPlanError, RolloutSpecError } from "../../rollout/errors.js";
import { RolloutProgress } from "../../protocol/schemas.js";
import { FakeFleet } from "../support/fake-fleet.js";
import { serviceOnFakeFleet } from "../support/rollout-fixture.js";

const COMMIT = "f".repeat(40);
const FAST = { soakMs: 0, stepTimeouts: { pull: 2000, switch: 2000, test: 2000 }, healthTimeoutMs: 1000 };
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function setup(latencyMs = 1) {
  const { dir, fleet, service, close } = serviceOnFakeFleet(latencyMs, COMMIT);
  cleanups.push(close);
  return { dir, fleet, service };
}

describe("RolloutService", () => {
  it("start returns the id at once, runs in the background and publishes progress, audit and history", async () => {
    const { fleet, service } = setup();
    const done: RolloutProgress[] = [];
    service.events.on("done", (p) => done.push(p));
    const id = service.start({ commit: COMMIT, strategy: FAST }, "alice");
    expect(service.isRunning(id)).toBe(true);
    expect(fleet.commands).toHaveLength(0); // nothing sent synchronously
    const final = await service.wait(id);
    expect(final.state).toBe("completed");
    expect(final.hosts.c).toMatchObject({ state: "skipped", reason: "held by an operator" });
    expect(done.map((p) => p.id)).toEqual([id]);
    // What went to the publisher (the broker, with FleetView) is valid protocol.
    expect(fleet.progress.at(-1)!.state).toBe("completed");
    for (const p of fleet.progress) RolloutProgress.parse(p);
    expect(fleet.history.map((h) => h.rolloutId)).toEqual([id]);
    expect(fleet.audits.some((a) => a.action === "host.excluded" && a.target === "c")).toBe(true);
    expect((await service.get(id))?.state).toBe("completed");
    expect((await service.list()).map((p) => p.id)).toEqual([id]);
    expect((await service.history())[0]!.rolloutId).toBe(id);
  });

  it("rejects bad specs, empty plans and overlapping rollouts before sending anything", async () => {
    const { fleet, service } = setup(50);
    expect(() => service.start({ commit: "main" }, "alice")).toThrow(RolloutSpecError);
    expect(() => service.start({ commit: COMMIT, selection: { hosts: ["c"] } }, "alice")).toThrow(RolloutPlanError);
    const id = service.start({ commit: COMMIT, strategy: FAST }, "alice");
    expect(() => service.installOnHost("a", COMMIT, "ha")).toThrow(RolloutConflictError);
    expect(fleet.commands.filter((c) => c.rolloutId !== id)).toHaveLength(0);
    expect(service.cancel(id, "bob")).toBe(true);
    expect((await service.wait(id)).state).toBe("cancelled");
  });

  it("check() refuses what start() would refuse, unknown named hosts too, and starts nothing", async () => {
    const { fleet, service } = setup(50);
    expect(() => service.check({ commit: "main" })).toThrow(RolloutSpecError);
    expect(() => service.check({ commit: COMMIT, selection: { hosts: ["a", "ghost"] } })).toThrow(/unknown host\(s\): ghost/);
    expect(() => service.start({ commit: COMMIT, selection: { hosts: ["a", "ghost"] } }, "alice")).toThrow(RolloutPlanError);
    expect(service.check({ commit: COMMIT, selection: { hosts: ["a"] } }).phases.flatMap((p) => p.hosts)).toEqual(["a"]);
    expect(fleet.commands).toHaveLength(0);
    expect(await service.list()).toEqual([]);
    const id = service.start({ commit: COMMIT, strategy: FAST, selection: { hosts: ["a"] } }, "alice");
    expect(() => service.check({ commit: COMMIT, selection: { hosts: ["a", "b"] } })).toThrow(RolloutConflictError);
    expect(service.check({ commit: COMMIT, selection: { hosts: ["b"] } }).phases.flatMap((p) => p.hosts)).toEqual(["b"]);
    service.cancel(id, "bob");
    await service.wait(id);
  });

  it("installOnHost deploys one host without canary or soak", async () => {
    const { fleet, service } = setup();
    const id = service.installOnHost("b", COMMIT, "home-assistant");
    const final = await service.wait(id);
    expect(final.state).toBe("completed");
    expect(final.phases).toEqual([{ name: "wave-1", hosts: ["b"] }]);
    expect(fleet.ran("a")).toBe(0);
    expect(fleet.generationOf("b")).toBe(2);
    expect(() => service.installOnHost("c", COMMIT, "home-assistant")).toThrow(/held/);
  });

  it("close() keeps rollouts resumable; resumeUnfinished() finishes them on a new service", async () => {
    const first = setup(40);
    const id = first.service.start({ commit: COMMIT, strategy: { ...FAST, canary: 0, waves: { size: 2 }, parallelism: 1 } }, "alice");
    await first.fleet.waitForHost("a", (h) => h.info?.commit === COMMIT, 2000);
    await first.service.close();
    expect((await new RolloutStore(first.dir).listUnfinished()).map((r) => r.id)).toEqual([id]);

    const second = new RolloutService({ fleet: first.fleet, store: new RolloutStore(first.dir), progressIntervalMs: 5, resumeGraceMs: 100 });
    expect(await second.resumeUnfinished()).toEqual([id]);
    const final = await second.wait(id);
    expect(final.state).toBe("completed");
    expect(first.fleet.ran("a", "pull")).toBe(1);
    expect(first.fleet.ran("b", "pull")).toBe(1);
    expect(await second.resumeUnfinished()).toEqual([]);
  });
});
