/**
 * Only deploy what the admin signed (comin's commit signature check): with `verifySignatures` in
 * the agent config, a pull refuses to move the checkout to, and a switch refuses to build, a
 * commit whose signature is not from an allowed key.
 *
 * git itself verifies (`git verify-commit`): SSH signatures against an allowed_signers file
 * (`ssh-keygen -Y`), GPG signatures against a GnuPG home that holds only the allowed public keys.
 * Everything git needs comes as `-c` arguments from the agent's own config, and git reads neither
 * the user's nor the system's git config (GIT_CONFIG_GLOBAL=/dev/null, GIT_CONFIG_NOSYSTEM, no
 * GIT_CONFIG_* injection), so how a commit is judged does not depend on who runs the agent.
 */
import { LockstepError } from "../protocol/index.js";
import type { AgentConfig } from "./config.js";
import { assertCommitSha } from "./os-profiles.js";
import { meaningfulErrorLine, runProcess, type OutputStream } from "./process.js";

export type VerifySignaturesConfig = NonNullable<AgentConfig["verifySignatures"]>;

/** The commit must not be deployed: what is wrong with its signature, and what to do. */
export class SignatureRefused extends LockstepError {
  override name = "SignatureRefused";
  constructor(
    readonly commit: string,
    readonly reason: string,
    hint: string,
  ) {
    super(`commit ${commit.slice(0, 8)} ${reason}: refusing to deploy it`, "signature-refused", hint);
  }
}

/** How a commit object is signed, from its header (`gpgsig` / `gpgsig-sha256`). */
export type SignatureKind = "ssh" | "gpg" | "x509" | "none";

export function signatureKindOf(commitObject: string): SignatureKind {
  for (const line of commitObject.split("\n")) {
    if (line === "") break; // the header ends at the first empty line; the message may quote anything
    const m = /^gpgsig(?:-sha256)? (.*)$/.exec(line);
    if (!m) continue;
    if (m[1]!.includes("BEGIN SSH SIGNATURE")) return "ssh";
    if (m[1]!.includes("BEGIN PGP SIGNATURE")) return "gpg";
    return "x509";
  }
  return "none";
}

/** The environment git verifies in: ours, minus every way git config could come from outside. */
export function verifyEnv(base: NodeJS.ProcessEnv, v: VerifySignaturesConfig): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, val] of Object.entries(base)) if (!k.startsWith("GIT_CONFIG") && k !== "GNUPGHOME") env[k] = val;
  env.GIT_CONFIG_GLOBAL = "/dev/null";
  env.GIT_CONFIG_NOSYSTEM = "1";
  if (v.gpgHome) env.GNUPGHOME = v.gpgHome;
  return env;
}

/**
 * `git verify-commit` with the agent's trust anchors. SSH: gpg.minTrustLevel=fully, so a valid
 * signature by a key that is not in allowed_signers (git calls it "Good ... with key", trust
 * undefined) is refused on every git version. GPG: the keyring holds only allowed keys, so any
 * good signature from it is allowed (imported keys have no owner trust).
 */
export function verifyCommitArgv(v: VerifySignaturesConfig, kind: "ssh" | "gpg", commit: string): string[] {
  const c = (kv: string) => ["-c", kv];
  return [
    "git",
    ...c(`gpg.program=${v.gpgProgram}`),
    ...c(`gpg.ssh.program=${v.sshKeygenProgram}`),
    ...(v.allowedSigners ? c(`gpg.ssh.allowedSignersFile=${v.allowedSigners}`) : []),
    ...c(`gpg.minTrustLevel=${kind === "ssh" ? "fully" : "undefined"}`),
    "verify-commit",
    assertCommitSha(commit),
  ];
}

export interface VerifyOptions {
  config: AgentConfig;
  /** The checkout holding the commit. */
  dir: string;
  env: NodeJS.ProcessEnv;
  /** Each line git and its verifier print (for the job's output). */
  onLine?: (stream: OutputStream, text: string) => void;
}

