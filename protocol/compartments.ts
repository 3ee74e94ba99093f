/**
 * The compartment rules from DESIGN.md as pure functions: facts in, Compartment out.
 * The agent calls these with what it measured; the page and Home Assistant only display results.
 */
import type { Compartment, LockDiff, PendingUpdate, Status } from "./schemas.js";
import { formatLockDiff } from "./lock-diff.js";

export const LOCK_AGE_OK_DAYS = 7;
export const LOCK_AGE_OUTDATED_DAYS = 30;
const DAY_MS = 86_400_000;

function make(status: Status, summary: string, now: Date, detail?: Record<string, unknown>, generation?: number): Compartment {
  const c: Compartment = { status, summary, checkedAt: now.toISOString() };
  if (detail && Object.keys(detail).length > 0) c.detail = detail;
  if (generation !== undefined) c.generation = generation;
  return c;
}

const short = (sha?: string) => (sha ? sha.slice(0, 8) : "?");

export interface AgentFacts {
  version: string;
  expectedVersion?: string;
  /** The agent binary on disk differs from the running one (e.g. launchd kept the old agent). */
  onDiskVersion?: string;
}

export function agentCompartment(f: AgentFacts, now = new Date()): Compartment {
  const detail: Record<string, unknown> = { version: f.version };
  if (f.expectedVersion) detail.expectedVersion = f.expectedVersion;
  if (f.onDiskVersion && f.onDiskVersion !== f.version) {
    detail.onDiskVersion = f.onDiskVersion;
    return make("failed", `running ${f.version} but ${f.onDiskVersion} is installed: restart the agent`, now, { ...detail, restartSuggested: true });
  }
  if (!f.expectedVersion) return make("ok", `agent ${f.version}`, now, detail);
  if (f.expectedVersion !== f.version) {
    return make("failed", `agent ${f.version}, fleet expects ${f.expectedVersion}`, now, detail);
  }
  return make("ok", `agent ${f.version}`, now, detail);
}

export interface GitFacts {
  head?: string;
  branch: string;
  expectedHead?: string;
  /** Is the expected head an ancestor of our HEAD (we are ahead or equal) / are we an ancestor of it (behind)? */
  relation?: "equal" | "behind" | "ahead" | "diverged" | "unknown";
  behindBy?: number;
  dirty?: boolean;
  error?: string;
  working?: boolean;
}

export function gitCompartment(f: GitFacts, now = new Date()): Compartment {
  const detail: Record<string, unknown> = { branch: f.branch };
  if (f.head) detail.head = f.head;
  if (f.expectedHead) detail.expectedHead = f.expectedHead;
  if (f.behindBy !== undefined) detail.behindBy = f.behindBy;
  if (f.dirty) detail.dirty = true;
  if (f.working) return make("working", "updating checkout…", now, detail);
  if (f.error) return make("failed", f.error, now, { ...detail, error: f.error });
  if (!f.head) return make("unknown", "no checkout yet", now, detail);
  if (!f.expectedHead) return make("unknown", `at ${short(f.head)}; fleet head not known yet`, now, detail);
  const rel = f.relation ?? (f.head === f.expectedHead ? "equal" : "unknown");
  if (rel === "equal" || f.head === f.expectedHead) {
    return make(f.dirty ? "outdated" : "ok", f.dirty ? `at head ${short(f.head)} with local changes` : `at head ${short(f.head)}`, now, detail);
  }
  if (rel === "behind") {
    const n = f.behindBy !== undefined ? `${f.behindBy} commit${f.behindBy === 1 ? "" : "s"} ` : "";
    return make("outdated", `${n}behind head ${short(f.expectedHead)}`, now, detail);
  }
  if (rel === "ahead") return make("outdated", `ahead of head ${short(f.expectedHead)} (local commits)`, now, detail);
  if (rel === "diverged") return make("failed", `diverged from head ${short(f.expectedHead)}`, now, detail);
  return make("outdated", `at ${short(f.head)}, head is ${short(f.expectedHead)}`, now, detail);
}

export interface LockFacts {
  /** sha256 of the checked-out flake.lock (hex), undefined when there is no lock file. */
  lockHash?: string;
  expectedLockHash?: string;
  /** Newest `lastModified` (unix seconds) among the lock's inputs: what "lock age" means. */
  lastModified?: number;
  pendingUpdate?: PendingUpdate | null;
  error?: string;
}

export function lockAgeDays(lastModified: number, now: Date): number {
  return Math.floor((now.getTime() - lastModified * 1000) / DAY_MS);
}

