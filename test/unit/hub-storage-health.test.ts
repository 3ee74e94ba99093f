import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { AuditLog } from "../../hub/audit-log.js";
import { StorageHealth, storageTransitionEvent } from "../../hub/storage-health.js";
import { httpStatusForCode } from "../../node-red-nodes/lib/api-errors.js";
import { RolloutStoreError } from "../../rollout/errors.js";
import { AuditEvent, StorageFaultError, StorageHealthState, storageErrorCode, Topics } from "../../protocol/index.js";

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "lockstep-storage-"));
  dirs.push(d);
  return d;
}

function memoryLog(): { log: pino.Logger; lines: () => Array<{ level: number; msg: string }> } {
  const out: string[] = [];
  const log = pino({ level: "info" }, { write: (s: string) => void out.push(s) });
  return { log, lines: () => out.map((l) => JSON.parse(l) as { level: number; msg: string }) };
}

const enospc = () => Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });

function health(dataDir: string) {
  const { log, lines } = memoryLog();
  const published: StorageHealthState[] = [];
  const h = new StorageHealth({ dataDir, log, publish: async (s) => void published.push(StorageHealthState.parse(s)), retryEveryMs: 60_000 });
  const transitions: StorageHealthState[] = [];
  h.on("transition", (s) => transitions.push(s));
  return { h, lines, published, transitions };
}

describe("StorageHealth", () => {
  it("one failed write is a fault (code, path, hint), published and logged once; ok again when every failed writer wrote again", () => {
    const dir = tempDir();
    const { h, lines, published, transitions } = health(dir);
    const audit = h.writer("audit");
    const broker = h.writer("broker");
    audit.ok();
    expect(h.faulted).toBe(false);
    expect(published).toEqual([]);

    audit.failed(enospc(), join(dir, "audit.jsonl"));
    broker.failed(new Error("IO error: /data/mqtt/000005.log: No space left on device"), "broker persistence");
    audit.failed(enospc(), join(dir, "audit.jsonl")); // the same fault again: nothing new
    expect(h.state).toMatchObject({ state: "fault", code: "ENOSPC", path: join(dir, "audit.jsonl"), dataDir: dir });
    expect(h.state.hint).toMatch(/free space on the file system of/);
    expect(h.state.faults.map((f) => [f.writer, f.code])).toEqual([["audit", "ENOSPC"], ["broker", "ENOSPC"]]);
    expect(transitions.map((t) => t.state)).toEqual(["fault"]);
    expect(published.at(-1)!.faults).toHaveLength(2);
    expect(lines().filter((l) => l.level >= 50)).toHaveLength(1); // one error line per transition

    let refused: unknown;
    try {
      h.assertWritable();
    } catch (e) {
      refused = e;
    }
    expect(refused).toBeInstanceOf(StorageFaultError);
    expect(httpStatusForCode((refused as StorageFaultError).code)).toBe(409);
    expect((refused as Error).message).toMatch(/cannot write its data dir \(ENOSPC at .*audit\.jsonl\).*free space/);

    audit.ok();
    expect(h.faulted).toBe(true); // the broker has not written since
    broker.ok();
    expect(h.state).toMatchObject({ state: "ok", faults: [] });
    expect(transitions.map((t) => t.state)).toEqual(["fault", "ok"]);
    expect(published.at(-1)!.state).toBe("ok");
    expect(() => h.assertWritable()).not.toThrow();
    h.stop();
  });

  it("while faulted, retries run each failed writer's retry; a writer without one is cleared by a probe file", async () => {
    const dir = tempDir();
    const { h } = health(dir);
    let disk = "full";
    const automatic = h.writer("automatic", () => (disk === "full" ? automatic.failed(enospc(), "automatic.json") : automatic.ok()));
    const lastSwitch = h.writer("last-switch");
    automatic.failed(enospc(), "automatic.json");
    lastSwitch.failed(enospc(), "last-switch.json");
    await h.retryNow();
    expect(h.state.faults.map((f) => f.writer)).toEqual(["automatic"]); // the probe file could be written here
    disk = "free";
    await h.retryNow();
    expect(h.faulted).toBe(false);
    h.stop();
  });

  it("held rollouts are part of the state; the transition audit events say what failed and when", () => {
    const dir = tempDir();
    const { h, published } = health(dir);
    h.writer("rollouts").failed(new RolloutStoreError("cannot write rollout state", "/d/rollout/r1.json", { cause: Object.assign(new Error("read-only"), { code: "EROFS" }) }), "/d/rollout/r1.json");
    h.holdRollout("r1");
    expect(published.at(-1)).toMatchObject({ state: "fault", code: "EROFS", heldRollouts: ["r1"] });
    const fault = AuditEvent.parse(storageTransitionEvent(h.state));
    expect(fault).toMatchObject({ action: "storage.fault", actor: "hub", at: h.state.since, details: { code: "EROFS", writers: ["rollouts"] } });
    expect(fault.details?.hint).toMatch(/remount/);
    h.releaseRollout("r1");
    expect(published.at(-1)!.heldRollouts).toEqual([]);
    h.stop();
  });

  it("knows the codes of what the writers throw", () => {
    expect(storageErrorCode(Object.assign(new Error("x"), { code: "EROFS" }))).toBe("EROFS");
    expect(storageErrorCode(Object.assign(new Error("IO error: /x/000005.log: No space left on device"), { code: "LEVEL_IO_ERROR" }))).toBe("ENOSPC");
    expect(storageErrorCode(new RolloutStoreError("cannot write", "/p", { cause: Object.assign(new Error("no"), { code: "EDQUOT" }) }))).toBe("EDQUOT");
    expect(storageErrorCode(Object.assign(new Error("weird"), { code: "LEVEL_DATABASE_NOT_OPEN" }))).toBe("LEVEL_DATABASE_NOT_OPEN");
    expect(storageErrorCode("what")).toBe("unknown");
    expect(new Topics().parse(new Topics().hubStorage())).toEqual({ kind: "hubStorage" });
  });
});

