/**
 * flake.nix's outputs, evaluated against a stand-in for nixpkgs (nix/tests/nixpkgs-stand-in.nix)
 * because nixpkgs cannot be fetched here: the output names users and `nix flake check` rely on,
 * the package definition, the overlay, and the modules' default package. And flake.lock: read
 * with Lockstep's own lock reader, and accepted by Nix as the lock of flake.nix (offline).
 */
import { describe, it, expect } from "vitest";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nixEnv } from "../fleet/nix-env.js";
import { parseFlakeLock, readLockInputs } from "../../protocol/flake-lock.js";

const ROOT = join(__dirname, "..", "..");
const PRELUDE = `let flake = import ./flake.nix; nixpkgs = import ./nix/tests/nixpkgs-stand-in.nix; self = flake.outputs { inherit self nixpkgs; }; in`;

function evalFlake<T>(body: string): T {
  const out = execFileSync("nix-instantiate", ["--eval", "--strict", "--json", "-E", `${PRELUDE} ${body}`], { cwd: ROOT, env: nixEnv(), encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  return JSON.parse(out) as T;
}

const SYSTEMS = ["aarch64-darwin", "aarch64-linux", "x86_64-darwin", "x86_64-linux"];
const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;

describe("flake.nix", () => {
  it("has nixpkgs as its only input and the documented outputs", () => {
    const r = evalFlake<Record<string, unknown>>(`{
      input = flake.inputs.nixpkgs.url;
      inputs = builtins.attrNames flake.inputs;
      packages = builtins.mapAttrs (s: p: builtins.attrNames p) self.packages;
      checks = builtins.mapAttrs (s: c: builtins.attrNames c) self.checks;
      nixos = builtins.attrNames self.nixosModules;
      darwin = builtins.attrNames self.darwinModules;
      home = builtins.attrNames self.homeModules;
      homeAlias = self.homeManagerModules == self.homeModules;
      overlay = builtins.isFunction self.overlays.default;
    }`);
    expect(r.input).toBe("github:NixOS/nixpkgs/nixos-unstable");
    expect(r.inputs).toEqual(["nixpkgs"]);
    expect(Object.keys(r.packages as object)).toEqual(SYSTEMS);
    for (const s of SYSTEMS) expect((r.packages as Record<string, string[]>)[s]).toEqual(["default", "lockstep"]);
    expect((r.checks as Record<string, string[]>)["x86_64-linux"]).toEqual(["lockstep", "nixos-modules"]);
    expect((r.checks as Record<string, string[]>)["aarch64-darwin"]).toEqual(["lockstep"]);
    expect(r.nixos).toEqual(["default", "lockstep-agent", "lockstep-hub"]);
    expect(r.darwin).toEqual(["default", "lockstep-agent"]);
    // Home Manager's convention is homeModules; the old name stays as an alias.
    expect(r.home).toEqual(["default", "lockstep-agent"]);
    expect(r.homeAlias).toBe(true);
    expect(r.overlay).toBe(true);
  });

  it("builds hub and agent from one npm package, with git and nix on the agent's PATH", () => {
    const pkg = evalFlake<Record<string, string>>(`{ inherit (self.packages.x86_64-linux.lockstep) pname version npmDepsHash npmBuildScript installPhase installCheckPhase; main = self.packages.x86_64-linux.lockstep.meta.mainProgram; default = self.packages.x86_64-linux.default.name; }`);
    expect(pkg).toMatchObject({ pname: "lockstep", version, npmBuildScript: "build", main: "lockstep-agent", default: `lockstep-${version}` });
    expect(pkg.npmDepsHash).toMatch(/^sha256-[A-Za-z0-9+/]{43}=$/);
    expect(pkg.installPhase).toContain("makeWrapper /nix/store/00000000000000000000000000000000-nodejs-22/bin/node $out/bin/lockstep \\\n");
    expect(pkg.installPhase).toContain("--add-flags $out/lib/lockstep/dist/agent/cli.js");
    expect(pkg.installPhase).toMatch(/--suffix PATH : \S*-git\/bin:\S*-nix\/bin:\S*-openssh\/bin/);
    expect(pkg.installCheckPhase).toContain(`grep -qx '${version}'`);
  });

  it("the overlay adds pkgs.lockstep, and the modules default to the flake's package", () => {
    const r = evalFlake<Record<string, unknown>>(`let pkgs = nixpkgs.legacyPackages.aarch64-linux; in {
      overlay = (self.overlays.default pkgs pkgs).lockstep.name;
      nixosDefault = (self.nixosModules.lockstep-agent { inherit pkgs; lib = nixpkgs.lib; }).config.services.lockstep-agent.package;
      hubDefault = (self.nixosModules.lockstep-hub { inherit pkgs; lib = nixpkgs.lib; }).config.services.lockstep-hub.package;
      imports = map toString (self.homeModules.lockstep-agent { inherit pkgs; lib = nixpkgs.lib; }).imports;
    }`);
    expect(r.overlay).toBe(`lockstep-${version}`);
    // A derivation serialises as its store path.
    const pkgPath = `/nix/store/00000000000000000000000000000000-lockstep-${version}`;
    expect(r.nixosDefault).toEqual({ _type: "override", priority: 1000, content: pkgPath });
    expect(r.hubDefault).toEqual({ _type: "override", priority: 1000, content: pkgPath });
    expect(r.imports).toEqual([join(ROOT, "nix/modules/home-manager-agent.nix")]);
  });

  it("builds from only what the build reads: no docs/, nix/, test/ or READMEs", () => {
    const src = evalFlake<{ files: Array<{ path: string; excludesMarkdown: boolean }> }>(`{ inherit (self.packages.x86_64-linux.lockstep.src) files; }`);
    const rel = src.files.map((f) => f.path.slice(ROOT.length + 1));
    expect(rel.sort()).toEqual(
      ["package.json", "package-lock.json", "tsconfig.json", "scripts/build-page.mjs", "scripts/copy-assets.mjs", "flows", "protocol", "broker", "agent", "github", "rollout", "hub", "ha", "dashboard", "node-red-nodes"].sort(),
    );
    // Every script `npm run build` runs is in, and every source directory tsconfig.json compiles
    // (the test/ ones are for the demo and benchmarks).
    const build = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: { build: string } }).scripts.build;
    const buildScripts = build.match(/scripts\/\S+/g) ?? [];
    expect(buildScripts.length).toBeGreaterThan(0);
    expect(buildScripts.filter((f) => !rel.includes(f))).toEqual([]);
    const tsconfig = JSON.parse(readFileSync(join(ROOT, "tsconfig.json"), "utf8")) as { include: string[] };
    expect(tsconfig.include.filter((d) => !d.startsWith("test/") && !rel.includes(d))).toEqual([]);
    expect(src.files.filter((f) => !f.path.endsWith(".json") && !f.path.endsWith(".mjs") && f.path !== join(ROOT, "flows")).every((f) => f.excludesMarkdown)).toBe(true);
  });

  it("evaluates every output but the NixOS check (which needs the real nixpkgs)", () => {
    const r = evalFlake<Record<string, unknown>>(`let
      pkgs = nixpkgs.legacyPackages.x86_64-linux;
      force = v: builtins.deepSeq v true;
      moduleArgs = { inherit pkgs; lib = nixpkgs.lib; };
    in {
      packages = force self.packages;
      devShells = force self.devShells;
      checks = builtins.mapAttrs (s: c: force (builtins.removeAttrs c [ "nixos-modules" ])) self.checks;
      overlay = force (self.overlays.default pkgs pkgs);
      modules = map (m: force (m moduleArgs)) (builtins.concatMap builtins.attrValues [ self.nixosModules self.darwinModules self.homeModules ]);
    }`);
    expect(r).toEqual({ packages: true, devShells: true, checks: Object.fromEntries(SYSTEMS.map((s) => [s, true])), overlay: true, modules: [true, true, true, true, true, true, true] });
  });
});