export function lockCompartment(f: LockFacts, now = new Date()): Compartment {
  const detail: Record<string, unknown> = {};
  if (f.lockHash) detail.lockHash = f.lockHash;
  if (f.expectedLockHash) detail.expectedLockHash = f.expectedLockHash;
  let age: number | undefined;
  if (f.lastModified !== undefined) {
    age = lockAgeDays(f.lastModified, now);
    detail.lastModified = f.lastModified;
    detail.ageDays = age;
  }
  if (f.error) return make("failed", f.error, now, { ...detail, error: f.error });
  if (!f.lockHash) return make("unknown", "no flake.lock", now, detail);

  if (f.expectedLockHash) {
    if (f.lockHash !== f.expectedLockHash) {
      return make("outdated", "flake.lock differs from the fleet head", now, detail);
    }
    if (f.pendingUpdate) {
      const p = f.pendingUpdate;
      detail.pendingUpdate = { number: p.number, url: p.url, ci: p.ci.state, lockDiff: p.lockDiff };
      return make("outdated", `update PR #${p.number} pending: ${formatLockDiff(p.lockDiff, { max: 3 })}`, now, detail);
    }
    return make("ok", age !== undefined ? `matches head (inputs ${age} d old)` : "matches head", now, detail);
  }
  // No hub data: judge by age alone.
  if (age === undefined) return make("unknown", "lock age unknown", now, detail);
  if (age <= LOCK_AGE_OK_DAYS) return make("ok", `inputs ${age} d old`, now, detail);
  if (age <= LOCK_AGE_OUTDATED_DAYS) return make("outdated", `inputs ${age} d old`, now, detail);
  return make("outdated", `inputs ${age} d old: needs update`, now, { ...detail, needsUpdate: true });
}

export interface SystemFacts {
  currentSystemPath?: string;
  /** What the checked-out configuration evaluates/builds to, when known. */
  expectedSystemPath?: string;
  generation?: number;
  lastSwitch?: { ok: boolean; error?: string; commit?: string; at?: string };
  /** Has the checkout moved since the last successful switch? (pull without switch) */
  checkoutChangedSinceSwitch?: boolean;
  git: Compartment;
  lock: Compartment;
  working?: boolean;
}

export function systemCompartment(f: SystemFacts, now = new Date()): Compartment {
  const detail: Record<string, unknown> = {};
  if (f.currentSystemPath) detail.currentSystemPath = f.currentSystemPath;
  if (f.expectedSystemPath) detail.expectedSystemPath = f.expectedSystemPath;
  if (f.lastSwitch) detail.lastSwitch = f.lastSwitch;
  const gen = f.generation;
  if (f.working) return make("working", "switching…", now, detail, gen);
  if (f.lastSwitch && !f.lastSwitch.ok) {
    return make("failed", `switch failed: ${f.lastSwitch.error ?? "unknown error"}`, now, detail, gen);
  }
  if (!f.currentSystemPath) return make("unknown", "no system generation yet", now, detail, gen);
  if (f.expectedSystemPath && f.expectedSystemPath !== f.currentSystemPath) {
    return make("outdated", "running system differs from the checked-out configuration", now, detail, gen);
  }
  if (f.checkoutChangedSinceSwitch) {
    return make("outdated", "checkout changed since the last switch", now, detail, gen);
  }
  // "System only green when Git and Lock are green": a perfect switch of an old commit is still old.
  if (f.git.status !== "ok" || f.lock.status !== "ok") {
    const why = f.git.status !== "ok" ? "git" : "lock";
    return make("outdated", `generation ${gen ?? "?"} built from a checkout that is not current (${why})`, now, detail, gen);
  }
  return make("ok", `generation ${gen ?? "?"} is current`, now, detail, gen);
}

export interface TestFacts {
  generation?: number;
  lastRun?: { generation?: number; passed: boolean; failed: string[]; total: number; at: string; output?: string };
  working?: boolean;
}

export function testsCompartment(f: TestFacts, now = new Date()): Compartment {
  const gen = f.generation;
  if (f.working) return make("working", "running tests…", now, undefined, gen);
  const r = f.lastRun;
  if (!r) return make("unknown", "no test run yet", now, undefined, gen);
  const detail: Record<string, unknown> = { total: r.total, failed: r.failed, ranAt: r.at, testedGeneration: r.generation };
  if (r.output) detail.output = r.output.slice(-2000);
  if (gen !== undefined && r.generation !== gen) {
    return make("outdated", `last tests ran on generation ${r.generation ?? "?"}, now on ${gen}`, now, detail, gen);
  }
  if (!r.passed) return make("failed", `${r.failed.length}/${r.total} failed: ${r.failed.join(", ")}`, now, detail, gen);
  return make("ok", `${r.total}/${r.total} passed`, now, detail, gen);
}

export { worstStatus } from "./enums.js";

export type { LockDiff };
