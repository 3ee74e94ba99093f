/**
 * The host's checkout of the fleet repository: clone, fetch, verify that a commit is on the
 * configured branch, check it out, and the facts the Git compartment needs. argv only; the only
 * payload-derived value that reaches git is a validated 40-hex commit sha.
 */
import { execFile } from "node:child_process";
import { existsSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { assertCommitSha } from "./os-profiles.js";
import { runProcess, type RunOptions, type RunResult } from "./process.js";
import type { GitFacts } from "../protocol/index.js";

export interface GitCheckoutOptions {
  dir: string;
  url: string;
  branch: string;
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
}

export class GitCheckout {
  constructor(private readonly o: GitCheckoutOptions) {}

  get dir(): string {
    return this.o.dir;
  }

  exists(): boolean {
    return existsSync(join(this.o.dir, ".git"));
  }

  /**
   * Quick read-only git call; resolves with the exit code and stdout. GIT_OPTIONAL_LOCKS=0 keeps
   * `git status` from rewriting the index: that takes `.git/index.lock`, and a checkout running at
   * the same moment in a job would fail with "remove the file manually to continue".
   */
  private query(args: string[]): Promise<{ code: number; stdout: string }> {
    return new Promise((resolve) => {
      execFile("git", args, { cwd: this.o.dir, env: { ...this.o.env, GIT_OPTIONAL_LOCKS: "0" }, encoding: "utf8", timeout: 30_000 }, (err, stdout) => {
        const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : 128) : 0;
        resolve({ code, stdout: String(stdout ?? "") });
      });
    });
  }

  /** A git step of a job: output streamed, timeout, cancellable through the returned handle. */
  run(args: string[], opts: Pick<RunOptions, "onLine"> & { cwd?: string } = {}) {
    return runProcess(["git", ...args], { cwd: opts.cwd ?? this.o.dir, env: this.o.env, timeoutMs: this.o.timeoutMs, ...(opts.onLine ? { onLine: opts.onLine } : {}) });
  }

  cloneArgs(): { args: string[]; cwd: string } {
    return { args: ["clone", "--branch", this.o.branch, "--", this.o.url, this.o.dir], cwd: join(this.o.dir, "..") };
  }

  fetchArgs(): string[] {
    return ["fetch", "--prune", "origin", `+refs/heads/${this.o.branch}:refs/remotes/origin/${this.o.branch}`];
  }

  checkoutArgs(commit: string): string[] {
    // A local branch at the exact commit (not "whatever origin/main is now").
    return ["checkout", "-q", "-B", this.o.branch, assertCommitSha(commit)];
  }

  /**
   * Remove a `.git/index.lock` older than `maxAgeMs`: a git killed mid-checkout (agent killed, host
   * lost power) leaves it, and every later checkout would fail until someone deletes it by hand.
   * Only call it while no git of ours runs here (the agent's git queue); a younger lock is left
   * alone, it may belong to someone working in the checkout. Returns the lock's age when removed.
   */
  clearStaleIndexLock(maxAgeMs: number, now = Date.now()): number | undefined {
    const lock = join(this.o.dir, ".git", "index.lock");
    let age: number;
    try {
      age = now - statSync(lock).mtimeMs;
    } catch {
      return undefined;
    }
    if (age < maxAgeMs) return undefined;
    rmSync(lock, { force: true });
    return age;
  }

  async head(): Promise<string | undefined> {
    const r = await this.query(["rev-parse", "--verify", "-q", "HEAD"]);
    return r.code === 0 ? r.stdout.trim() : undefined;
  }

  async hasCommit(sha: string): Promise<boolean> {
    return (await this.query(["cat-file", "-e", `${assertCommitSha(sha)}^{commit}`])).code === 0;
  }

  async isAncestor(a: string, b: string): Promise<boolean> {
    return (await this.query(["merge-base", "--is-ancestor", a, b])).code === 0;
  }

  /** Is the commit reachable from origin/<branch> (after a fetch)? */
  async onBranch(sha: string): Promise<boolean> {
    return this.isAncestor(assertCommitSha(sha), `refs/remotes/origin/${this.o.branch}`);
  }


  /** Tracked files with uncommitted changes (staged or not), as `git status` names them. */
  async dirtyFiles(): Promise<string[]> {
    const r = await this.query(["status", "--porcelain", "--untracked-files=no", "-z"]);
    if (r.code !== 0) return [];
    const files: string[] = [];
    const entries = r.stdout.split("\0");
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.length < 4) continue;
      files.push(e.slice(3));
      // A rename or copy is followed by its source path.
      if (e[0] === "R" || e[0] === "C") i++;
    }
    return files;
  }

  async facts(expectedHead: string | undefined): Promise<GitFacts> {
    if (!this.exists()) return { branch: this.o.branch, error: `no checkout at ${this.o.dir}` };
    const head = await this.head();
    const f: GitFacts = { branch: this.o.branch };
    if (head) f.head = head;
    if ((await this.dirtyFiles()).length > 0) f.dirty = true;
    if (!head || !expectedHead) return f;
    f.expectedHead = expectedHead;
    if (head === expectedHead) return { ...f, relation: "equal" };
    if (!(await this.hasCommit(expectedHead))) return { ...f, relation: "unknown" };
    if (await this.isAncestor(head, expectedHead)) {
      const n = await this.query(["rev-list", "--count", `${head}..${expectedHead}`]);
      return { ...f, relation: "behind", ...(n.code === 0 ? { behindBy: Number(n.stdout.trim()) } : {}) };
    }
    if (await this.isAncestor(expectedHead, head)) return { ...f, relation: "ahead" };
    return { ...f, relation: "diverged" };
  }
}

/** GIT_SSH_COMMAND for a deploy key: git runs it through sh, so the path is single-quoted as one word. */
export function gitSshCommand(keyFile: string): string {
  return `ssh -i '${keyFile.replaceAll("'", "'\\''")}' -o IdentitiesOnly=yes -o BatchMode=yes`;
}

export function describeGitFailure(step: string, r: RunResult): string {
  const last = [...r.tail].reverse().find((l) => l.trim().length > 0);
  return `git ${step} failed${r.timedOut ? " (timed out)" : ""}: ${last ?? `exit ${r.exitCode}`}`;
}
