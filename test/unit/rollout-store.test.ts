import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RolloutStore, type RolloutRecord } from "../../rollout/store.js";
import { RolloutPlanner } from "../../rollout/planner.js";
import { RolloutStoreError } from "../../rollout/errors.js";
import { applyChangeLine, ChangeLine, changeLine } from "../../rollout/record.js";
import { FakeFleet } from "../support/fake-fleet.js";

const COMMIT = "3".repeat(40);
const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

function record(id: string): RolloutRecord {
  const fleet = new FakeFleet({ hosts: [{ host: "a" }] });
  const plan = new RolloutPlanner().plan({ commit: COMMIT }, fleet.hosts(), new Date(), id);
  const now = new Date().toISOString();
  return {
    version: 1,
    id,
    commit: COMMIT,
    requestedBy: "alice",
    plan,
    progress: {
      id,
      commit: COMMIT,
      state: "running",
      summary: "",
      requestedBy: "alice",
      phases: [],
      hosts: { a: { host: "a", phase: "canary", state: "pending", jobIds: [] } },
      counts: { total: 1, succeeded: 0, failed: 0, skipped: 0 },
      createdAt: now,
      updatedAt: now,
    },
    steps: {},
    rollbackFailed: [],
    finished: false,
  };
}

describe("RolloutStore", () => {
  it("coalesces concurrent saves and always ends with the newest state on disk", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-store-"));
    dirs.push(dir);
    const store = new RolloutStore(dir);
    const rec = record("r-1");
    const saves: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      rec.steps[`a/step${i}`] = { host: "a", step: `step${i}`, commandId: `c-${i}`, sentAt: "x", expiresAt: "x", timeoutMs: 1 };
      saves.push(store.save(rec));
    }
    await Promise.all(saves);
    expect(store.stats.snapshots).toBeLessThan(10);
    expect(Object.keys((await new RolloutStore(dir).load("r-1"))!.steps)).toHaveLength(200);
    // No temp files left behind.
    expect(readdirSync(join(dir, "rollouts"))).toEqual(["r-1.json"]);
  });

  it("lists unfinished rollouts and reports a damaged file with its path", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-store-"));
    dirs.push(dir);
    const store = new RolloutStore(dir);
    await store.save(record("r-open"));
    await store.save({ ...record("r-done"), finished: true });
    expect((await store.listUnfinished()).map((r) => r.id)).toEqual(["r-open"]);
    expect(await store.load("r-missing")).toBeUndefined();

    writeFileSync(join(dir, "rollouts", "r-open.json"), "{ half a file");
    const err = await store.load("r-open").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RolloutStoreError);
    expect((err as Error).message).toMatch(/not valid JSON: .*r-open\.json/);
    writeFileSync(join(dir, "rollouts", "r-open.json"), JSON.stringify({ version: 1, id: "r-open" }));
    await expect(store.load("r-open")).rejects.toThrow(/does not match the expected format/);
  });
});

const step = (i: number, result?: string) => ({
  host: "a",
  step: `step${i}`,
  commandId: `c-${i}`,
  sentAt: "2026-12-05T00:00:00.000Z",
  expiresAt: "2026-12-05T01:00:00.000Z",
  timeoutMs: 1000,
  ...(result ? { result: { state: "succeeded" as const, summary: result, at: "2026-12-05T00:00:01.000Z" } } : {}),
});

function tempStore(opts?: ConstructorParameters<typeof RolloutStore>[1]) {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-store-"));
  dirs.push(dir);
  return { dir, store: new RolloutStore(dir, opts), rollouts: join(dir, "rollouts") };
}

