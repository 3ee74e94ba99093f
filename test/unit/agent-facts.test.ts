/** The agent's measurement: persisted results + profile links + git facts -> the five compartments. */
import { describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { measure } from "../../agent/facts.js";
import type { GitCheckout } from "../../agent/git.js";
import { PersistedState } from "../../agent/state.js";
import { lockHash, type CompartmentName, type FleetExpected, type GitFacts } from "../../protocol/index.js";

const A = "a".repeat(40);
const B = "b".repeat(40);

function world() {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-agent-facts-"));
  const checkout = join(dir, "checkout");
  mkdirSync(checkout);
  const lock = JSON.stringify({ nodes: { root: { inputs: {} } }, root: "root", version: 7 });
  writeFileSync(join(checkout, "flake.lock"), lock);
  const store = join(dir, "store");
  for (const n of ["sys1", "sys2"]) mkdirSync(join(store, n), { recursive: true });
  const profiles = join(dir, "profiles");
  mkdirSync(profiles);
  symlinkSync(join(store, "sys1"), join(profiles, "system-1-link"));
  symlinkSync(join(store, "sys2"), join(profiles, "system-2-link"));
  symlinkSync("system-2-link", join(profiles, "system"));
  let head = A;
  const git = {
    dir: checkout,
    facts: async (expectedHead?: string): Promise<GitFacts> => ({
      branch: "main",
      head,
      ...(expectedHead ? { expectedHead, relation: head === expectedHead ? "equal" : "behind" } : {}),
    }),
  } as unknown as GitCheckout;
  const expected = (h: string): FleetExpected => ({ repo: "r", branch: "main", headCommit: h, lockHash: lockHash(lock), pendingUpdate: null, updatedAt: new Date().toISOString() });
  return {
    store,
    profile: join(profiles, "system"),
    git,
    expected,
    setHead: (h: string) => (head = h),
  };
}

const run = (w: ReturnType<typeof world>, state: Partial<PersistedState>, expectedHead = A, working: CompartmentName[] = []) =>
  measure({ checkout: w.git, profile: w.profile, state: PersistedState.parse(state), expected: w.expected(expectedHead), version: "1.0.0", working: new Set(working) });

describe("agent measurement", () => {
  it("green when the running generation was built from the checked-out head", async () => {
    const w = world();
    const m = await run(w, { generations: { "2": { commit: A, path: join(w.store, "sys2") } }, lastBuild: { commit: A, path: join(w.store, "sys2") } });
    expect(m.generation).toBe(2);
    expect(m.compartments.system).toMatchObject({ status: "ok", generation: 2 });
    expect(m.compartments.git.status).toBe("ok");
    expect(m.compartments.lock.status).toBe("ok");
  });

  it("a failed switch of the checked-out commit is red with its error; after pulling another commit it is only outdated", async () => {
    const w = world();
    const state = { generations: { "2": { commit: A, path: join(w.store, "sys2") } }, lastSwitch: { ok: false, error: "error: it broke", commit: A, at: new Date().toISOString() } };
    expect((await run(w, state)).compartments.system).toMatchObject({ status: "failed", summary: "switch failed: error: it broke" });
    w.setHead(B);
    expect((await run(w, state, B)).compartments.system).toMatchObject({ status: "outdated", summary: "checkout changed since the last switch" });
  });

  it("after a rollback the running system differs from the checkout's build", async () => {
    const w = world();
    const m = await run(w, {
      generations: { "2": { commit: B, path: join(w.store, "sys2") } },
      lastBuild: { commit: A, path: join(w.store, "sys1") },
      lastSwitch: { ok: true, at: new Date().toISOString(), commit: B, generation: 2 },
    });
    expect(m.compartments.system).toMatchObject({ status: "outdated", summary: "running system differs from the checked-out configuration" });
  });

  it("an evaluation equal to the running path is an exact match even for a newer commit", async () => {
    const w = world();
    w.setHead(B);
    const m = await run(w, { generations: { "2": { commit: A, path: join(w.store, "sys2") } }, evaluated: { commit: B, path: join(w.store, "sys2") } }, B);
    expect(m.compartments.system.status).toBe("ok");
    const stale = await run(w, { generations: { "2": { commit: A, path: join(w.store, "sys2") } }, evaluated: { commit: A, path: join(w.store, "sys2") } }, B);
    expect(stale.compartments.system.status).toBe("outdated");
  });

  it("tests belong to a generation; running jobs show working", async () => {
    const w = world();
    const at = new Date().toISOString();
    const base = { generations: { "2": { commit: A, path: join(w.store, "sys2") } } };
    expect((await run(w, { ...base, lastTest: { generation: 1, passed: true, failed: [], total: 2, at } })).compartments.tests.status).toBe("outdated");
    expect((await run(w, { ...base, lastTest: { generation: 2, passed: false, failed: ["web/10.sh"], total: 2, at } })).compartments.tests).toMatchObject({ status: "failed", summary: "1/2 failed: web/10.sh" });
    const busy = await run(w, base, A, ["system", "tests", "lock"]);
    expect([busy.compartments.system.status, busy.compartments.tests.status, busy.compartments.lock.status]).toEqual(["working", "working", "working"]);
    expect(busy.compartments.git.status).toBe("ok");
  });

  it("an installed agent other than the running one turns Agent red with a restart hint", async () => {
    const w = world();
    const input = { checkout: w.git, profile: w.profile, state: PersistedState.parse({}), expected: w.expected(A), version: "1.0.0", working: new Set<CompartmentName>() };
    const stale = await measure({ ...input, onDiskVersion: "1.1.0" });
    expect(stale.compartments.agent).toMatchObject({ status: "failed", summary: "running 1.0.0 but 1.1.0 is installed: restart the agent", detail: { onDiskVersion: "1.1.0", restartSuggested: true } });
    expect((await measure({ ...input, onDiskVersion: "1.0.0" })).compartments.agent).toMatchObject({ status: "ok", summary: "agent 1.0.0" });
    expect((await measure(input)).compartments.agent.status).toBe("ok");
  });
});
