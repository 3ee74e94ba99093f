/**
 * The whole Nix configuration for every Nix call the tests, the demo and the benchmarks make.
 *
 * Nothing on the machine may change the outcome: Nix reads `$NIX_CONF_DIR/nix.conf` instead of
 * `/etc/nix/nix.conf`, `NIX_USER_CONF_FILES` instead of `~/.config/nix/nix.conf`, and an inherited
 * `NIX_CONFIG` is cleared. Debian's Nix 2.8 run as root otherwise wants a `nixbld` build-users group
 * that a fresh machine does not have (`build-users-group =` turns that off).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const NIX_CONFIG_LINES = [
  "experimental-features = nix-command flakes",
  // Root without build users: builds run as root (there is no nix-daemon and no nixbld group).
  "build-users-group =",
  "sandbox = false",
  // No network here: nothing is substituted, and no registry is fetched.
  "substituters =",
  "trusted-public-keys =",
  "flake-registry = ",
  "warn-dirty = false",
  // Agents of one test fleet evaluate the same flake at once; Nix 2.8's shared eval cache then
  // sometimes answers "attribute 'packages.<system>.lockstepSystems' is unexpectedly missing".
  "eval-cache = false",
];

const CONF_TEXT = NIX_CONFIG_LINES.join("\n") + "\n";

/**
 * A directory holding the project's `nix.conf`, written once per process (atomically, so that
 * concurrent test processes never read half a file). Its path is stable, so agents started from a
 * written config keep finding it.
 */
export function nixConfDir(): string {
  const dir = join(tmpdir(), `lockstep-nix-conf-${process.getuid?.() ?? "user"}`);
  const file = join(dir, "nix.conf");
  let current: string | undefined;
  try {
    current = readFileSync(file, "utf8");
  } catch {
    current = undefined;
  }
  if (current !== CONF_TEXT) {
    mkdirSync(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, CONF_TEXT);
    renameSync(tmp, file);
  }
  return dir;
}

/** Only the Nix variables: what an agent config's `env` carries for the test fleet. */
export function nixConfigEnv(): Record<string, string> {
  const dir = nixConfDir();
  return {
    NIX_CONF_DIR: dir,
    NIX_USER_CONF_FILES: join(dir, "nix.conf"),
    NIX_CONFIG: "",
  };
}

export function nixEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    ...nixConfigEnv(),
    GIT_AUTHOR_NAME: "Lockstep Test",
    GIT_AUTHOR_EMAIL: "test@lockstep.invalid",
    GIT_COMMITTER_NAME: "Lockstep Test",
    GIT_COMMITTER_EMAIL: "test@lockstep.invalid",
    ...extra,
  };
}

/** The Nix system string of this machine, e.g. x86_64-linux. */
export function nixSystem(): string {
  const arch = process.arch === "arm64" ? "aarch64" : process.arch === "x64" ? "x86_64" : process.arch;
  const os = process.platform === "darwin" ? "darwin" : "linux";
  return `${arch}-${os}`;
}
