/**
 * A lock update to preview, on real git and Nix: versioned hosts alpha (hello + a kernel + a
 * switch-to-configuration), beta (nothing the update touches) and gamma (openssl, which the update
 * breaks); a host checkout cloned like an agent's; the systems each host runs now; the update
 * pushed and published as GitHub does (refs/pull/<pr>/head). Used by the preview tests and bench.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { FleetRepo } from "./repo.js";
import { nixEnv, nixSystem } from "./nix-env.js";

export const PREVIEW_HOSTS = ["alpha", "beta", "gamma"] as const;

export interface PreviewFixture {
  repo: FleetRepo;
  /** A host's live checkout of the fleet repo (branch main). */
  checkout: string;
  /** A Nix profile whose current generation is alpha's running system. */
  profile: string;
  /** The store path each host runs now. */
  current: Record<string, string>;
  /** The lock update's head commit, also at refs/pull/<pr>/head at origin. */
  update: string;
  pr: number;
}

export const systemAttr = (host: string) => `lockstepSystems.${nixSystem()}.${host}`;

export function git(args: string[], cwd: string): string {
  return execFileSync("git", args, { cwd, env: nixEnv(), encoding: "utf8" }).trim();
}

export function createPreviewFixture(root: string, pr = 7): PreviewFixture {
  const repo = FleetRepo.create({ root, hosts: [...PREVIEW_HOSTS] });
  // The Nix store is shared by every run: a message unique to this root makes alpha's system new.
  repo.setHostModule("alpha", { packages: ["hello", "coreutils"], kernel: true, switchScript: true, message: root });
  repo.setHostModule("beta", { packages: ["coreutils"] });
  repo.setHostModule("gamma", { packages: ["openssl"] });
  const checkout = join(root, "checkout");
  git(["clone", "-q", "--branch", "main", repo.originUrl, checkout], root);
  const current: Record<string, string> = {};
  for (const h of PREVIEW_HOSTS) {
    const out = execFileSync("nix", ["build", "--no-link", "--json", `${checkout}#${systemAttr(h)}`], { env: nixEnv(), encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    current[h] = (JSON.parse(out) as Array<{ outputs: { out: string } }>)[0]!.outputs.out;
  }
  mkdirSync(join(root, "profiles"), { recursive: true });
  const profile = join(root, "profiles", "system");
  execFileSync("nix-env", ["--profile", profile, "--set", current.alpha!], { env: nixEnv(), stdio: "ignore" });
  repo.bumpPackages("nixpkgs", { hello: { version: "2.13", size: 60_000 }, openssl: { version: "3.0.16", broken: true }, linux: { version: "6.6.60" } });
  const update = repo.lockUpdateBranch().sha;
  git(["update-ref", `refs/pull/${pr}/head`, update], repo.origin);
  return { repo, checkout, profile, current, update, pr };
}
