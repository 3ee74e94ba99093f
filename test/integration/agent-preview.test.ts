/**
 * The preview job's engine with real git and real Nix: a lock update previewed before it is
 * merged, on versioned test hosts (test/fleet/repo.ts), without touching the live checkout or the
 * running system.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FleetRepo } from "../fleet/repo.js";
import { nixEnv } from "../fleet/nix-env.js";
import { createPreviewFixture, git, PREVIEW_HOSTS, systemAttr } from "../fleet/preview-fixture.js";
import { PreviewCancelled, PreviewRunner, type PreviewContext, type PreviewTarget } from "../../agent/preview.js";
import { readProfile } from "../../agent/profile.js";
import { PreviewArgs, REBOOT_COMPONENTS, HostPreview } from "../../protocol/index.js";

const HOSTS = [...PREVIEW_HOSTS];
let root: string;
let repo: FleetRepo;
let checkout: string;
let profile: string;
let update: string;
let current: Record<string, string> = {};
const attr = systemAttr;

/** What "the live checkout and the running system" look like: none of it may change. */
function liveState() {
  return {
    head: git(["rev-parse", "HEAD"], checkout),
    branch: git(["symbolic-ref", "HEAD"], checkout),
    index: createHash("sha256").update(readFileSync(join(checkout, ".git", "index"))).digest("hex"),
    status: git(["status", "--porcelain"], checkout),
    profile: readProfile(profile),
    system: realpathSync(profile),
    worktrees: git(["worktree", "list", "--porcelain"], checkout),
    refs: git(["for-each-ref", "--format=%(refname)"], checkout),
  };
}

function ctx(over: Partial<PreviewContext> = {}): PreviewContext {
  return {
    checkoutDir: checkout,
    branch: "main",
    workRoot: join(root, "state", "previews"),
    env: nixEnv(),
    stepTimeoutMs: 120_000,
    builtOn: "alpha",
    rebootComponents: REBOOT_COMPONENTS,
    ...over,
  };
}

const target = (host: string, over: Partial<PreviewTarget> = {}): PreviewTarget => ({ host, attr: attr(host), currentSystem: current[host], dryActivate: host === "alpha", ...over });

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "lockstep-preview-"));
  ({ repo, checkout, profile, current, update } = createPreviewFixture(root, 7));
}, 180_000);

