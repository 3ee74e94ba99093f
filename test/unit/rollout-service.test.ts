import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RolloutService } from "../../rollout/service.js";
import { RolloutStore } from "../../rollout/store.js";
import { RolloutConflictError, RolloutPlanError, RolloutSpecError } from "../../rollout/errors.js";
import { RolloutProgress, type RolloutHistoryEntry } from "../../protocol/schemas.js";
import { FakeFleet } from "../support/fake-fleet.js";
import { StorageFaultError, storageErrorCode } from "../../protocol/storage.js";
import { httpStatusForCode } from "../../node-red-nodes/lib/api-errors.js";
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

/** A store whose disk "fills up" on demand: writes fail like they do on a full or read-only data dir. */
class FaultyStore extends RolloutStore {
  failing = false;
  /** Only the history entry cannot be written (a disk that fills up between two files). */
  failHistoryOnly = false;
  private fault(): Error {
    return Object.assign(new Error("EROFS: read-only file system, open 'rollouts/x.json'"), { code: "EROFS" });
  }
  override save(record: Parameters<RolloutStore["save"]>[0]): Promise<void> {
    return this.failing ? Promise.reject(this.fault()) : super.save(record);
  }
  override append(...args: Parameters<RolloutStore["append"]>): Promise<void> {
    return this.failing ? Promise.reject(this.fault()) : super.append(...args);
  }
  override saveHistory(entry: Parameters<RolloutStore["saveHistory"]>[0]): Promise<void> {
    return this.failing || this.failHistoryOnly ? Promise.reject(this.fault()) : super.saveHistory(entry);
  }
  protected override probeWrite(): void {
    if (this.failing) throw this.fault();
    super.probeWrite();
  }
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

