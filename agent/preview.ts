/**
 * The `preview` job: what would merging PR <n> at head <sha> do to this host (and, on a `builder`
 * host, to others)? It fetches the PR head into a ref of its own, evaluates it in a separate
 * `git worktree` (never the live checkout, never the configured branch, never a switch), compares
 * the result with the running system, optionally builds it and reports the package-level
 * difference, closure size, reboot need and unit changes. The worktree and the ref are removed
 * afterwards, also after a failure, timeout or cancel.
 *
 * A build or evaluation failure is a result ("does not build" with the error's last lines), not a
 * crash; so is a refusal (the PR changes more than flake.lock).
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, realpathSync, rmSync } from "node:fs";
import { join } from "node:path";
import { assertCommitSha } from "./os-profiles.js";
import { runProcess, type OutputStream } from "./process.js";
import { rebootNeeded } from "./self-update/system.js";
import {
  lastLines,
  parseDiffClosures,
  parseDryActivate,
  parseDryRun,
  type HostPreview,
  type OsKind,
  type PreviewArgs,
} from "../protocol/index.js";

/** One host whose configuration this preview evaluates. */
export interface PreviewTarget {
  host: string;
  /** Flake attribute of the host's top-level system (see previewAttr). */
  attr: string;
  /** The store path the host runs now, if known. */
  currentSystem?: string;
  /** The booted system for the reboot rule (NixOS: /run/booted-system); default currentSystem. */
  bootedSystem?: string;
  /** Ask the new system's switch-to-configuration what it would do (only for this very host). */
  dryActivate: boolean;
}

export interface PreviewContext {
  /** The live checkout: only its git directory is used (fetch into our own ref, worktree add). */
  checkoutDir: string;
  /** The configured branch: the PR's changes are measured from its merge base with it. */
  branch: string;
  /** Where preview worktrees live (emptied at the start of every preview). */
  workRoot: string;
  env: NodeJS.ProcessEnv;
  /** Limit for each git/nix step. */
  stepTimeoutMs: number;
  signal?: AbortSignal;
  onLine?: (stream: OutputStream | "info", text: string) => void;
  /** This host's id: where the previews were evaluated. */
  builtOn: string;
  rebootComponents: readonly string[];
  now?: () => Date;
}

/** The flake attribute whose out path is a host's system, per OS kind. */
export function previewAttr(kind: OsKind, flakeAttr: string): string {
  switch (kind) {
    case "generic":
      return flakeAttr;
    case "nixos":
      return `nixosConfigurations.${flakeAttr}.config.system.build.toplevel`;
    case "darwin":
      return `darwinConfigurations.${flakeAttr}.system`;
    case "home-manager":
      return `homeConfigurations."${flakeAttr}".activationPackage`;
  }
}

export class PreviewCancelled extends Error {
  override name = "PreviewCancelled";
}

interface StepResult {
  ok: boolean;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

const MAX_CAPTURE_LINES = 5000;

export class PreviewRunner {
  private readonly now: () => Date;

  constructor(private readonly ctx: PreviewContext) {
    this.now = ctx.now ?? (() => new Date());
  }

  private async step(argv: string[], cwd: string): Promise<StepResult> {
    if (this.ctx.signal?.aborted) throw new PreviewCancelled("preview cancelled");
    const out: string[] = [];
    const err: string[] = [];
    const p = runProcess(argv, {
      cwd,
      env: this.ctx.env,
      timeoutMs: this.ctx.stepTimeoutMs,
      onLine: (stream, text) => {
        const into = stream === "stdout" ? out : err;
        if (into.length < MAX_CAPTURE_LINES) into.push(text);
        if (stream === "stderr") this.ctx.onLine?.(stream, text);
      },
    });
    const abort = () => p.cancel();
    this.ctx.signal?.addEventListener("abort", abort, { once: true });
    const r = await p.done;
    this.ctx.signal?.removeEventListener("abort", abort);
    if (r.cancelled) throw new PreviewCancelled("preview cancelled");
    return { ok: r.exitCode === 0, stdout: out.join("\n"), stderr: r.spawnError ? `${err.join("\n")}\n${r.spawnError}` : err.join("\n"), timedOut: r.timedOut };
  }

  private git(args: string[], cwd = this.ctx.checkoutDir): Promise<StepResult> {
    return this.step(["git", ...args], cwd);
  }

  private info(text: string): void {
    this.ctx.onLine?.("info", text);
  }

  /** Remove worktrees an earlier preview left behind (a crash, a kill -9). */
  private async clearLeftovers(): Promise<void> {
    if (existsSync(this.ctx.workRoot)) {
      for (const name of readdirSync(this.ctx.workRoot)) rmSync(join(this.ctx.workRoot, name), { recursive: true, force: true });
    }
    mkdirSync(this.ctx.workRoot, { recursive: true });
    await this.git(["worktree", "prune"]);
  }