describe("flake.lock", () => {
  const lock = parseFlakeLock(readFileSync(join(ROOT, "flake.lock"), "utf8"));

  it("locks every input of flake.nix, and nothing else", () => {
    const declared = evalFlake<string[]>("builtins.attrNames flake.inputs");
    const locked = [...readLockInputs(lock).inputs.keys()];
    expect(locked).toEqual(declared);
  });

  it("pins nixpkgs to one nixos-unstable revision with the hash Nix checks it against", () => {
    const url = evalFlake<string>("flake.inputs.nixpkgs.url");
    const [owner, repo, ref] = url.replace(/^github:/, "").split("/");
    const node = lock.nodes[lock.nodes[lock.root]!.inputs!.nixpkgs as string]!;
    // `original` is what flake.nix asks for: Nix re-locks (downloads) when they differ.
    expect(node.original).toEqual({ type: "github", owner, repo, ref });
    expect(node.locked).toMatchObject({ type: "github", owner: "NixOS", repo: "nixpkgs" });
    const locked = node.locked as { rev: string; narHash: string; lastModified: number };
    expect(locked.rev).toMatch(/^[0-9a-f]{40}$/);
    expect(locked.narHash).toMatch(/^sha256-[A-Za-z0-9+/]{43}=$/);
    // A nixpkgs from after Node 20's end of life (2026-04-30), where nodejs_20 is insecure or gone:
    // the package and the dev shell build with Node 22 (the stand-in has no nodejs_20 at all).
    expect(locked.lastModified).toBeGreaterThan(Date.parse("2026-04-30T00:00:00Z") / 1000);
    expect(evalFlake<string>("self.packages.x86_64-linux.lockstep.nodejs.name")).toBe("nodejs-22");
    expect(evalFlake<string[]>("map (p: p.name) self.devShells.x86_64-linux.default.packages")).toContain("nodejs-22");
  });

  it("is the lock Nix itself takes for flake.nix: no input to add, drop or re-lock (offline)", () => {
    // Only flake.nix and flake.lock: locking reads nothing else, and the checkout is large.
    const dir = mkdtempSync(join(tmpdir(), "lockstep-flake-lock-"));
    try {
      for (const f of ["flake.nix", "flake.lock"]) copyFileSync(join(ROOT, f), join(dir, f));
      execFileSync("nix", ["--extra-experimental-features", "nix-command flakes", "flake", "lock", "--offline", "--no-update-lock-file", `path:${dir}`], { env: nixEnv(), encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
      // Nix rewrites a lock it changed; this one it left as it was.
      expect(readFileSync(join(dir, "flake.lock"), "utf8")).toBe(readFileSync(join(ROOT, "flake.lock"), "utf8"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
