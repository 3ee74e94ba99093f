import { describe, it, expect } from "vitest";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FleetRepo } from "../fleet/repo.js";
import { diffLocks, parseLockUpdateText, flattenLock, parseFlakeLock } from "../../protocol/index.js";

describe("test fleet repo (real git + real nix)", () => {
  it("makes a real lock-update commit whose lock diff and Nix text agree", () => {
    const root = mkdtempSync(join(tmpdir(), "lockstep-fleetrepo-"));
    const repo = FleetRepo.create({ root, hosts: ["alpha", "beta"], initialDate: new Date("2026-11-01T12:00:00Z") });
    const base = repo.head();
    const before = repo.show(base, "flake.lock");
    const flat = flattenLock(parseFlakeLock(before));
    expect([...flat.keys()].sort()).toEqual(["nixpkgs", "tools", "tools/nixpkgs"]);
    expect(flat.get("tools/nixpkgs")?.follows).toBe("nixpkgs");
    expect(flat.get("nixpkgs")?.date).toBe("2026-11-01");

    repo.bumpInput("nixpkgs", new Date("2026-11-08T12:00:00Z"));
    const upd = repo.lockUpdateBranch();
    expect(upd.sha).toMatch(/^[0-9a-f]{40}$/);
    const after = repo.show(upd.sha, "flake.lock");
    const diff = diffLocks(before, after);
    expect(diff.updated.map((c) => c.input)).toEqual(["nixpkgs", "tools/nixpkgs"]);
    expect(diff.updated[0]!.old!.date).toBe("2026-11-01");
    expect(diff.updated[0]!.new!.date).toBe("2026-11-08");

    const parsed = parseLockUpdateText(upd.prBody);
    expect(parsed?.updated.map((c) => c.input)).toContain("nixpkgs");
    const np = parsed!.updated.find((c) => c.input === "nixpkgs")!;
    expect(np.old?.rev).toBe(diff.updated[0]!.old!.rev);
    expect(np.new?.rev).toBe(diff.updated[0]!.new!.rev);
    expect(np.new?.date).toBe("2026-11-08");
  });
});
