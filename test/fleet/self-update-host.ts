/**
 * One host for the standalone self-update's tests: the test fleet's flake repository, a clone of it
 * as the host's checkout, generation 1 of a real Nix profile built from it (nix build + nix-env
 * --set, the generic profile), and a /proc/uptime stand-in a day up.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FleetRepo, type HostModule } from "./repo.js";
import { nixEnv, nixSystem } from "./nix-env.js";

export interface SelfUpdateHost {
  dir: string;
  repo: FleetRepo;
  checkout: string;
  /** The host's system profile (generation 1 after setup). */
  profile: string;
  uptimeFile: string;
  /** A self-update config for it: generic profile, state in <dir>/state, disk and uptime checks that pass. */
  baseConfig: { host: string; stateDir: string; checkoutDir: string; profile: "generic"; systemProfile: string; health: { disk: { path: string; maxUsedPercent: number }; uptime: { uptimeFile: string; minSeconds: number } } };
}

/** `module`: the host's configuration before the clone (e.g. a kernel, for reboots). */
export function selfUpdateHost(prefix: string, host: string, module?: HostModule): SelfUpdateHost {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const repo = FleetRepo.create({ root: join(dir, "fleet"), hosts: [host] });
  if (module) repo.setHostModule(host, module);
  const checkout = join(dir, "checkout");
  execFileSync("git", ["clone", "-q", repo.originUrl, checkout], { env: nixEnv() });
  mkdirSync(join(dir, "profiles"));
  const profile = join(dir, "profiles", "system");
  const first = join(dir, "first-system");
  execFileSync("nix", ["build", `${checkout}#lockstepSystems.${nixSystem()}.${host}`, "-o", first], { env: nixEnv() });
  execFileSync("nix-env", ["--profile", profile, "--set", first], { env: nixEnv(), stdio: "ignore" });
  const uptimeFile = join(dir, "uptime");
  writeFileSync(uptimeFile, "86400.00 1000.00\n");
  const baseConfig = {
    host,
    stateDir: join(dir, "state"),
    checkoutDir: checkout,
    profile: "generic" as const,
    systemProfile: profile,
    health: { disk: { path: dir, maxUsedPercent: 100 }, uptime: { uptimeFile, minSeconds: 600 } },
  };
  return { dir, repo, checkout, profile, uptimeFile, baseConfig };
}
