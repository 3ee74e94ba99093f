/**
 * The test fleet's Nix takes its whole configuration from the project: it builds on a machine with
 * no `nixbld` group and a hostile `/etc/nix/nix.conf` and `~/.config/nix/nix.conf` (flakes off, build
 * users on, sandbox on). The machine is changed for this test only inside a private mount namespace
 * (`unshare -m`), where a copy of `/etc` is mounted over the real one.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FleetRepo } from "../fleet/repo.js";
import { nixEnv, nixSystem } from "../fleet/nix-env.js";

const HOSTILE = ["build-users-group = nixbld", "experimental-features =", "sandbox = true", ""].join("\n");

let dir: string;
let fakeEtc: string;
let repo: FleetRepo;

/** Run argv with `fakeEtc` mounted over /etc, in a mount namespace of its own. */
function withFakeEtc(argv: string[], env: NodeJS.ProcessEnv) {
  const script = 'mount --bind "$0" /etc && exec "$@"';
  return spawnSync("unshare", ["-m", "--propagation", "private", "sh", "-c", script, fakeEtc, ...argv], { env, encoding: "utf8", timeout: 120_000 });
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "lockstep-nix-isolation-"));
  repo = FleetRepo.create({ root: join(dir, "fleet"), hosts: ["alpha"] });
  fakeEtc = join(dir, "etc");
  cpSync("/etc", fakeEtc, { recursive: true, verbatimSymlinks: true, errorOnExist: false, force: true });
  // No nixbld group, whatever this machine has.
  const groups = readFileSync("/etc/group", "utf8").split("\n").filter((l) => !l.startsWith("nixbld:"));
  writeFileSync(join(fakeEtc, "group"), groups.join("\n"));
  mkdirSync(join(fakeEtc, "nix"), { recursive: true });
  writeFileSync(join(fakeEtc, "nix", "nix.conf"), HOSTILE);
  mkdirSync(join(dir, "home", ".config", "nix"), { recursive: true });
  writeFileSync(join(dir, "home", ".config", "nix", "nix.conf"), HOSTILE);
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("the test fleet's Nix configuration", () => {
  const attr = () => `${repo.seed}#lockstepSystems.${nixSystem()}.alpha`;
  const home = () => ({ HOME: join(dir, "home"), XDG_CONFIG_HOME: join(dir, "home", ".config") });

  it("the namespace really hides the nixbld group and shows the hostile nix.conf", () => {
    const r = withFakeEtc(["sh", "-c", "cat /etc/nix/nix.conf; getent group nixbld || echo no-nixbld"], process.env);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("build-users-group = nixbld");
    expect(r.stdout).toContain("no-nixbld");
  });

  it("without the project's configuration, that machine cannot build (the check can fail)", () => {
    const { NIX_CONF_DIR: _d, NIX_USER_CONF_FILES: _u, NIX_CONFIG: _c, ...bare } = process.env;
    const r = withFakeEtc(["nix", "build", "--no-link", attr()], { ...bare, ...home() });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/nixbld|experimental|flake/);
  });

  it("with it, the same machine builds the host and shows only the project's settings", () => {
    const env = nixEnv(home());
    const out = join(dir, "result");
    const r = withFakeEtc(["nix", "build", attr(), "-o", out], env);
    expect(r.stderr).not.toMatch(/error/);
    expect(r.status).toBe(0);
    expect(readFileSync(join(out), "utf8")).toMatch(/^alpha /);
    const shown = withFakeEtc(["nix", "show-config"], env);
    expect(shown.status).toBe(0);
    expect(shown.stdout).toMatch(/^build-users-group = *$/m);
    expect(shown.stdout).toMatch(/^sandbox = false$/m);
    expect(shown.stdout).toMatch(/^substituters = *$/m);
    // The same profile operations an agent does (a real generation).
    const profile = join(dir, "profiles", "system");
    mkdirSync(join(dir, "profiles"), { recursive: true });
    const set = withFakeEtc(["nix-env", "--profile", profile, "--set", out], env);
    expect(set.status).toBe(0);
    expect(execFileSync("readlink", [profile], { encoding: "utf8" }).trim()).toBe("system-1-link");
  });
});