  /**
   * Preview `args.headSha` of PR `args.pr` for each target. Always returns one HostPreview per
   * target unless cancelled (PreviewCancelled is thrown after cleaning up).
   */
  async run(args: PreviewArgs, build: boolean, targets: PreviewTarget[]): Promise<HostPreview[]> {
    const sha = assertCommitSha(args.headSha);
    const startedAt = this.now().toISOString();
    const ref = `refs/lockstep/preview/${args.pr}`;
    const worktree = join(this.ctx.workRoot, `pr-${args.pr}-${randomBytes(4).toString("hex")}`);
    const base = { pr: args.pr, headSha: sha, startedAt, builtOn: this.ctx.builtOn };
    const forAll = (outcome: "refused" | "failed", summary: string, error?: string): HostPreview[] =>
      targets.map((t) => ({
        ...base,
        host: t.host,
        outcome,
        summary,
        affected: null,
        builds: null,
        ...(error ? { error } : {}),
        packages: [],
        reboot: null,
        units: null,
        finishedAt: this.now().toISOString(),
      }));
    await this.clearLeftovers();
    try {
      const fetched = await this.fetchHead(args.pr, sha, ref);
      if (!fetched.ok) return forAll("failed", fetched.reason, fetched.error);
      if (!args.allowMoreThanLock) {
        const scope = await this.changedFiles(sha);
        if (!scope.ok) return forAll("refused", scope.reason);
      }
      const add = await this.git(["worktree", "add", "--detach", worktree, sha]);
      if (!add.ok) return forAll("failed", "could not create the preview worktree", lastLines(add.stderr));
      const results: HostPreview[] = [];
      for (const t of targets) results.push(await this.previewHost(t, worktree, build, base));
      return results;
    } finally {
      await this.cleanup(worktree, ref);
    }
  }

  private async cleanup(worktree: string, ref: string): Promise<void> {
    // Cleanup must run even when cancelled: no signal here.
    const quiet = (a: string[]) =>
      new Promise<void>((resolve) => runProcess(["git", ...a], { cwd: this.ctx.checkoutDir, env: this.ctx.env, timeoutMs: 60_000 }).done.then(() => resolve()));
    if (existsSync(worktree)) await quiet(["worktree", "remove", "--force", worktree]);
    rmSync(worktree, { recursive: true, force: true });
    await quiet(["worktree", "prune"]);
    await quiet(["update-ref", "-d", ref]);
  }

  /** The PR head into our own ref: GitHub's refs/pull/<n>/head, else the commit itself. */
  private async fetchHead(pr: number, sha: string, ref: string): Promise<{ ok: true } | { ok: false; reason: string; error?: string }> {
    const branchSpec = `+refs/heads/${this.ctx.branch}:refs/remotes/origin/${this.ctx.branch}`;
    this.info(`fetching PR #${pr} head ${sha.slice(0, 12)}`);
    const byRef = await this.git(["fetch", "--no-tags", "origin", `+refs/pull/${pr}/head:${ref}`, branchSpec]);
    if (!(await this.git(["cat-file", "-e", `${sha}^{commit}`])).ok) {
      const bySha = await this.git(["fetch", "--no-tags", "origin", sha, branchSpec]);
      if (!(await this.git(["cat-file", "-e", `${sha}^{commit}`])).ok) {
        return { ok: false, reason: `PR #${pr} head ${sha.slice(0, 12)} is not at origin (did the PR move on?)`, error: lastLines(`${byRef.stderr}\n${bySha.stderr}`, 6) };
      }
    }
    return { ok: true };
  }

  /** Only flake.lock may change between the branch and the PR head (measured from their merge base). */
  private async changedFiles(sha: string): Promise<{ ok: true } | { ok: false; reason: string }> {
    const mb = await this.git(["merge-base", `refs/remotes/origin/${this.ctx.branch}`, sha]);
    if (!mb.ok) return { ok: false, reason: `PR head shares no history with ${this.ctx.branch}: not previewed` };
    const diff = await this.git(["diff", "--name-only", mb.stdout.trim(), sha]);
    if (!diff.ok) return { ok: false, reason: "could not list the PR's changed files" };
    const files = diff.stdout.split("\n").filter(Boolean);
    const others = files.filter((f) => f !== "flake.lock");
    if (others.length > 0) {
      const shown = others.slice(0, 5).join(", ") + (others.length > 5 ? ` and ${others.length - 5} more` : "");
      return { ok: false, reason: `the PR changes more than flake.lock (${shown}): not previewed unless the hub allows it` };
    }
    return { ok: true };
  }