describe("preview (real git, real Nix)", () => {
  it("knows before the merge: alpha bumps hello and its kernel, beta is not affected, gamma does not build; nothing live changes", async () => {
    const before = liveState();
    const lines: string[] = [];
    const results = await new PreviewRunner(ctx({ onLine: (_s, t) => lines.push(t) })).run(PreviewArgs.parse({ pr: 7, headSha: update }), true, HOSTS.map((h) => target(h)));
    const by = Object.fromEntries(results.map((r) => [r.host, HostPreview.parse(r)]));

    expect(by.alpha).toMatchObject({ outcome: "affected", affected: true, builds: true, headSha: update, builtOn: "alpha", currentSystem: current.alpha });
    const hello = by.alpha!.packages.find((p) => p.name === "hello");
    expect(hello).toMatchObject({ old: ["2.12"], new: ["2.13"] });
    expect(hello!.sizeDeltaBytes).toBeGreaterThan(50_000);
    expect(by.alpha!.packages.find((p) => p.name === "linux")).toMatchObject({ old: ["6.6.58"], new: ["6.6.60"] });
    expect(by.alpha!.reboot).toEqual({ needed: true, changed: ["kernel", "initrd", "kernel-modules"] });
    expect(by.alpha!.units?.restart).toEqual(["coreutils-9.4.service", "hello-2.13.service"]);
    expect(by.alpha!.closureSizeAfter! - by.alpha!.closureSizeBefore!).toBeGreaterThan(50_000);
    expect(by.alpha!.dryRun!.toBuild).toBeGreaterThan(0); // at least alpha's new system itself

    expect(by.beta).toMatchObject({ outcome: "not-affected", affected: false, newSystem: current.beta });

    expect(by.gamma).toMatchObject({ outcome: "does-not-build", builds: false });
    expect(by.gamma!.error).toContain("openssl-3.0.16 does not build");

    const after = liveState();
    expect(after).toEqual(before);
    expect(readdirSync(join(root, "state", "previews"))).toEqual([]);
    expect(lines.some((l) => l.includes("fetching PR #7"))).toBe(true);
  }, 240_000);

  it("evaluates without building unless asked, and still tells affected from not affected", async () => {
    const results = await new PreviewRunner(ctx()).run(PreviewArgs.parse({ pr: 7, headSha: update }), false, [target("alpha"), target("beta")]);
    expect(results[0]).toMatchObject({ host: "alpha", outcome: "affected", builds: null, packages: [] });
    expect(results[1]).toMatchObject({ host: "beta", outcome: "not-affected" });
  }, 120_000);

  it("a builder previews another (offline) host's configuration and says where it was built", async () => {
    const [r] = await new PreviewRunner(ctx({ builtOn: "builder-1" })).run(PreviewArgs.parse({ pr: 7, headSha: update }), true, [target("alpha", { dryActivate: false })]);
    expect(r).toMatchObject({ host: "alpha", builtOn: "builder-1", outcome: "affected", builds: true, units: null });
    expect(r!.packages.map((p) => p.name)).toContain("hello");
  }, 120_000);

  it("refuses a PR that changes more than flake.lock", async () => {
    const sha = repo.commit({ "hosts/beta.nix": "{ fail = false; message = \"sneaky\"; }\n" }, "not a lock update", "sneaky");
    git(["update-ref", "refs/pull/8/head", sha], repo.origin);
    const [r] = await new PreviewRunner(ctx()).run(PreviewArgs.parse({ pr: 8, headSha: sha }), true, [target("beta")]);
    expect(r).toMatchObject({ outcome: "refused", affected: null });
    expect(r!.summary).toContain("hosts/beta.nix");
    const allowed = await new PreviewRunner(ctx()).run(PreviewArgs.parse({ pr: 8, headSha: sha, allowMoreThanLock: true }), false, [target("beta")]);
    expect(allowed[0]).toMatchObject({ outcome: "affected" });
  }, 120_000);

  it("previews exactly the head it was asked for, even when the PR moved on since", async () => {
    repo.bumpPackages("nixpkgs", { coreutils: { version: "9.5" } });
    const moved = repo.lockUpdateBranch().sha;
    git(["update-ref", "refs/pull/7/head", moved], repo.origin);
    const [old] = await new PreviewRunner(ctx()).run(PreviewArgs.parse({ pr: 7, headSha: update }), false, [target("beta")]);
    const [now] = await new PreviewRunner(ctx()).run(PreviewArgs.parse({ pr: 7, headSha: moved }), false, [target("beta")]);
    expect(old).toMatchObject({ headSha: update, outcome: "not-affected" });
    expect(now).toMatchObject({ headSha: moved, outcome: "affected" });
    git(["update-ref", "refs/pull/7/head", update], repo.origin);
  }, 120_000);

  it("a head that is nowhere at origin is a failed preview with a reason", async () => {
    const [r] = await new PreviewRunner(ctx()).run(PreviewArgs.parse({ pr: 9, headSha: "0123456789abcdef0123456789abcdef01234567" }), false, [target("beta")]);
    expect(r).toMatchObject({ outcome: "failed" });
    expect(r!.summary).toContain("is not at origin");
  }, 60_000);

  it("cancelling mid-build removes the worktree and the ref", async () => {
    const slow = repo.setBuildDelay("beta", 30, "update_flake_lock_action");
    git(["update-ref", "refs/pull/10/head", slow], repo.origin);
    const ac = new AbortController();
    const run = new PreviewRunner(ctx({ signal: ac.signal, onLine: (_s, t) => void (t.startsWith("beta: building") && setTimeout(() => ac.abort(), 1500)) })).run(
      PreviewArgs.parse({ pr: 10, headSha: slow, allowMoreThanLock: true }),
      true,
      [target("beta")],
    );
    await expect(run).rejects.toBeInstanceOf(PreviewCancelled);
    expect(readdirSync(join(root, "state", "previews"))).toEqual([]);
    expect(git(["worktree", "list", "--porcelain"], checkout).match(/^worktree /gm)).toHaveLength(1);
    expect(spawnSync("git", ["rev-parse", "--verify", "-q", "refs/lockstep/preview/10"], { cwd: checkout }).status).not.toBe(0);
    expect(existsSync(checkout)).toBe(true);
  }, 120_000);
});
