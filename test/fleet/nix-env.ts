/**
 * Environment for running Debian's Nix 2.8 here: flakes on, no sandbox, no substituters
 * (there is no network), and git identities for the commits that `nix flake update` triggers.
 */
export const NIX_CONFIG_LINES = [
  "experimental-features = nix-command flakes",
  "sandbox = false",
  "substituters =",
  "warn-dirty = false",
  "flake-registry = ",
  // Agents of one test fleet evaluate the same flake at once; Nix 2.8's shared eval cache then
  // sometimes answers "attribute 'packages.<system>.lockstepSystems' is unexpectedly missing".
  "eval-cache = false",
];

export function nixEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    NIX_CONFIG: NIX_CONFIG_LINES.join("\n"),
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
