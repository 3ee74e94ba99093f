/**
 * A lock file so two self-update runs never overlap (a timer run and a manual one, or a run that
 * outlives its timer period). Created with O_EXCL and the owner's pid; a lock whose pid is gone
 * (a crashed run, a reboot) is stale and taken over.
 */
import { openSync, writeSync, closeSync, readFileSync, unlinkSync, statSync } from "node:fs";
import { z } from "zod";
import { LockstepError } from "../../protocol/index.js";
import { statePaths } from "../config.js";
import { processAlive } from "../process.js";

export class SelfUpdateLockedError extends LockstepError {
  override name = "SelfUpdateLockedError";
  constructor(
    readonly lockPath: string,
    readonly ownerPid: number,
  ) {
    super(`another self-update run (pid ${ownerPid}) holds ${lockPath}`, "self-update-locked", "wait for it to finish; if no such process exists, delete the lock file");
  }
}

const LockContent = z.object({ pid: z.number().int().positive(), startedAt: z.string() });

export interface HeldLock {
  path: string;
  /** Whether a stale lock of a dead process was replaced. */
  tookOverStalePid?: number;
  release(): void;
}


function tryCreate(path: string): boolean {
  try {
    const fd = openSync(path, "wx", 0o644);
    try {
      writeSync(fd, JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString() }));
    } finally {
      closeSync(fd);
    }
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  }
}

/** The pid recorded in a lock file, or null if it is unreadable (half-written or corrupt). */
function readOwner(path: string): number | null {
  try {
    const r = LockContent.safeParse(JSON.parse(readFileSync(path, "utf8")));
    return r.success ? r.data.pid : null;
  } catch {
    return null;
  }
}

/**
 * An unreadable lock is one being written right now, or one a crash left empty (created, not yet
 * written, no fsync): after this long it is the latter, and stale.
 */
export const UNREADABLE_LOCK_STALE_MS = 60_000;

function inodeOf(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

function unreadableAndOld(path: string, now = Date.now()): boolean {
  try {
    return now - statSync(path).mtimeMs > UNREADABLE_LOCK_STALE_MS;
  } catch {
    return false;
  }
}

export function acquireSelfUpdateLock(path: string): HeldLock {
  let tookOverStalePid: number | undefined;
  if (!tryCreate(path)) {
    const stale = inodeOf(path);
    const owner = readOwner(path);
    // An unreadable lock may be one being written right now: treat it as held, unless it is old.
    if (owner === null && !unreadableAndOld(path)) throw new SelfUpdateLockedError(path, 0);
    if (owner !== null && processAlive(owner)) throw new SelfUpdateLockedError(path, owner);
    // Two runs may both find it stale: only remove the very file judged, not one the other just made.
    if (stale === undefined || inodeOf(path) !== stale) throw new SelfUpdateLockedError(path, readOwner(path) ?? 0);
    try {
      unlinkSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    if (owner !== null) tookOverStalePid = owner;
    // If another run took it over between our unlink and create, it wins.
    if (!tryCreate(path)) throw new SelfUpdateLockedError(path, readOwner(path) ?? 0);
  }
  let released = false;
  return {
    path,
    tookOverStalePid,
    release() {
      if (released) return;
      released = true;
      if (readOwner(path) === process.pid) unlinkSync(path);
    },
  };
}

/**
 * The pid of a self-update run holding the lock, if one runs now: the agent daemon refuses jobs that
 * would touch the checkout or the system meanwhile (the mirror of agentJobInProgress below). A
 * stale lock (dead pid) is no run; an unreadable one may be being written, so it counts as running
 * for UNREADABLE_LOCK_STALE_MS (after that a crash left it empty).
 */
export function selfUpdateInProgress(path: string): { pid: number } | null {
  try {
    statSync(path);
  } catch {
    return null;
  }
  const owner = readOwner(path);
  if (owner === null) return unreadableAndOld(path) ? null : { pid: 0 };
  return processAlive(owner) ? { pid: owner } : null;
}

/** What the agent daemon records while it runs a job (agent/state.ts InflightStore); only these fields are read. */
const InflightJob = z.object({ id: z.string(), op: z.string() });

/** An in-flight record older than this is left over from an agent that is gone, not a running job. */
export const INFLIGHT_STALE_MS = 24 * 3600_000;

/**
 * The job the agent daemon is running in the same state dir, if any: a self-update must not
 * switch while a hub-driven switch or rollback is under way.
 */
export function agentJobInProgress(stateDir: string, now = Date.now()): { id: string; op: string; path: string } | null {
  const path = statePaths(stateDir).inflight;
  try {
    if (now - statSync(path).mtimeMs > INFLIGHT_STALE_MS) return null;
    const r = InflightJob.safeParse(JSON.parse(readFileSync(path, "utf8")));
    return r.success ? { ...r.data, path } : { id: "unknown", op: "unknown", path };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    // Present but unreadable: the agent is probably writing it; treat it as busy.
    return { id: "unknown", op: "unknown", path };
  }
}
