/**
 * Real signing keys for tests: SSH keys from `ssh-keygen` and GPG keys from `gpg --quick-gen-key`
 * in a GnuPG home of their own, and `git commit -S` with either. Nothing reads the user's git or
 * GnuPG configuration (GIT_CONFIG_GLOBAL=/dev/null, GIT_CONFIG_NOSYSTEM, GNUPGHOME per key).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";

export interface SshSigningKey {
  kind: "ssh";
  /** Private key file (its public key is `${file}.pub`). */
  file: string;
  email: string;
  publicKey: string;
}

export interface GpgSigningKey {
  kind: "gpg";
  /** The GnuPG home holding the secret key. */
  home: string;
  email: string;
  fingerprint: string;
}

export type SigningKey = SshSigningKey | GpgSigningKey;

export function sshKey(dir: string, name: string): SshSigningKey {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", file], { stdio: "ignore" });
  return { kind: "ssh", file, email: `${name}@lockstep.invalid`, publicKey: readFileSync(`${file}.pub`, "utf8").trim() };
}

/** An allowed_signers file (ssh-keygen ALLOWED SIGNERS format) trusting these keys for git. */
export function allowedSignersFile(path: string, keys: SshSigningKey[]): string {
  writeFileSync(path, keys.map((k) => `${k.email} namespaces="git" ${k.publicKey}`).join("\n") + "\n");
  return path;
}

export function gpgKey(dir: string, name: string): GpgSigningKey {
  const home = join(dir, `gnupg-${name}`);
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const email = `${name}@lockstep.invalid`;
  const env = { ...process.env, GNUPGHOME: home };
  execFileSync("gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", `${name} <${email}>`, "ed25519", "sign", "never"], { env, stdio: "ignore" });
  const colons = execFileSync("gpg", ["--batch", "--with-colons", "--list-secret-keys", email], { env, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  const fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(colons)?.[1];
  if (!fingerprint) throw new Error(`no fingerprint for ${email} in ${colons}`);
  return { kind: "gpg", home, email, fingerprint };
}

/** A GnuPG home holding only the public keys given (what an agent's verifySignatures.gpgHome is). */
export function gpgKeyring(home: string, keys: GpgSigningKey[]): string {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  for (const k of keys) {
    const pub = execFileSync("gpg", ["--batch", "--armor", "--export", k.fingerprint], { env: { ...process.env, GNUPGHOME: k.home } });
    execFileSync("gpg", ["--batch", "--import"], { env: { ...process.env, GNUPGHOME: home }, input: pub, stdio: ["pipe", "ignore", "ignore"] });
  }
  return home;
}

/** git arguments and environment that make `git commit -S` sign with this key. */
export function signingGit(key: SigningKey): { args: string[]; env: NodeJS.ProcessEnv } {
  const base = { ...process.env, GIT_CONFIG_GLOBAL: "/dev/null", GIT_CONFIG_NOSYSTEM: "1" };
  if (key.kind === "ssh") return { args: ["-c", "gpg.format=ssh", "-c", `user.signingkey=${key.file}`, "-c", "commit.gpgsign=true"], env: base };
  return { args: ["-c", "gpg.format=openpgp", "-c", `user.signingkey=${key.fingerprint}`, "-c", "commit.gpgsign=true"], env: { ...base, GNUPGHOME: key.home } };
}

/** `git commit --allow-empty -S` in `dir` (signed with `key`, or unsigned without one). Returns the sha. */
export function commitEmpty(dir: string, message: string, key?: SigningKey): string {
  const s = key ? signingGit(key) : { args: ["-c", "commit.gpgsign=false"], env: { ...process.env, GIT_CONFIG_GLOBAL: "/dev/null", GIT_CONFIG_NOSYSTEM: "1" } };
  const who = ["-c", "user.name=Lockstep Test", "-c", `user.email=${key?.email ?? "unsigned@lockstep.invalid"}`];
  execFileSync("git", [...who, ...s.args, "commit", "-q", "--allow-empty", "-m", message], { cwd: dir, env: s.env, stdio: "ignore" });
  return execFileSync("git", ["rev-parse", "HEAD"], { cwd: dir, encoding: "utf8" }).trim();
}

/** Stop the gpg-agent a key's GnuPG home started (signing and importing start one per home). */
export function stopGpgAgent(home: string): void {
  try {
    execFileSync("gpgconf", ["--homedir", home, "--kill", "gpg-agent"], { stdio: "ignore" });
  } catch {
    // no agent running for this home
  }
}