  private async previewHost(t: PreviewTarget, worktree: string, build: boolean, base: Pick<HostPreview, "pr" | "headSha" | "startedAt" | "builtOn">): Promise<HostPreview> {
    const installable = `${worktree}#${t.attr}`;
    const done = (p: Omit<HostPreview, "pr" | "headSha" | "startedAt" | "builtOn" | "host" | "finishedAt" | "packages" | "reboot" | "units"> & Partial<HostPreview>): HostPreview => ({
      ...base,
      host: t.host,
      packages: [],
      reboot: null,
      units: null,
      ...(t.currentSystem ? { currentSystem: t.currentSystem } : {}),
      ...p,
      finishedAt: this.now().toISOString(),
    });
    this.info(`${t.host}: evaluating ${t.attr}`);
    const ev = await this.step(["nix", "eval", "--raw", `${installable}.outPath`], worktree);
    if (!ev.ok) {
      return done({ outcome: "does-not-build", summary: ev.timedOut ? "evaluation timed out" : "does not evaluate", affected: null, builds: false, error: lastLines(ev.stderr) });
    }
    const newSystem = ev.stdout.trim();
    if (t.currentSystem && newSystem === t.currentSystem) {
      return done({ outcome: "not-affected", summary: "not affected: the update evaluates to the running system", affected: false, builds: null, newSystem });
    }
    const dry = await this.step(["nix", "build", "--dry-run", installable], worktree);
    const dryRun = parseDryRun(dry.stderr);
    if (!build) {
      return done({ outcome: "affected", summary: `affected; not built (${dryRun.toBuild} to build, ${dryRun.toFetch} to fetch)`, affected: t.currentSystem ? true : null, builds: null, newSystem, dryRun });
    }
    this.info(`${t.host}: building ${newSystem}`);
    const b = await this.step(["nix", "build", "--no-link", installable], worktree);
    if (!b.ok) {
      return done({ outcome: "does-not-build", summary: b.timedOut ? "build timed out" : "does not build", affected: t.currentSystem ? true : null, builds: false, error: lastLines(b.stderr), newSystem, dryRun });
    }
    const facts = await this.compare(t, newSystem);
    const parts = [`${facts.packages.length} package change${facts.packages.length === 1 ? "" : "s"}`];
    if (facts.reboot?.needed) parts.push("reboot needed");
    return done({ outcome: "affected", summary: `affected; builds; ${parts.join("; ")}`, affected: t.currentSystem ? true : null, builds: true, newSystem, dryRun, ...facts });
  }

  /** What changes between the running and the built system: packages, sizes, reboot, units. */
  private async compare(t: PreviewTarget, newSystem: string): Promise<Pick<HostPreview, "packages" | "reboot" | "units"> & Partial<HostPreview>> {
    const current = t.currentSystem && existsSync(t.currentSystem) ? t.currentSystem : undefined;
    const facts: Pick<HostPreview, "packages" | "reboot" | "units"> & Partial<HostPreview> = { packages: [], reboot: null, units: null };
    const sizes = await this.closureSizes(current ? [current, newSystem] : [newSystem]);
    if (sizes.has(newSystem)) facts.closureSizeAfter = sizes.get(newSystem)!;
    if (current && sizes.has(current)) facts.closureSizeBefore = sizes.get(current)!;
    if (current) {
      const dc = await this.step(["nix", "store", "diff-closures", current, newSystem], this.ctx.workRoot);
      if (dc.ok) facts.packages = parseDiffClosures(dc.stdout).slice(0, 2000);
      const booted = t.bootedSystem ? realpathOr(t.bootedSystem) : current;
      if (booted) facts.reboot = await rebootNeeded(booted, newSystem, this.ctx.rebootComponents);
    }
    const stc = join(newSystem, "bin", "switch-to-configuration");
    if (t.dryActivate && existsSync(stc)) {
      const da = await this.step([stc, "dry-activate"], this.ctx.workRoot);
      if (da.ok) facts.units = parseDryActivate(`${da.stdout}\n${da.stderr}`);
    }
    return facts;
  }

  private async closureSizes(paths: string[]): Promise<Map<string, number>> {
    const r = await this.step(["nix", "path-info", "--json", "-S", ...paths], this.ctx.workRoot);
    const sizes = new Map<string, number>();
    if (!r.ok) return sizes;
    try {
      const parsed: unknown = JSON.parse(r.stdout);
      if (Array.isArray(parsed)) {
        for (const e of parsed as Array<{ path?: unknown; closureSize?: unknown }>) {
          if (typeof e.path === "string" && typeof e.closureSize === "number") sizes.set(e.path, e.closureSize);
        }
      }
    } catch {
      // Sizes are optional facts: a Nix that prints another shape just leaves them out.
    }
    return sizes;
  }
}

function realpathOr(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}
