import { mkdtempSync, rmSync, utimesSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SelfUpdateLockedError, UNREADABLE_LOCK_STALE_MS, acquireSelfUpdateLock, selfUpdateInProgress } from "../../agent/self-update/lock.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-su-lock-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the self-update lock", () => {
  it("is held while its pid lives; a dead pid's lock is stale and taken over", () => {
    const path = join(dir, "live.lock");
    const held = acquireSelfUpdateLock(path);
    expect(selfUpdateInProgress(path)).toEqual({ pid: process.pid });
    expect(() => acquireSelfUpdateLock(path)).toThrow(SelfUpdateLockedError);
    held.release();
    expect(selfUpdateInProgress(path)).toBeNull();
    // A pid far above pid_max: no such process.
    writeFileSync(path, JSON.stringify({ pid: 2 ** 30, startedAt: new Date().toISOString() }));
    expect(selfUpdateInProgress(path)).toBeNull();
    const taken = acquireSelfUpdateLock(path);
    expect(taken.tookOverStalePid).toBe(2 ** 30);
    taken.release();
  });

  it("an unreadable lock counts as held while it may still be written, and is stale once old (a crash left it empty)", () => {
    const path = join(dir, "empty.lock");
    writeFileSync(path, "");
    expect(selfUpdateInProgress(path)).toEqual({ pid: 0 });
    expect(() => acquireSelfUpdateLock(path)).toThrow(SelfUpdateLockedError);
    const old = new Date(Date.now() - UNREADABLE_LOCK_STALE_MS - 5_000);
    utimesSync(path, old, old);
    expect(selfUpdateInProgress(path)).toBeNull();
    const taken = acquireSelfUpdateLock(path);
    expect(taken.tookOverStalePid).toBeUndefined();
    expect(selfUpdateInProgress(path)).toEqual({ pid: process.pid });
    taken.release();
    expect(existsSync(path)).toBe(false);
  });
});