describe("RolloutStore: snapshot and append-only log", () => {
  it("a step costs a log line, not a rewrite of the record; reading replays the log over the snapshot", async () => {
    const { dir, store, rollouts } = tempStore();
    const rec = record("r-log");
    await store.save(rec);
    const snapshot = readFileSync(join(rollouts, "r-log.json"), "utf8");
    for (let i = 0; i < 20; i++) {
      rec.steps[`a/step${i}`] = step(i);
      rec.progress.hosts.a!.jobIds.push(`c-${i}`);
      rec.progress.hosts.a!.state = "pulling";
      await store.append(rec, { steps: [`a/step${i}`], hosts: ["a"] }, { durable: true });
      rec.steps[`a/step${i}`]!.result = step(i, `done ${i}`).result;
      void store.append(rec, { steps: [`a/step${i}`] }, { durable: false });
    }
    rec.stop = { reason: "cancelled", detail: "by bob", at: "2026-12-05T00:00:02.000Z" };
    rec.progress.state = "cancelled";
    await store.append(rec, {}, { durable: true });
    await store.flush();
    expect(readFileSync(join(rollouts, "r-log.json"), "utf8")).toBe(snapshot); // never rewritten
    expect(readFileSync(join(rollouts, "r-log.log"), "utf8").trim().split("\n")).toHaveLength(41);
    expect(await new RolloutStore(dir).load("r-log")).toEqual(rec);
    expect(store.stats).toMatchObject({ snapshots: 1 });
    expect(store.stats.logSyncs).toBeLessThanOrEqual(21);

    // The end: written whole once more, the log is gone.
    rec.finished = true;
    await store.save(rec);
    expect(readdirSync(rollouts).sort()).toEqual(["r-log.json"]);
    expect(await new RolloutStore(dir).load("r-log")).toEqual(rec);
  });

  it("steps recorded in separate callbacks of one event-loop turn share one write and one sync", async () => {
    // Hosts finish their steps in bursts, each in its own callback (here: immediates queued together,
    // which run in one check phase with microtasks in between; in the hub: job states from one socket
    // read, step timers expiring together). Each waits for its line to be durable before its command
    // goes out: one sync for the burst, not one for the first host and another for the rest.
    const { dir, store } = tempStore();
    const rec = record("r-burst");
    await store.save(rec);
    const before = { ...store.stats };
    const recorded = await new Promise<Array<Promise<void>>>((resolve) => {
      const out: Array<Promise<void>> = [];
      for (let i = 0; i < 5; i++) {
        setImmediate(() => {
          rec.steps[`a/step${i}`] = step(i);
          out.push(store.append(rec, { steps: [`a/step${i}`] }, { durable: true }));
          if (out.length === 5) resolve(out);
        });
      }
    });
    await Promise.all(recorded);
    expect(store.stats.logWrites - before.logWrites).toBe(1);
    expect(store.stats.logSyncs - before.logSyncs).toBe(1);
    await store.flush();
    expect(Object.keys((await new RolloutStore(dir).load("r-burst"))!.steps)).toHaveLength(5);
  });

  it("appending to a rollout this store has not saved whole is refused", async () => {
    const { store } = tempStore();
    await expect(store.append(record("r-x"), {}, { durable: true })).rejects.toThrow(/save\(\) it whole before appending/);
  });

  it("a torn last line (crash mid-append) is ignored; a damaged line before it is an error naming the file and line", async () => {
    const { dir, store, rollouts } = tempStore();
    const rec = record("r-torn");
    await store.save(rec);
    rec.steps["a/step1"] = step(1);
    await store.append(rec, { steps: ["a/step1"] }, { durable: true });
    await store.flush();
    const log = join(rollouts, "r-torn.log");
    const good = readFileSync(log, "utf8");
    appendFileSync(log, good.slice(0, 40)); // the next line, cut off by a crash
    const loaded = (await new RolloutStore(dir).load("r-torn"))!;
    expect(Object.keys(loaded.steps)).toEqual(["a/step1"]);

    // The resumed rollout is saved whole and logs on, with no trace of the torn line.
    const resumed = new RolloutStore(dir);
    const again = (await resumed.load("r-torn"))!;
    await resumed.save(again);
    again.steps["a/step2"] = step(2);
    await resumed.append(again, { steps: ["a/step2"] }, { durable: true });
    await resumed.flush();
    expect(Object.keys((await new RolloutStore(dir).load("r-torn"))!.steps)).toEqual(["a/step1", "a/step2"]);

    writeFileSync(log, `{"n":1,"progress":\n${good}`);
    await expect(new RolloutStore(dir).load("r-torn")).rejects.toThrow(/rollout log line 1 is not valid JSON: .*r-torn\.log/);
  });

  it("reads a record written whole by an older version (no log) and resumes it in the new format", async () => {
    const { dir, rollouts } = tempStore();
    const old = record("r-old");
    old.steps["a/step1"] = step(1, "done");
    mkdirSync(rollouts, { recursive: true });
    writeFileSync(join(rollouts, "r-old.json"), JSON.stringify(old, null, 1)); // exactly what the old store wrote
    const store = new RolloutStore(dir);
    const loaded = (await store.load("r-old"))!;
    expect(loaded).toEqual(old);
    expect((await store.listUnfinished()).map((r) => r.id)).toEqual(["r-old"]);
    await store.save(loaded);
    loaded.steps["a/step2"] = step(2);
    await store.append(loaded, { steps: ["a/step2"] }, { durable: true });
    await store.flush();
    expect(Object.keys((await new RolloutStore(dir).load("r-old"))!.steps)).toEqual(["a/step1", "a/step2"]);
  });

  it("compacts the log when it outgrows the snapshot, without losing or repeating a change", async () => {
    const { dir, store, rollouts } = tempStore({ compactMinBytes: 4096 });
    const rec = record("r-compact");
    await store.save(rec);
    const appends: Promise<void>[] = [];
    for (let i = 0; i < 300; i++) {
      rec.steps[`a/step${i}`] = step(i);
      rec.progress.counts.total = i;
      appends.push(store.append(rec, { steps: [`a/step${i}`] }, { durable: i % 3 === 0 }));
      if (i % 7 === 0) await appends.at(-1);
    }
    await Promise.all(appends);
    await store.flush();
    expect(store.stats.snapshots).toBeGreaterThan(2);
    expect(statSync(join(rollouts, "r-compact.log")).size).toBeLessThan(statSync(join(rollouts, "r-compact.json")).size * 2 + 4096);
    expect(readdirSync(rollouts).sort()).toEqual(["r-compact.json", "r-compact.log"]);
    expect(await new RolloutStore(dir).load("r-compact")).toEqual(rec);
  });

  it("after a crash in the middle of a compaction (new lines in .log.next) every change is read once, in order", async () => {
    const { dir, store, rollouts } = tempStore();
    const base = record("r-mid");
    const rec = structuredClone(base);
    await store.save(rec);
    const lines: string[] = [];
    for (let i = 1; i <= 5; i++) {
      rec.steps[`a/step${i}`] = step(i);
      rec.progress.hosts.a!.jobIds.push(`c-${i}`);
      lines.push(changeLine(i, rec, { steps: [`a/step${i}`], hosts: ["a"] }));
    }
    const snapshotAt = (seq: number, r: RolloutRecord) => writeFileSync(join(rollouts, "r-mid.json"), JSON.stringify({ ...r, logSeq: seq }));
    // 1: the snapshot had not been replaced yet: old snapshot, old log (1-3), new log (4-5).
    snapshotAt(0, base);
    writeFileSync(join(rollouts, "r-mid.log"), lines.slice(0, 3).join("\n") + "\n");
    writeFileSync(join(rollouts, "r-mid.log.next"), lines.slice(3).join("\n") + "\n");
    expect(await new RolloutStore(dir).load("r-mid")).toEqual(rec);
    // 2: the new snapshot (up to line 3) was written, the old log not yet replaced.
    const upTo3 = structuredClone(base);
    for (const l of lines.slice(0, 3)) applyChangeLine(upTo3, ChangeLine.parse(JSON.parse(l)));
    snapshotAt(3, upTo3);
    expect(await new RolloutStore(dir).load("r-mid")).toEqual(rec);
    // 3: a line is missing between snapshot and log: that is damage, not something to guess over.
    snapshotAt(0, base);
    rmSync(join(rollouts, "r-mid.log"));
    await expect(new RolloutStore(dir).load("r-mid")).rejects.toThrow(/misses lines 1-3/);
  });
});