  /** A service on a store that can be made to fail, with a fleet whose steps take 40 ms. */
  function faultySetup() {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-service-"));
    const fleet = new FakeFleet({ hosts: [{ host: "a", priority: 1 }, { host: "b", priority: 2 }], latencyMs: 40, expectedHead: COMMIT });
    const store = new FaultyStore(dir);
    const reports: string[] = [];
    const held = new Set<string>();
    const storage = {
      assertWritable: () => undefined,
      reporter: { ok: () => reports.push("ok"), failed: (e: unknown) => reports.push(`failed ${storageErrorCode(e)}`) },
      holdRollout: (id: string) => held.add(id),
      releaseRollout: (id: string) => held.delete(id),
    };
    const service = new RolloutService({ fleet, store, progressIntervalMs: 5, resumeGraceMs: 100, storage });
    cleanups.push(async () => {
      await service.close();
      fleet.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const faults: unknown[] = [];
    service.events.on("storage-fault", (f) => faults.push(f));
    const spec = { commit: COMMIT, strategy: { ...FAST, canary: 0, waves: { size: 2 }, parallelism: 1 } };
    return { dir, fleet, store, service, faults, reports, held, spec };
  }

  it("a data dir that cannot be written holds the rollout (nothing unstored published, new rollouts refused with 409) and resumes it to exactly one final state once it can", async () => {
    const { dir, fleet, store, service, faults, reports, held, spec } = faultySetup();
    const id = service.start(spec, "alice");
    await fleet.waitForHost("a", (h) => h.info?.commit === COMMIT, 2000);
    store.failing = true;
    const fault = new Promise((resolve) => service.events.once("storage-fault", resolve));
    await fault;
    expect(service.held()).toEqual([id]);
    expect([...held]).toEqual([id]);
    expect(reports).toContain("failed EROFS");
    // Not finished, and no final state went out: the record on disk still says it runs.
    expect(fleet.progress.filter((p) => p.id === id && p.finishedAt !== undefined).map((p) => p.state)).toEqual([]);
    expect(fleet.history).toEqual([]);
    expect((await new RolloutStore(dir).load(id))!.finished).toBe(false);
    expect((await service.get(id))?.finishedAt).toBeUndefined();
    let refused: unknown;
    try {
      service.start({ commit: COMMIT, selection: { hosts: ["b"] }, strategy: FAST }, "bob");
    } catch (e) {
      refused = e;
    }
    expect(refused).toBeInstanceOf(StorageFaultError);
    expect(httpStatusForCode((refused as StorageFaultError).code)).toBe(409);
    expect((refused as Error).message).toMatch(/cannot write its data dir \(EROFS .*remount the file system/);

    // A retry while it still cannot write changes nothing.
    await service.retryHeld();
    expect(service.held()).toEqual([id]);
    expect(reports.at(-1)).toBe("failed EROFS");

    // Writable again: the same rollout goes on, without a hub restart, and ends once.
    store.failing = false;
    await service.retryHeld();
    expect(reports.at(-1)).toBe("ok");
    expect(held.size).toBe(0);
    expect((await service.wait(id)).state).toBe("completed");
    expect(faults).toHaveLength(1);
    expect(fleet.history.map((h) => [h.rolloutId, h.state])).toEqual([[id, "completed"]]);
    expect(new Set(fleet.progress.filter((p) => p.id === id && p.finishedAt).map((p) => p.state))).toEqual(new Set(["completed"]));
    for (const host of ["a", "b"]) for (const op of ["pull", "switch", "test"]) expect(fleet.ran(host, op)).toBe(1);
    expect((await new RolloutStore(dir).load(id))!.progress.state).toBe("completed");
  });

  it("a held rollout stays resumable across a hub restart", async () => {
    const { dir, fleet, store, service, spec } = faultySetup();
    const id = service.start(spec, "alice");
    await fleet.waitForHost("a", (h) => h.info?.commit === COMMIT, 2000);
    store.failing = true;
    await new Promise((resolve) => service.events.once("storage-fault", resolve));
    await service.close();
    expect((await service.wait(id).catch(() => undefined))?.finishedAt).toBeUndefined();

    store.failing = false;
    const second = new RolloutService({ fleet, store: new RolloutStore(dir), progressIntervalMs: 5, resumeGraceMs: 100 });
    cleanups.push(() => second.close());
    expect(await second.resumeUnfinished()).toEqual([id]);
    expect((await second.wait(id)).state).toBe("completed");
    expect(fleet.history.map((h) => [h.rolloutId, h.state])).toEqual([[id, "completed"]]);
  });

  it("the history entry could not be written: the record is not finished either, and the resumed rollout ends once", async () => {
    const { dir, fleet, store, service, spec } = faultySetup();
    store.failHistoryOnly = true;
    const id = service.start(spec, "alice");
    await new Promise((resolve) => service.events.once("storage-fault", resolve));
    expect((await new RolloutStore(dir).load(id))!.finished).toBe(false);
    expect(fleet.progress.filter((p) => p.id === id && p.finishedAt !== undefined)).toEqual([]);
    store.failHistoryOnly = false;
    await service.retryHeld();
    expect((await service.wait(id)).state).toBe("completed");
    expect(fleet.history.map((h) => [h.rolloutId, h.state])).toEqual([[id, "completed"]]);
    expect((await new RolloutStore(dir).history()).map((h) => h.rolloutId)).toEqual([id]);
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

  it("installOnHost starts from the hub's rollout defaults, with canary, soak, window and selection fixed", async () => {
    const { dir, fleet } = setup();
    const store = new RolloutStore(dir);
    const defaults = { strategy: { canary: 2, soakMs: 60_000, askHostMs: 5_000, stepTimeouts: { switch: 7_200_000 } }, respectWindows: true, onFailure: "rollback-failed" };
    const service = new RolloutService({ fleet, store, progressIntervalMs: 5, defaults });
    cleanups.push(() => service.close());
    const id = service.installOnHost("b", COMMIT, "home-assistant");
    expect((await service.wait(id)).state).toBe("completed");
    const spec = (await store.load(id))!.plan.spec;
    expect(spec).toMatchObject({ commit: COMMIT, selection: { hosts: ["b"] }, respectWindows: false, onFailure: "rollback-failed" });
    expect(spec.strategy).toMatchObject({ canary: 0, soakMs: 0, askHostMs: 5_000, stepTimeouts: { switch: 7_200_000 } });
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

describe("one story in the update history", () => {
  it("a converge rollout that ends is recorded on its failed rollout's history entry (stored and published)", async () => {
    const { fleet, service } = setup();
    fleet.failBuild("b");
    const failedId = service.start({ commit: COMMIT, strategy: FAST, onFailure: "rollback-all" }, "alice");
    const failed = await service.wait(failedId);
    expect(failed.state, JSON.stringify(failed, null, 1)).toBe("rolled-back");
    fleet.failBuild("b", false);

    const linked = new Promise<RolloutHistoryEntry>((resolve) => service.events.on("history", (h) => h.rolloutId === failedId && h.convergedBy && resolve(h)));
    const convergeId = service.start({ commit: COMMIT, strategy: FAST, converges: failedId }, "lockstep automatic (mergeReverts)");
    const converged = await service.wait(convergeId);
    const entry = await linked;
    expect(entry.convergedBy).toEqual({ rolloutId: convergeId, state: converged.state, commit: COMMIT, requestedBy: "lockstep automatic (mergeReverts)", finishedAt: converged.finishedAt, pullOnly: [] });
    // The failed rollout's own story is unchanged.
    expect(entry).toMatchObject({ rolloutId: failedId, state: "rolled-back", requestedBy: "alice" });
    const stored = (await service.history()).filter((e) => e.rolloutId === failedId);
    expect(stored).toHaveLength(1);
    expect(stored[0]!.convergedBy?.rolloutId).toBe(convergeId);
    expect(fleet.history.filter((e) => e.rolloutId === failedId).at(-1)?.convergedBy?.rolloutId).toBe(convergeId);
    // Only entries that converge something are linked.
    expect((await service.history()).find((e) => e.rolloutId === convergeId)?.convergedBy).toBeUndefined();
  });
});
