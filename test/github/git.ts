/**
 * Real git operations on the bare "origin" repository behind the local GitHub server. Everything
 * is plumbing on the bare repo (no working tree): merges use `git merge-tree --write-tree`
 * (git >= 2.38), file commits use a temporary index. Same objects a clone-merge-push would make.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface GitIdentity {
  name: string;
  email: string;
}

export interface CommitInfo {
  sha: string;
  tree: string;
  parents: string[];
  author: GitIdentity & { date: string };
  committer: GitIdentity & { date: string };
  message: string;
}

export interface ChangedFile {
  filename: string;
  status: "added" | "removed" | "modified" | "renamed" | "copied" | "changed" | "unchanged";
  additions: number;
  deletions: number;
  blobSha: string;
}

export class MergeConflict extends Error {
  override name = "MergeConflict";
}

const GITHUB_IDENTITY: GitIdentity = { name: "GitHub", email: "noreply@github.test" };

const isSha = (s: string) => /^[0-9a-f]{40}$/.test(s);

export class BareRepo {
  /** Results that depend only on commit shas never change: remember them (keeps polls fast). */
  private readonly memo = new Map<string, Promise<unknown>>();

  constructor(readonly path: string) {}

  private remember<T>(key: string, shas: string[], compute: () => Promise<T>): Promise<T> {
    if (!shas.every(isSha)) return compute();
    let p = this.memo.get(key) as Promise<T> | undefined;
    if (!p) {
      p = compute();
      this.memo.set(key, p);
      p.catch(() => this.memo.delete(key));
    }
    return p;
  }

  run(args: string[], opts: { input?: Buffer | string; env?: NodeJS.ProcessEnv; allowExit?: number[] } = {}): Promise<{ stdout: Buffer; code: number }> {
    return new Promise((resolve, reject) => {
      const child = execFile(
        "git",
        args,
        { cwd: this.path, env: { ...process.env, ...opts.env }, encoding: "buffer", maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) => {
          const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : -1) : 0;
          if (err && !(opts.allowExit ?? []).includes(code)) {
            reject(new Error(`git ${args.join(" ")} failed (${code}): ${stderr.toString().trim()}`));
          } else resolve({ stdout, code });
        },
      );
      if (opts.input !== undefined) child.stdin?.end(opts.input);
    });
  }

  private async text(args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
    return (await this.run(args, { env })).stdout.toString("utf8").trim();
  }

  /** Commit sha of a ref or sha, or null when it does not resolve to a commit. */
  async resolveCommit(ref: string): Promise<string | null> {
    if (ref.startsWith("-")) return null;
    // A full sha names the same commit forever once it exists: remember positive answers.
    if (isSha(ref)) {
      const known = this.memo.get(`commit-exists ${ref}`);
      if (known) return ref;
      const found = await this.resolveCommitUncached(ref);
      if (found) this.memo.set(`commit-exists ${ref}`, Promise.resolve(true));
      return found;
    }
    return this.resolveCommitUncached(ref);
  }

  private async resolveCommitUncached(ref: string): Promise<string | null> {
    const r = await this.run(["rev-parse", "--verify", "-q", `${ref}^{commit}`], { allowExit: [1, 128] });
    return r.code === 0 ? r.stdout.toString().trim() : null;
  }

  /**
   * The sha a branch points at, read straight from the ref files (loose ref, else packed-refs):
   * no process spawn, which keeps the server's per-request cost low. Branch refs always point at
   * commits.
   */
  async branchHead(branch: string): Promise<string | null> {
    if (branch.includes("..") || branch.startsWith("/") || branch.startsWith("-")) return null;
    const name = `refs/heads/${branch}`;
    try {
      const loose = (await readFile(join(this.path, name), "utf8")).trim();
      if (/^[0-9a-f]{40}$/.test(loose)) return loose;
    } catch {
      // not a loose ref: look in packed-refs
    }
    try {
      const packed = await readFile(join(this.path, "packed-refs"), "utf8");
      for (const line of packed.split("\n")) {
        const [sha, ref] = line.split(" ");
        if (ref === name && sha && /^[0-9a-f]{40}$/.test(sha)) return sha;
      }
    } catch {
      // no packed-refs file
    }
    return null;
  }

  /** Bytes of a file at a commit, with its blob sha; null when the path is not a file there. */
  readFile(rev: string, path: string): Promise<{ bytes: Buffer; blobSha: string } | null> {
    return this.remember(`file ${rev} ${path}`, [rev], () => this.readFileUncached(rev, path));
  }

  private async readFileUncached(rev: string, path: string): Promise<{ bytes: Buffer; blobSha: string } | null> {
    const blob = await this.run(["rev-parse", "--verify", "-q", `${rev}:${path}`], { allowExit: [1, 128] });
    if (blob.code !== 0) return null;
    const blobSha = blob.stdout.toString().trim();
    const type = await this.text(["cat-file", "-t", blobSha]);
    if (type !== "blob") return null;
    const bytes = (await this.run(["cat-file", "blob", blobSha])).stdout;
    return { bytes, blobSha };
  }

  commitInfo(sha: string): Promise<CommitInfo | null> {
    return this.remember(`commit ${sha}`, [sha], () => this.commitInfoUncached(sha));
  }

  private async commitInfoUncached(sha: string): Promise<CommitInfo | null> {
    const resolved = await this.resolveCommit(sha);
    if (!resolved) return null;
    const raw = await this.text(["show", "-s", "--format=%H%x00%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B", resolved]);
    const [h, t, p, an, ae, ad, cn, ce, cd, ...msg] = raw.split("\0");
    return {
      sha: h!,
      tree: t!,
      parents: p ? p.split(" ").filter(Boolean) : [],
      author: { name: an!, email: ae!, date: ad! },
      committer: { name: cn!, email: ce!, date: cd! },
      message: msg.join("\0"),
    };
  }

  async mergeBase(a: string, b: string): Promise<string | null> {
    const r = await this.run(["merge-base", a, b], { allowExit: [1] });
    return r.code === 0 ? r.stdout.toString().trim() : null;
  }

  /** Files changed between the merge base of base/head and head (GitHub's three-dot compare). */
  changedFiles(base: string, head: string): Promise<ChangedFile[]> {
    return this.remember(`files ${base} ${head}`, [base, head], () => this.changedFilesUncached(base, head));
  }

  private async changedFilesUncached(base: string, head: string): Promise<ChangedFile[]> {
    const from = (await this.mergeBase(base, head)) ?? base;
    const numstat = await this.text(["diff", "--no-renames", "--numstat", from, head]);
    const raw = await this.text(["diff", "--no-renames", "--raw", "--abbrev=40", from, head]);
    const counts = new Map<string, [number, number]>();
    for (const line of numstat.split("\n").filter(Boolean)) {
      const [a, d, ...name] = line.split("\t");
      counts.set(name.join("\t"), [Number(a) || 0, Number(d) || 0]);
    }
    const files: ChangedFile[] = [];
    for (const line of raw.split("\n").filter(Boolean)) {
      // ":100644 100644 <old> <new> M\tpath"
      const [meta, ...name] = line.split("\t");
      const parts = meta!.split(" ");
      const letter = parts[4]!;
      const filename = name.join("\t");
      const [additions, deletions] = counts.get(filename) ?? [0, 0];
      const status = letter === "A" ? "added" : letter === "D" ? "removed" : "modified";
      files.push({ filename, status, additions, deletions, blobSha: letter === "D" ? parts[2]! : parts[3]! });
    }
    return files;
  }

  /** Whether head merges cleanly into base (a real three-way merge, nothing written to refs). */
  mergesCleanly(base: string, head: string): Promise<boolean> {
    return this.remember(`clean ${base} ${head}`, [base, head], () => this.mergesCleanlyUncached(base, head));
  }

  private async mergesCleanlyUncached(base: string, head: string): Promise<boolean> {
    const r = await this.run(["merge-tree", "--write-tree", "--no-messages", base, head], { allowExit: [1] });
    return r.code === 0;
  }

  private async mergeTree(ours: string, theirs: string): Promise<string> {
    const r = await this.run(["merge-tree", "--write-tree", "--no-messages", ours, theirs], { allowExit: [1] });
    if (r.code === 1) throw new MergeConflict(`merge conflict between ${ours.slice(0, 7)} and ${theirs.slice(0, 7)}`);
    return r.stdout.toString().split("\n")[0]!.trim();
  }

  private async commitTree(tree: string, parents: string[], message: string, author: GitIdentity & { date?: string } = GITHUB_IDENTITY): Promise<string> {
    const env: NodeJS.ProcessEnv = {
      GIT_AUTHOR_NAME: author.name,
      GIT_AUTHOR_EMAIL: author.email,
      GIT_COMMITTER_NAME: GITHUB_IDENTITY.name,
      GIT_COMMITTER_EMAIL: GITHUB_IDENTITY.email,
    };
    if (author.date) env.GIT_AUTHOR_DATE = author.date;
    const r = await this.run(["commit-tree", tree, ...parents.flatMap((p) => ["-p", p]), "-F", "-"], { input: message, env });
    return r.stdout.toString().trim();
  }

  /** Move a branch only if it still points at `expected` (compare-and-swap). */
  async updateBranch(branch: string, next: string, expected: string | null): Promise<void> {
    await this.run(["update-ref", `refs/heads/${branch}`, next, expected ?? "0".repeat(40)]);
  }

  /**
   * Merge head into base the way GitHub's merge button does and move the base branch.
   * Returns the new base head: a two-parent merge commit, a squash commit, or the last rebased commit.
   */
  async mergeInto(baseBranch: string, head: string, method: "merge" | "squash" | "rebase", title: string, body: string): Promise<string> {
    const base = await this.branchHead(baseBranch);
    if (!base) throw new Error(`base branch ${baseBranch} does not exist`);
    const message = body ? `${title}\n\n${body}\n` : `${title}\n`;
    let next: string;
    if (method === "merge") {
      next = await this.commitTree(await this.mergeTree(base, head), [base, head], message);
    } else if (method === "squash") {
      next = await this.commitTree(await this.mergeTree(base, head), [base], message);
    } else {
      next = await this.rebaseOnto(base, head);
    }
    await this.updateBranch(baseBranch, next, base);
    return next;
  }

  /**
   * Replay base..head onto base with `git cherry-pick` in a temporary shared clone (git 2.39's
   * merge-tree has no --merge-base), then fetch the result back. Returns the last new commit.
   */
  private async rebaseOnto(base: string, head: string): Promise<string> {
    const from = (await this.mergeBase(base, head)) ?? base;
    const commits = (await this.text(["rev-list", "--reverse", "--no-merges", `${from}..${head}`])).split("\n").filter(Boolean);
    if (commits.length === 0) return base;
    const dir = mkdtempSync(join(tmpdir(), "lockstep-gh-rebase-"));
    const env = { GIT_COMMITTER_NAME: GITHUB_IDENTITY.name, GIT_COMMITTER_EMAIL: GITHUB_IDENTITY.email };
    try {
      await this.run(["clone", "-q", "--shared", "--no-checkout", this.path, dir]);
      const clone = new BareRepo(dir);
      await clone.run(["checkout", "-q", "--detach", base]);
      const picked = await clone.run(["cherry-pick", "--allow-empty", ...commits], { env, allowExit: [1] });
      if (picked.code !== 0) throw new MergeConflict(`rebase of ${head.slice(0, 7)} onto ${base.slice(0, 7)} conflicts`);
      const next = (await clone.run(["rev-parse", "HEAD"])).stdout.toString().trim();
      await this.run(["fetch", "-q", dir, next]);
      return next;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /**
   * Commit one file (exact bytes) on top of `parent` and move `branch` there (creating it when
   * it does not exist yet; otherwise only if it still points at `parent`). Returns the commit.
   */
  async commitFile(branch: string, parent: string, path: string, bytes: Buffer, message: string, author?: GitIdentity): Promise<{ commit: string; blobSha: string }> {
    const expected = (await this.branchHead(branch)) === null ? null : parent;
    const blobSha = (await this.run(["hash-object", "-w", "--stdin"], { input: bytes })).stdout.toString().trim();
    const dir = mkdtempSync(join(tmpdir(), "lockstep-gh-index-"));
    try {
      const env = { GIT_INDEX_FILE: join(dir, "index") };
      await this.run(["read-tree", parent], { env });
      await this.run(["update-index", "--add", "--cacheinfo", `100644,${blobSha},${path}`], { env });
      const tree = (await this.run(["write-tree"], { env })).stdout.toString().trim();
      const commit = await this.commitTree(tree, [parent], message.endsWith("\n") ? message : `${message}\n`, author ?? GITHUB_IDENTITY);
      await this.updateBranch(branch, commit, expected);
      return { commit, blobSha };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
