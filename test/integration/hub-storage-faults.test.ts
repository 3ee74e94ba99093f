/**
 * Storage faults on a real file system (issue 14): a real `lockstep hub` process in its own mount
 * namespace (`unshare -m`, as root) whose data dir is a small tmpfs, with two MQTT agents
 * (test/support/storage-fault-hub.ts, which the fault matrix's storage rows use too). Mid-rollout the data dir turns read-only (a read-only bind
 * mount over it, so files already open stay open, as after an errors=remount-ro) and, later, full
 * (ENOSPC: a file fills the tmpfs) while an agent with a last will reconnects (Aedes deletes its
 * stored will: on a full disk that was an unhandled rejection).
 *
 * Expected: the hub stays up and says so (retained hub/storage: fault with the code, the held
 * rollout), refuses a new rollout, publishes no final state it could not store, and once the data
 * dir can be written again resumes the rollout to exactly one final state, without sending a step
 * twice, and writes the audit events it kept between storage.fault and storage.recovered.
 *
 * Needs root, util-linux (unshare, nsenter; scripts/setup.sh installs it) and `npm run build`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountNamespaceProblem, StorageFaultHub } from "../support/storage-fault-hub.js";

const problem = mountNamespaceProblem();

describe("storage faults on a real file system", () => {
  let h: StorageFaultHub;

  beforeAll(async () => {
    if (problem) throw new Error(`this test needs a private mount namespace with a tmpfs: ${problem}`);
    h = await StorageFaultHub.start({ hosts: ["alpha", "beta"], logLevel: process.env.STORAGE_TEST_LOG_LEVEL ?? "info" });
  }, 120_000);

  afterAll(async () => {
    if (process.env.STORAGE_TEST_LOG) require("node:fs").writeFileSync(process.env.STORAGE_TEST_LOG, h?.hub.output() ?? "");
    await h?.stop();
  });

  it("read-only mid-rollout: the rollout is held, not failed; new ones are refused; it ends once after the dir is writable again, and the audit kept what happened", async () => {
    const switching = await h.installHeldAt("alpha", "switch");
    const id = switching.id;
    // Read-only from here on for every new open (what is open stays open, like errors=remount-ro).
    h.makeReadOnly();
    switching.release();

    const fault = await h.watch.until("hub/storage fault with the rollout held", () => (h.watch.storage?.state === "fault" && h.watch.storage.heldRollouts.includes(id) ? h.watch.storage : undefined));
    expect(fault).toMatchObject({ code: "EROFS", dataDir: h.dataDir });
    expect(fault.hint).toMatch(/remount the file system .* read-write/);
    expect(fault.faults.map((f) => f.writer)).toContain("rollouts");
    expect(h.watch.finalStates(id)).toEqual([]);
    expect(await h.storedRollout(id)).toMatchObject({ finished: false, progress: { state: "running" } });
    // The hub still serves, and keeps what it could not write.
    const inMemory = await h.auditApi();
    expect(inMemory.map((e) => e.action)).toContain("storage.fault");
    expect(h.auditFile().map((e) => e.action)).not.toContain("storage.fault");

    // A new rollout is refused while the data dir cannot be written.
    const before = new Set(h.watch.progress.map((p) => p.id));
    await h.install("beta");
    await expect.poll(() => h.hub.output().split("\n").find((l) => l.includes("home assistant install refused")), { timeout: 30_000 }).toMatch(/the hub cannot write its data dir \(EROFS at /);
    expect(h.watch.progress.filter((p) => !before.has(p.id))).toEqual([]);
    expect(h.agents.beta!.received).toEqual([]);

    h.makeWritable();
    await h.watch.until("hub/storage ok again", () => (h.watch.storage?.state === "ok" ? true : undefined));
    await h.watch.until(`rollout ${id}'s history`, () => h.watch.history.find((e) => e.rolloutId === id));
    expect(h.watch.finalStates(id)).toEqual(["completed"]);
    expect(h.watch.history.filter((e) => e.rolloutId === id).map((e) => e.state)).toEqual(["completed"]);
    expect(h.agents.alpha!.received.map((c) => c.op)).toEqual(["pull", "switch", "test"]); // none twice
    expect(await h.storedRollout(id)).toMatchObject({ finished: true, progress: { state: "completed" } });

    const written = h.auditFile().map((e) => e.action);
    const faultAt = written.indexOf("storage.fault");
    const recoveredAt = written.indexOf("storage.recovered");
    expect(faultAt).toBeGreaterThan(-1);
    expect(recoveredAt).toBeGreaterThan(faultAt);
    // What happened during the fault was kept and written in between (the switch's result at least).
    expect(written.slice(faultAt, recoveredAt)).toContain("command.finished");
    expect(written.filter((a) => a === "rollout.finished")).toHaveLength(1);
    expect(h.hub.child.exitCode).toBeNull();
  }, 180_000);

  it("a full data disk while an agent with a last will reconnects: no unhandled rejection, the hub says ENOSPC, refuses rollouts, and audits the fault once it can write", async () => {
    // Fill the tmpfs (dd stops at ENOSPC), then use up what is left in the pages of open files.
    h.fill();
    const full = h.watch.until("hub/storage fault (ENOSPC) from the broker", () => (h.watch.storage?.faults.some((f) => f.writer === "broker" && f.code === "ENOSPC") ? h.watch.storage : undefined));
    let filled = false;
    void full.then(() => (filled = true));
    for (let i = 0; i < 500 && !filled; i++) await h.agents.alpha!.republish();
    const fault = await full;
    expect(fault).toMatchObject({ state: "fault", code: "ENOSPC" });
    expect(fault.hint).toMatch(/free space on the file system of/);
    // Aedes deletes (and stores) the reconnecting agent's will: both fail on this disk. It connects.
    await h.agents.alpha!.reconnect();
    const known = new Set(h.watch.progress.map((p) => p.id));
    await h.install("beta");
    await expect.poll(() => h.hub.output().split("\n").filter((l) => l.includes("home assistant install refused")).at(-1), { timeout: 30_000 }).toMatch(/cannot write its data dir \(ENOSPC at /);
    expect(h.watch.progress.filter((p) => !known.has(p.id))).toEqual([]);
    expect((await h.auditApi()).filter((e) => e.action === "hub.fault")).toEqual([]); // no unhandled rejection
    expect(h.hub.child.exitCode).toBeNull();

    h.freeSpace();
    await h.watch.until("hub/storage ok again", () => (h.watch.storage?.state === "ok" ? true : undefined));
    const written = h.auditFile();
    const actions = written.map((e) => e.action);
    expect(written.filter((e) => e.action === "storage.fault").map((e) => e.details?.code)).toEqual(["EROFS", "ENOSPC"]);
    expect(actions.lastIndexOf("storage.recovered")).toBeGreaterThan(actions.lastIndexOf("storage.fault"));
    expect(actions).not.toContain("hub.fault");
    // The retained messages the broker could not store while full were stored by the retry.
    await h.agents.alpha!.republish();
    expect(h.watch.storage?.state).toBe("ok");
  }, 180_000);
});
