import { describe, it, expect } from "vitest";
import { agentCompartment, gitCompartment, lockCompartment, systemCompartment, testsCompartment, worstStatus, type PendingUpdate } from "../../protocol/index.js";

const now = new Date("2026-11-21T12:00:00Z");
const day = 86_400;
const nowS = Math.floor(now.getTime() / 1000);
const A = "a".repeat(40), B = "b".repeat(40);

describe("compartment rules", () => {
  it("Agent: differs from expected -> failed; old binary still running -> failed with restart hint", () => {
    expect(agentCompartment({ version: "1.0.0", expectedVersion: "1.0.0" }, now).status).toBe("ok");
    expect(agentCompartment({ version: "1.0.0", expectedVersion: "1.1.0" }, now).status).toBe("failed");
    const stale = agentCompartment({ version: "1.0.0", onDiskVersion: "1.1.0" }, now);
    expect(stale.status).toBe("failed");
    expect(stale.summary).toMatch(/restart/);
    expect(agentCompartment({ version: "1.0.0" }, now).status).toBe("ok");
  });

  it("Git: at head ok, behind outdated, diverged failed, unknown without head", () => {
    expect(gitCompartment({ head: A, expectedHead: A, branch: "main" }, now).status).toBe("ok");
    const behind = gitCompartment({ head: A, expectedHead: B, branch: "main", relation: "behind", behindBy: 2 }, now);
    expect(behind.status).toBe("outdated");
    expect(behind.summary).toMatch(/2 commits behind/);
    expect(gitCompartment({ head: A, expectedHead: B, branch: "main", relation: "diverged" }, now).status).toBe("failed");
    expect(gitCompartment({ head: A, branch: "main" }, now).status).toBe("unknown");
    expect(gitCompartment({ branch: "main", working: true }, now).status).toBe("working");
  });

  it("Lock: age fallback 7/30 days without hub data", () => {
    expect(lockCompartment({ lockHash: "h", lastModified: nowS - 7 * day }, now).status).toBe("ok");
    const mid = lockCompartment({ lockHash: "h", lastModified: nowS - 8 * day }, now);
    expect(mid.status).toBe("outdated");
    expect(mid.summary).not.toMatch(/needs update/);
    expect(lockCompartment({ lockHash: "h", lastModified: nowS - 30 * day }, now).summary).not.toMatch(/needs update/);
    const old = lockCompartment({ lockHash: "h", lastModified: nowS - 31 * day }, now);
    expect(old.status).toBe("outdated");
    expect(old.summary).toMatch(/needs update/);
  });

  it("Lock: compares with the fleet head and shows a pending update PR with its diff", () => {
    expect(lockCompartment({ lockHash: "h", expectedLockHash: "x" }, now).status).toBe("outdated");
    expect(lockCompartment({ lockHash: "h", expectedLockHash: "h", lastModified: nowS - 90 * day }, now).status).toBe("ok");
    const pending: PendingUpdate = {
      number: 7, title: "flake.lock: Update", url: "http://gh/pr/7", headSha: B, headBranch: "update_flake_lock_action",
      openedAt: now.toISOString(), ci: { state: "pending" }, superseded: [],
      lockDiff: { added: [], removed: [], updated: [{ input: "nixpkgs", old: { type: "github", date: "2025-12-10", rev: A }, new: { type: "github", date: "2025-12-17", rev: B } }] },
    };
    const c = lockCompartment({ lockHash: "h", expectedLockHash: "h", pendingUpdate: pending }, now);
    expect(c.status).toBe("outdated");
    expect(c.summary).toBe("update PR #7 pending: nixpkgs 2025-12-10 → 2025-12-17");
    expect((c.detail?.pendingUpdate as { number: number }).number).toBe(7);
  });

  it("System: green only when Git and Lock are green; failed switch red; working blue", () => {
    const ok = gitCompartment({ head: A, expectedHead: A, branch: "main" }, now);
    const lockOk = lockCompartment({ lockHash: "h", expectedLockHash: "h" }, now);
    const lockOld = lockCompartment({ lockHash: "h", expectedLockHash: "x" }, now);
    expect(systemCompartment({ currentSystemPath: "/nix/store/x", generation: 3, git: ok, lock: lockOk }, now).status).toBe("ok");
    expect(systemCompartment({ currentSystemPath: "/nix/store/x", generation: 3, git: ok, lock: lockOld }, now).status).toBe("outdated");
    expect(systemCompartment({ currentSystemPath: "/nix/store/x", checkoutChangedSinceSwitch: true, git: ok, lock: lockOk }, now).status).toBe("outdated");
    const failed = systemCompartment({ currentSystemPath: "/nix/store/x", lastSwitch: { ok: false, error: "builder failed" }, git: ok, lock: lockOk }, now);
    expect(failed.status).toBe("failed");
    expect(failed.summary).toMatch(/builder failed/);
    expect(systemCompartment({ working: true, git: ok, lock: lockOk }, now).status).toBe("working");
    expect(systemCompartment({ currentSystemPath: "/nix/store/x", expectedSystemPath: "/nix/store/y", git: ok, lock: lockOk }, now).status).toBe("outdated");
  });

  it("Tests: outdated after a switch, failed names the failing checks", () => {
    const at = now.toISOString();
    expect(testsCompartment({ generation: 4, lastRun: { generation: 3, passed: true, failed: [], total: 2, at } }, now).status).toBe("outdated");
    const f = testsCompartment({ generation: 4, lastRun: { generation: 4, passed: false, failed: ["10-health.sh"], total: 2, at } }, now);
    expect(f.status).toBe("failed");
    expect(f.summary).toMatch(/10-health.sh/);
    expect(testsCompartment({ generation: 4, lastRun: { generation: 4, passed: true, failed: [], total: 2, at } }, now).status).toBe("ok");
    expect(testsCompartment({ generation: 4 }, now).status).toBe("unknown");
  });

  it("worstStatus orders failed > working > outdated > unknown > ok", () => {
    expect(worstStatus(["ok", "outdated", "unknown"])).toBe("outdated");
    expect(worstStatus(["ok", "working", "failed"])).toBe("failed");
    expect(worstStatus([])).toBe("ok");
  });
});
