import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RolloutStore, type RolloutRecord } from "../../rollout/store.js";
import { RolloutPlanner } from "../../rollout/planner.js";
import { RolloutStoreError } from "../../rollout/errors.js";
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
    expect(store.writeCount).toBeLessThan(10);
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
