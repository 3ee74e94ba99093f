/**
 * The agent's update-inputs op when Lockstep's lock reader cannot read the lock Nix replaced (a
 * version before 5, over the reader's limits): Nix's new lock is still committed, and the commit
 * message says why there is no input diff, instead of the job failing with flake.lock changed and
 * not committed. `nix` is a stand-in script on PATH that writes the new lock, as
 * `nix flake update` does; git is real.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { AgentContext } from "../../agent/context.js";
import type { RunningJob } from "../../agent/job.js";
import { lockChange, updateInputs } from "../../agent/ops/update-inputs.js";
import type { CommandOf } from "../../protocol/index.js";

const lock = (version: number, rev: string) =>
  JSON.stringify(
    {
      nodes: {
        nixpkgs: { locked: { lastModified: 1764000000, narHash: "sha256-AAAA", owner: "NixOS", repo: "nixpkgs", rev, type: "github" }, original: { owner: "NixOS", repo: "nixpkgs", type: "github" } },
        root: { inputs: { nixpkgs: "nixpkgs" } },
      },
      root: "root",
      version,
    },
    null,
    2,
  ) + "\n";
const OLD_REV = "1".repeat(40);
const NEW_REV = "2".repeat(40);

describe("update-inputs when the old flake.lock cannot be read by Lockstep", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  function checkoutWith(oldLock: string) {
    const root = mkdtempSync(join(tmpdir(), "lockstep-update-inputs-"));
    dirs.push(root);
    const dir = join(root, "checkout");
    const bin = join(root, "bin");
    mkdirSync(dir);
    mkdirSync(bin);
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@t", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t" };
    const git = (...args: string[]) => execFileSync("git", args, { cwd: dir, env, encoding: "utf8" }).trim();
    git("init", "-q", "-b", "main");
    writeFileSync(join(dir, "flake.lock"), oldLock);
    git("add", "flake.lock");
    git("commit", "-qm", "init");
    // The stand-in for `nix flake update`: writes the new lock.
    writeFileSync(join(root, "new.lock"), lock(7, NEW_REV));
    writeFileSync(join(bin, "nix"), `#!/bin/sh\ncp "${join(root, "new.lock")}" flake.lock\n`);
    chmodSync(join(bin, "nix"), 0o755);
    const ctx = {
      env,
      checkout: { dir, head: async () => git("rev-parse", "HEAD") },
      config: { timeouts: { updateInputsSeconds: 30 }, repo: { branch: "main" } },
    } as unknown as AgentContext;
    const job = { id: "j-1", op: "update-inputs", reporter: { line: () => undefined }, touches: new Set(), cancelled: false, cancel: () => undefined, finished: Promise.resolve() } as unknown as RunningJob;
    const cmd = { op: "update-inputs", args: { push: false } } as unknown as CommandOf<"update-inputs">;
    return { dir, git, run: () => updateInputs(ctx, cmd, job) };
  }

  it("commits Nix's new lock and says the old one cannot be read (version 4)", async () => {
    const c = checkoutWith(lock(4, OLD_REV));
    const outcome = await c.run();
    expect(outcome.state).toBe("succeeded");
    expect(outcome.summary).toContain("flake.lock rewritten (the old lock cannot be read)");
    expect(c.git("status", "--porcelain")).toBe("");
    expect(readFileSync(join(c.dir, "flake.lock"), "utf8")).toBe(lock(7, NEW_REV));
    const message = c.git("log", "-1", "--format=%B");
    expect(message).toContain("flake.lock: Update");
    expect(message).toMatch(/no input diff: the old lock cannot be read \(flake\.lock version 4 is not supported/);
  });

  it("a readable old lock gives the input diff as before", async () => {
    const c = checkoutWith(lock(7, OLD_REV));
    const outcome = await c.run();
    expect(outcome.state).toBe("succeeded");
    expect(outcome.summary).toContain("nixpkgs");
    expect(c.git("log", "-1", "--format=%B")).toMatch(/nixpkgs .*1111111 → .*2222222/);
  });

  it("lockChange names which lock it could not read", () => {
    expect(lockChange("", lock(7, NEW_REV)).text).toBe("flake.lock created");
    expect(lockChange(lock(7, OLD_REV), "{").oneLine).toBe("flake.lock rewritten (the new lock cannot be read)");
  });
});
