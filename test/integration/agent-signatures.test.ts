/**
 * Commit signature verification (agent/signatures.ts) with real keys: `ssh-keygen` keys and a GPG
 * key, commits made with `git commit -S`, verified by git itself. Signed by an allowed key: the
 * "Good signature" line; unsigned, signed by another key, or of a kind the host has no keys for:
 * SignatureRefused with a hint. The user's git config cannot change the verdict.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAgentConfig, type AgentConfig, type AgentConfigInput } from "../../agent/config.js";
import { SignatureRefused, signatureKindOf, verifyCommitSignature } from "../../agent/signatures.js";
import { allowedSignersFile, commitEmpty, gpgKey, gpgKeyring, sshKey, stopGpgAgent, type GpgSigningKey, type SshSigningKey } from "../support/signing.js";

describe("commit signature verification (real keys, git verify-commit)", () => {
  let root: string;
  let repo: string;
  let admin: SshSigningKey;
  let stranger: SshSigningKey;
  let releaser: GpgSigningKey;
  let outsider: GpgSigningKey;
  let allowed: string;
  let keyring: string;
  const commits: Record<string, string> = {};

  const configWith = (verifySignatures: AgentConfigInput["verifySignatures"]): AgentConfig =>
    parseAgentConfig({
      host: "alpha",
      broker: { url: "mqtt://127.0.0.1:1" },
      repo: { url: "file:///nowhere", checkoutDir: repo },
      stateDir: join(root, "state"),
      os: { kind: "generic" },
      ...(verifySignatures ? { verifySignatures } : {}),
    });
  const verify = (commit: string, v: AgentConfigInput["verifySignatures"], env: NodeJS.ProcessEnv = process.env) =>
    verifyCommitSignature(commit, { config: configWith(v), dir: repo, env });
  const refusal = async (p: Promise<unknown>): Promise<SignatureRefused> => {
    try {
      await p;
    } catch (e) {
      expect(e).toBeInstanceOf(SignatureRefused);
      return e as SignatureRefused;
    }
    throw new Error("expected SignatureRefused");
  };

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "lockstep-signatures-"));
    admin = sshKey(join(root, "keys"), "admin");
    stranger = sshKey(join(root, "keys"), "stranger");
    releaser = gpgKey(root, "releaser");
    outsider = gpgKey(root, "outsider");
    allowed = allowedSignersFile(join(root, "allowed_signers"), [admin]);
    keyring = gpgKeyring(join(root, "allowed-gnupg"), [releaser]);
    repo = join(root, "repo");
    execFileSync("git", ["init", "-q", "-b", "main", repo]);
    commits.admin = commitEmpty(repo, "signed by admin", admin);
    commits.stranger = commitEmpty(repo, "signed by a stranger", stranger);
    commits.unsigned = commitEmpty(repo, "not signed\n\ngpgsig -----BEGIN SSH SIGNATURE----- (only quoted in the message)");
    commits.releaser = commitEmpty(repo, "signed by the releaser (GPG)", releaser);
    commits.outsider = commitEmpty(repo, "signed by an outsider (GPG)", outsider);
  }, 60_000);

  afterAll(() => {
    for (const home of [releaser?.home, outsider?.home, keyring]) if (home) stopGpgAgent(home);
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("reads how a commit is signed from its header, not its message", () => {
    const cat = (c: string) => execFileSync("git", ["cat-file", "commit", c], { cwd: repo, encoding: "utf8" });
    expect(signatureKindOf(cat(commits.admin!))).toBe("ssh");
    expect(signatureKindOf(cat(commits.releaser!))).toBe("gpg");
    expect(signatureKindOf(cat(commits.unsigned!))).toBe("none");
  });

  it("without verifySignatures nothing is checked", async () => {
    expect(await verify(commits.unsigned!, undefined)).toBeUndefined();
  });

  it("an SSH signature by an allowed key passes and names the signer", async () => {
    expect(await verify(commits.admin!, { allowedSigners: allowed })).toMatch(/^Good "git" signature for admin@lockstep\.invalid with ED25519 key SHA256:/);
  });

  it("an unsigned commit is refused, with a hint", async () => {
    const e = await refusal(verify(commits.unsigned!, { allowedSigners: allowed }));
    expect(e.code).toBe("signature-refused");
    expect(e.message).toBe(`commit ${commits.unsigned!.slice(0, 8)} is not signed: refusing to deploy it (sign it with an SSH key in ${allowed} (git commit -S; see docs/signed-commits.md), or turn verifySignatures off for this host)`);
  });

  it("a valid SSH signature by a key that is not allowed is refused", async () => {
    const e = await refusal(verify(commits.stranger!, { allowedSigners: allowed }));
    expect(e.message).toMatch(/is not signed by an allowed key \(No principal matched\.\): refusing to deploy it \(add the signer's public key to /);
  });

  it("a GPG signature by a key in gpgHome passes; one by another key is refused", async () => {
    expect(await verify(commits.releaser!, { gpgHome: keyring })).toMatch(/^Good signature from "releaser <releaser@lockstep\.invalid>"/);
    const e = await refusal(verify(commits.outsider!, { gpgHome: keyring }));
    expect(e.message).toMatch(/is not signed by an allowed key \(.*No public key\)/);
  });

  it("a signature of a kind the host has no keys for is refused before git is asked", async () => {
    expect((await refusal(verify(commits.releaser!, { allowedSigners: allowed }))).message).toMatch(/has a GPG signature, but this host has no allowed GPG keys/);
    expect((await refusal(verify(commits.admin!, { gpgHome: keyring }))).message).toMatch(/has an SSH signature, but this host has no allowed SSH keys/);
  });

  it("the user's git config and GIT_CONFIG_* variables cannot widen the allowed keys", async () => {
    // A global config (and an injected one) that would trust the stranger and accept any trust level.
    const everyone = allowedSignersFile(join(root, "everyone"), [admin, stranger]);
    const global = join(root, "gitconfig");
    writeFileSync(global, `[gpg]\n\tminTrustLevel = undefined\n[gpg "ssh"]\n\tallowedSignersFile = ${everyone}\n`);
    const env = { ...process.env, GIT_CONFIG_GLOBAL: global, GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "gpg.ssh.allowedSignersFile", GIT_CONFIG_VALUE_0: everyone };
    expect(execFileSync("git", ["verify-commit", commits.stranger!], { cwd: repo, env, stdio: "ignore" })).toBeDefined(); // git alone trusts it
    await refusal(verify(commits.stranger!, { allowedSigners: allowed }, env));
    // And a host that does not allow GPG keys never falls back to the user's keyring.
    await refusal(verify(commits.releaser!, { allowedSigners: allowed }, { ...process.env, GNUPGHOME: releaser.home }));
  });

  it("a verifier that hangs is bounded by timeoutSeconds", async () => {
    const hang = join(root, "hanging-ssh-keygen");
    writeFileSync(hang, "#!/bin/sh\nexec sleep 30\n", { mode: 0o755 });
    const t0 = Date.now();
    const e = await refusal(verify(commits.admin!, { allowedSigners: allowed, sshKeygenProgram: hang, timeoutSeconds: 1 }));
    expect(e.message).toMatch(/could not be verified within 1 s/);
    expect(Date.now() - t0).toBeLessThan(20_000);
  });
});
