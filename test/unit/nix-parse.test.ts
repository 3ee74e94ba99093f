/** Every .nix file in the repository parses (nix-instantiate --parse), including other people's. */
import { describe, it, expect } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { nixEnv } from "../fleet/nix-env.js";

const ROOT = join(__dirname, "..", "..");
const SKIP = new Set(["node_modules", "dist", ".git", ".lockstep-data", "test-results"]);

function nixFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (SKIP.has(e.name)) return [];
    const p = join(dir, e.name);
    if (e.isDirectory()) return nixFiles(p);
    return e.isFile() && e.name.endsWith(".nix") ? [p] : [];
  });
}

describe("nix files", () => {
  const files = nixFiles(ROOT);

  it("include the flake, the package, the overlay and every module", () => {
    const rel = files.map((f) => relative(ROOT, f));
    for (const expected of ["flake.nix", "nix/package.nix", "nix/overlay.nix", "nix/lib.nix", "nix/modules/nixos-agent.nix", "nix/modules/nixos-hub.nix", "nix/modules/darwin-agent.nix", "nix/modules/home-manager-agent.nix"]) {
      expect(rel).toContain(expected);
    }
  });

  it("all parse", () => {
    const failures = files
      .map((f) => ({ file: relative(ROOT, f), r: spawnSync("nix-instantiate", ["--parse", f], { env: nixEnv(), encoding: "utf8" }) }))
      .filter(({ r }) => r.status !== 0)
      .map(({ file, r }) => `${file}: ${r.stderr.trim()}`);
    expect(failures).toEqual([]);
  });

  it("a syntax error is caught (the check can fail)", () => {
    const r = spawnSync("nix-instantiate", ["--parse", "-E", "{ a = ; }"], { env: nixEnv(), encoding: "utf8" });
    expect(r.status).not.toBe(0);
    expect(execFileSync("nix-instantiate", ["--parse", "-E", "{ a = 1; }"], { env: nixEnv(), encoding: "utf8" })).toContain("a = 1");
  });
});
