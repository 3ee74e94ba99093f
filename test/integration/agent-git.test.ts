/**
 * The agent reads git state (Git compartment) while a job may be checking out a commit in the
 * same repository. A read must never take `.git/index.lock`: `git status` normally refreshes and
 * rewrites the index, and a checkout that starts meanwhile fails with "remove the file manually
 * to continue" (seen in CI, a canary pull failed this way).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { GitCheckout } from "../../agent/git.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@t", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t" },
  });
}

describe("GitCheckout reads", () => {
  it("never rewrite the index, so they cannot collide with a checkout", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-git-"));
    dirs.push(dir);
    git(dir, "init", "-q", "-b", "main");
    writeFileSync(join(dir, "flake.nix"), "{ }\n");
    git(dir, "add", "flake.nix");
    git(dir, "commit", "-q", "-m", "init");
    // A stat change without a content change: plain `git status` would refresh and rewrite the index.
    const later = new Date(Date.now() + 5_000);
    utimesSync(join(dir, "flake.nix"), later, later);
    const index = join(dir, ".git", "index");
    const before = statSync(index).mtimeMs;

    const checkout = new GitCheckout({ dir, url: dir, branch: "main", env: process.env, timeoutMs: 10_000 });
    const facts = await checkout.facts(undefined);
    expect(facts.head).toMatch(/^[0-9a-f]{40}$/);
    expect(facts.dirty).toBeUndefined();
    expect(await checkout.dirtyFiles()).toEqual([]);
    expect(statSync(index).mtimeMs).toBe(before);
  });
});

describe("a stale .git/index.lock", () => {
  it("is removed when older than the limit and left alone when younger", () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-git-"));
    dirs.push(dir);
    git(dir, "init", "-q", "-b", "main");
    const lock = join(dir, ".git", "index.lock");
    writeFileSync(lock, "");
    const checkout = new GitCheckout({ dir, url: dir, branch: "main", env: process.env, timeoutMs: 10_000 });
    expect(checkout.clearStaleIndexLock(60_000)).toBeUndefined();
    expect(existsSync(lock)).toBe(true);
    const old = new Date(Date.now() - 10 * 60_000);
    utimesSync(lock, old, old);
    expect(checkout.clearStaleIndexLock(60_000)).toBeGreaterThanOrEqual(10 * 60_000 - 1000);
    expect(existsSync(lock)).toBe(false);
    expect(checkout.clearStaleIndexLock(60_000)).toBeUndefined();
  });
});