/**
 * Check a commit's signature. Resolves with the verifier's "Good signature" line, or undefined
 * when the host does not verify signatures; throws SignatureRefused when the commit must not be
 * deployed (unsigned, signed by a key that is not allowed, of a kind this host has no keys for).
 */
export async function verifyCommitSignature(commit: string, o: VerifyOptions): Promise<string | undefined> {
  const v = o.config.verifySignatures;
  if (!v) return undefined;
  const timeoutMs = v.timeoutSeconds * 1000;
  const env = verifyEnv(o.env, v);
  const tooSlow = () =>
    new SignatureRefused(commit, `could not be verified within ${v.timeoutSeconds} s`, "check that git and the verifier run on this host (verifySignatures.timeoutSeconds)");

  // The commit object's header says how it is signed (read without verifying anything).
  const header: string[] = [];
  let inHeader = true;
  const cat = await runProcess(["git", "cat-file", "commit", assertCommitSha(commit)], {
    cwd: o.dir,
    env,
    timeoutMs,
    onLine: (stream, text) => {
      if (stream !== "stdout" || !inHeader) return;
      if (text === "") inHeader = false;
      else header.push(text);
    },
  }).done;
  if (cat.timedOut) throw tooSlow();
  if (cat.exitCode !== 0) throw new SignatureRefused(commit, "could not be read", `git cat-file failed: ${meaningfulErrorLine(cat.tail) ?? `exit ${cat.exitCode}`}`);

  const kind = signatureKindOf(header.join("\n"));
  const keys = [v.allowedSigners ? `an SSH key in ${v.allowedSigners}` : undefined, v.gpgHome ? `a GPG key in ${v.gpgHome}` : undefined].filter(Boolean).join(" or ");
  if (kind === "none") {
    throw new SignatureRefused(commit, "is not signed", `sign it with ${keys} (git commit -S; see docs/signed-commits.md), or turn verifySignatures off for this host`);
  }
  if (kind === "x509") throw new SignatureRefused(commit, "has an X.509 (gpgsm) signature", `only SSH and GPG signatures are verified: sign it with ${keys}`);
  if (kind === "ssh" && !v.allowedSigners) {
    throw new SignatureRefused(commit, "has an SSH signature, but this host has no allowed SSH keys", "set verifySignatures.allowedSigners to an allowed_signers file, or sign with a GPG key in verifySignatures.gpgHome");
  }
  if (kind === "gpg" && !v.gpgHome) {
    throw new SignatureRefused(commit, "has a GPG signature, but this host has no allowed GPG keys", "set verifySignatures.gpgHome to a GnuPG home holding the allowed public keys, or sign with an SSH key in verifySignatures.allowedSigners");
  }

  const lines: string[] = [];
  const r = await runProcess(verifyCommitArgv(v, kind, commit), {
    cwd: o.dir,
    env,
    timeoutMs,
    onLine: (stream, text) => {
      if (lines.length < 200) lines.push(text);
      o.onLine?.(stream, text);
    },
  }).done;
  if (r.timedOut) throw tooSlow();
  if (r.spawnError) throw new SignatureRefused(commit, "could not be verified", `${r.spawnError}: install git and ${kind === "ssh" ? v.sshKeygenProgram : v.gpgProgram}`);
  const good = lines.find((l) => /Good "git" signature for |Good signature from /.test(l));
  if (r.exitCode === 0 && good) return good.replace(/^gpg: /, "");
  const why = meaningfulErrorLine(lines) ?? `git verify-commit exited ${r.exitCode}`;
  const where = kind === "ssh" ? `add the signer's public key to ${v.allowedSigners}` : `import the signer's public key into ${v.gpgHome} (gpg --homedir ${v.gpgHome} --import)`;
  throw new SignatureRefused(commit, `is not signed by an allowed key (${why})`, `${where} if it should deploy, or deploy a commit signed by an allowed key`);
}
