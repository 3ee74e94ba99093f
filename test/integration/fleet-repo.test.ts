import { describe, it, expect } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FleetRepo } from "../fleet/repo.js";
import { nixEnv, nixSystem } from "../fleet/nix-env.js";
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
    expect(diff.updated.map((c) => c.input)).toEqual(["nixpkgs"]);
    expect(diff.updated[0]!.followers).toEqual(["tools/nixpkgs"]); // follows nixpkgs: grouped under it
    expect(diff.updated[0]!.old!.date).toBe("2026-11-01");
    expect(diff.updated[0]!.new!.date).toBe("2026-11-08");

    const parsed = parseLockUpdateText(upd.prBody);
    expect(parsed?.updated.map((c) => c.input)).toContain("nixpkgs");
    const np = parsed!.updated.find((c) => c.input === "nixpkgs")!;
    expect(np.old?.rev).toBe(diff.updated[0]!.old!.rev);
    expect(np.new?.rev).toBe(diff.updated[0]!.new!.rev);
    expect(np.new?.date).toBe("2026-11-08");
  });

  it("versioned hosts: one lock update bumps a package on alpha, changes nothing on beta, breaks gamma and changes alpha's kernel", () => {
    const root = mkdtempSync(join(tmpdir(), "lockstep-fleetrepo-"));
    const repo = FleetRepo.create({ root, hosts: ["alpha", "beta", "gamma", "delta"] });
    repo.setHostModule("alpha", { packages: ["hello", "coreutils"], kernel: true });
    repo.setHostModule("beta", { packages: ["coreutils"] });
    repo.setHostModule("gamma", { packages: ["openssl"] });
    const clone = join(root, "clone");
    execFileSync("git", ["clone", "-q", repo.origin, clone]);
    /** Build a host's system at a revision (in its own worktree); the out path or the error. */
    const build = (rev: string, host: string): { out?: string; error?: string } => {
      execFileSync("git", ["fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*"], { cwd: clone });
      const wt = join(root, `wt-${rev}`);
      if (spawnSync("git", ["rev-parse", "--verify", "-q", "HEAD"], { cwd: wt }).status !== 0) execFileSync("git", ["worktree", "add", "-q", "--detach", wt, rev], { cwd: clone });
      const r = spawnSync("nix", ["build", "--no-link", "--json", `${wt}#lockstepSystems.${nixSystem()}.${host}`], { env: nixEnv(), encoding: "utf8" });
      return r.status === 0 ? { out: JSON.parse(r.stdout)[0].outputs.out } : { error: r.stderr };
    };
    const hosts = ["alpha", "beta", "gamma", "delta"];
    const base = repo.head();
    const before = Object.fromEntries(hosts.map((h) => [h, build(base, h)]));
    for (const h of hosts) expect(before[h]!.out, h).toBeDefined();

    repo.bumpPackages("nixpkgs", { hello: { version: "2.13", size: 60_000 }, openssl: { version: "3.0.16", broken: true }, linux: { version: "6.6.60" } });
    const upd = repo.lockUpdateBranch();
    const after = Object.fromEntries(hosts.map((h) => [h, build(upd.sha, h)]));

    // (a) + (d): alpha's hello and kernel change, and Nix says so package by package.
    expect(after.alpha!.out).not.toBe(before.alpha!.out);
    const diff = execFileSync("nix", ["store", "diff-closures", before.alpha!.out!, after.alpha!.out!], { env: nixEnv(), encoding: "utf8" });
    expect(diff).toMatch(/^hello: 2\.12 → 2\.13, .*\+5\d\.\d KiB/m);
    expect(diff).toMatch(/^linux: 6\.6\.58 → 6\.6\.60$/m);
    expect(readlinkSync(join(after.alpha!.out!, "kernel"))).toMatch(/-linux-6\.6\.60\/bzImage$/);
    // (b): beta uses nothing the update touched: the very same system.
    expect(after.beta!.out).toBe(before.beta!.out);
    // (c): gamma's openssl no longer builds.
    expect(after.gamma!.error).toContain("openssl-3.0.16 does not build");
    // Unversioned hosts keep the old behaviour: any input bump changes their system.
    expect(after.delta!.out).not.toBe(before.delta!.out);
  }, 120_000);
});