describe("AuditLog while the data dir cannot be written", () => {
  const ev = (i: number, action = "command.sent"): AuditEvent => ({ id: `e-${i}`, at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(), actor: "admin", action, target: "web-1", details: {} });

  it("keeps events in memory, in order, and writes them once it can; reports each outcome", () => {
    const dir = tempDir();
    const reports: string[] = [];
    const log = new AuditLog({ dataDir: dir, log: pino({ level: "silent" }), storage: { ok: () => reports.push("ok"), failed: (e) => reports.push(storageErrorCode(e)) } });
    log.append(ev(1));
    // The file's place taken by a directory: every append fails (EISDIR), like a read-only or full disk.
    rmSync(log.file);
    mkdirSync(log.file);
    log.append(ev(2));
    log.append(ev(3));
    expect(log.pendingCount).toBe(2);
    expect(reports).toEqual(["ok", "EISDIR", "EISDIR"]);
    expect(log.recent(10).map((e) => e.id)).toEqual(["e-3", "e-2", "e-1"]); // the API still shows them
    expect(log.flushPending()).toBe(false);
    rmSync(log.file, { recursive: true });
    expect(log.flushPending()).toBe(true);
    expect(reports.at(-1)).toBe("ok");
    log.append(ev(4));
    expect(readFileSync(log.file, "utf8").trim().split("\n").map((l) => (JSON.parse(l) as AuditEvent).id)).toEqual(["e-2", "e-3", "e-4"]);
  });

  it("keeps at most pendingMax events and writes how many it dropped", () => {
    const dir = tempDir();
    const log = new AuditLog({ dataDir: dir, log: pino({ level: "silent" }), pendingMax: 3 });
    mkdirSync(log.file);
    for (let i = 1; i <= 5; i++) log.append(ev(i));
    expect(log.pendingCount).toBe(3);
    rmSync(log.file, { recursive: true });
    expect(log.flushPending()).toBe(true);
    const written = readFileSync(log.file, "utf8").trim().split("\n").map((l) => JSON.parse(l) as AuditEvent);
    expect(written.map((e) => e.action)).toEqual(["audit.dropped", "command.sent", "command.sent", "command.sent"]);
    expect(written[0]!.details).toMatchObject({ count: 2 });
    expect(written.slice(1).map((e) => e.id)).toEqual(["e-3", "e-4", "e-5"]);
  });
});
