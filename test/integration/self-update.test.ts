/**
 * The standalone self-update against the real test fleet flake: real git, real `nix flake update`,
 * real builds and real profile generations (the generic profile: nix build + nix-env --set).
 */
import { describe, it, expect, afterAll } from "vitest";
import { mkdirSync, readFileSync, writeFileSync, existsSync, realpathSync, symlinkSync, rmSync, utimesSync } from "node:fs";
import { execFileSync, spawnSync } from "node:child_process";
import { join } from "node:path";
import pino from "pino";
import mqtt from "mqtt";
import { FleetRepo } from "../fleet/repo.js";
import { nixEnv } from "../fleet/nix-env.js";
import { selfUpdateHost } from "../fleet/self-update-host.js";
import { runSelfUpdate } from "../../agent/self-update/run.js";
import { parseSelfUpdateConfig, type SelfUpdateConfigInput } from "../../agent/self-update/config.js";
import { readRunRecords } from "../../agent/self-update/runlog.js";
import { readProfile } from "../../agent/profile.js";
import { JobState, Topics } from "../../protocol/index.js";
import { startTestBroker } from "../support/brokers.js";

const HOST = "alpha";
const silent = pino({ level: "silent" });
const roots: string[] = [];
afterAll(() => roots.forEach((r) => rmSync(r, { recursive: true, force: true })));

interface Host {
  repo: FleetRepo;
  dir: string;
  checkout: string;
  stateDir: string;
  profile: string;
  marker: string;
  config(overrides?: Partial<SelfUpdateConfigInput>): ReturnType<typeof parseSelfUpdateConfig>;
}

/** A fleet with one host whose checkout is a clone of origin, already switched to generation 1. */
function setUpHost(): Host {
  const { dir, repo, checkout, profile, baseConfig } = selfUpdateHost("lockstep-selfupdate-", HOST);
  roots.push(dir);
  const stateDir = baseConfig.stateDir;
  const booted = join(dir, "booted-system");
  mkdirSync(booted);
  const marker = join(dir, "rebooted");
  const base: SelfUpdateConfigInput = {
    ...baseConfig,
    health: { ...baseConfig.health, systemState: { argv: ["echo", "running"] } },
    reboot: { argv: ["touch", marker], bootedSystem: booted },
    nextRunArgv: ["echo", "NextElapseUSecRealtime=Sun 2026-11-22 03:17:00 UTC"],
  };
  return {
    repo,
    dir,
    checkout,
    stateDir,
    profile,
    marker,
    config: (overrides = {}) => parseSelfUpdateConfig({ ...base, ...overrides }),
  };
}

const git = (cwd: string, ...args: string[]) => execFileSync("git", args, { cwd, encoding: "utf8" }).trim();

describe("lockstep-agent self-update with real nix", () => {
  it("healthy run: updates the lock, commits it, builds, creates a new generation, records and reports the run", async () => {
    const h = setUpHost();
    const broker = await startTestBroker();
    try {
      const watcher = await mqtt.connectAsync(broker.url, { clientId: "test-watcher", ...(await broker.credentials("viewer", "watcher")) });
      const agent = await broker.credentials("agent", HOST);
      const passwordFile = join(h.dir, "broker-password");
      writeFileSync(passwordFile, `${agent.password}\n`, { mode: 0o600 });
      const states: JobState[] = [];
      watcher.on("message", (_t, payload) => states.push(JobState.parse(JSON.parse(payload.toString()))));
      await watcher.subscribeAsync(new Topics().allJobs(), { qos: 1 });

      const lockBefore = readFileSync(join(h.checkout, "flake.lock"), "utf8");
      const headBefore = git(h.checkout, "rev-parse", "HEAD");
      h.repo.bumpInput("nixpkgs");
      // Nobody confirms the switch here (self-update-magic-rollback.test.ts has the hub's confirmer).
      const record = await runSelfUpdate(h.config({ broker: { url: broker.url, username: agent.username, passwordFile }, magicRollback: false }), { env: nixEnv(), log: silent });

      expect(record.outcome, record.error).toBe("succeeded");
      expect(record.lockChanged).toBe(true);
      expect(readFileSync(join(h.checkout, "flake.lock"), "utf8")).not.toBe(lockBefore);
      expect(git(h.checkout, "rev-parse", "HEAD~1")).toBe(headBefore);
      expect(git(h.checkout, "log", "-1", "--format=%s")).toBe("flake.lock: Update");
      expect(git(h.checkout, "status", "--porcelain")).toBe("");
      expect(record.generationBefore).toBe(1);
      expect(record.generationAfter).toBe(2);
      expect(readProfile(h.profile).generation).toBe(2);
      expect(realpathSync(h.profile)).toBe(record.systemPath);
      expect(readFileSync(record.systemPath!, "utf8")).toContain("nixpkgs=nixpkgs-2");
      expect(record.steps.map((s) => [s.name, s.status])).toEqual([
        ["lock", "ok"], ["health", "ok"], ["update", "ok"], ["build", "ok"], ["switch", "ok"], ["reboot-check", "ok"],
      ]);
      expect(record.reboot).toMatchObject({ needed: false, requested: false });
      expect(existsSync(h.marker)).toBe(false);
      expect(readRunRecords(h.stateDir)).toEqual([record]);
      expect(existsSync(join(h.stateDir, "self-update.lock"))).toBe(false);

      await expect.poll(() => states.map((s) => s.state)).toEqual(["running", "succeeded"]);
      expect(states[1]).toMatchObject({ id: record.id, host: HOST, op: "self-update", generationBefore: 1, generationAfter: 2 });
      await watcher.endAsync();

      // Nothing new upstream: the next run builds the same system and does not switch again.
      const again = await runSelfUpdate(h.config(), { env: nixEnv(), log: silent });
      expect(again.outcome).toBe("succeeded");
      expect(again.lockChanged).toBe(false);
      expect(again.generationAfter).toBe(2);
      expect(again.summary).toBe("system already current");
    } finally {
      await broker.stop();
    }
  });

  it("failed health check aborts before touching anything", async () => {
    const h = setUpHost();
    h.repo.bumpInput("nixpkgs");
    const lockBefore = readFileSync(join(h.checkout, "flake.lock"), "utf8");
    const headBefore = git(h.checkout, "rev-parse", "HEAD");
    const cfg = h.config({
      health: {
        disk: { path: h.dir, maxUsedPercent: 100 },
        systemState: { argv: ["echo", "degraded"], accepted: ["running"] },
        uptime: { uptimeFile: join(h.dir, "uptime"), minSeconds: 600 },
      },
    });
    const record = await runSelfUpdate(cfg, { env: nixEnv(), log: silent });
    expect(record.outcome).toBe("unhealthy");
    expect(record.error).toContain("system is degraded");
    expect(record.steps.map((s) => s.name)).toEqual(["lock", "health"]);
    expect(readFileSync(join(h.checkout, "flake.lock"), "utf8")).toBe(lockBefore);
    expect(git(h.checkout, "rev-parse", "HEAD")).toBe(headBefore);
    expect(readProfile(h.profile).generation).toBe(1);
    expect(existsSync(join(h.stateDir, "self-update-system"))).toBe(false);
    expect(readRunRecords(h.stateDir).map((r) => r.outcome)).toEqual(["unhealthy"]);
  });

  it("failed build leaves the running generation untouched and says why (git-pull mode)", async () => {
    const h = setUpHost();
    const runningBefore = realpathSync(h.profile);
    const broken = h.repo.setBuildFailure(HOST, true);
    const record = await runSelfUpdate(h.config({ mode: "git-pull" }), { env: nixEnv(), log: silent });
    expect(record.outcome).toBe("failed");
    expect(record.commitAfter).toBe(broken);
    expect(record.summary).toBe("build failed; the running generation is untouched");
    expect(record.error).toContain("injected build failure");
    expect(record.steps.map((s) => [s.name, s.status]).at(-1)).toEqual(["build", "failed"]);
    expect(readProfile(h.profile).generation).toBe(1);
    expect(realpathSync(h.profile)).toBe(runningBefore);
  });

  it("clones the checkout when it is missing and a repo URL is configured", async () => {
    const h = setUpHost();
    const fresh = join(h.dir, "fresh-checkout");
    const missing = await runSelfUpdate(h.config({ checkoutDir: fresh, mode: "git-pull" }), { env: nixEnv(), log: silent });
    expect(missing.outcome).toBe("failed");
    expect(missing.error).toContain("set repoUrl");
    const record = await runSelfUpdate(h.config({ checkoutDir: fresh, mode: "git-pull", repoUrl: h.repo.originUrl }), { env: nixEnv(), log: silent });
    expect(record.outcome, record.error).toBe("succeeded");
    expect(record.commitBefore).toBeUndefined();
    expect(record.commitAfter).toBe(h.repo.head());
    expect(record.summary).toBe("system already current"); // same config as generation 1
  });

  it("refuses a second concurrent run, and takes over the lock of a dead run", async () => {
    const h = setUpHost();
    h.repo.bumpInput("tools");
    const cfg = h.config();
    const [a, b] = await Promise.all([runSelfUpdate(cfg, { env: nixEnv(), log: silent }), runSelfUpdate(cfg, { env: nixEnv(), log: silent })]);
    expect([a.outcome, b.outcome].sort()).toEqual(["locked", "succeeded"]);
    const locked = a.outcome === "locked" ? a : b;
    expect(locked.steps.map((s) => s.name)).toEqual(["lock"]);
    expect(locked.error).toContain(`pid ${process.pid}`);
    expect(readProfile(h.profile).generation).toBe(2);

    // A lock left by a process that no longer exists is stale.
    const dead = spawnSync("true");
    writeFileSync(join(h.stateDir, "self-update.lock"), JSON.stringify({ pid: dead.pid, startedAt: new Date().toISOString() }));
    const after = await runSelfUpdate(cfg, { env: nixEnv(), log: silent });
    expect(after.outcome).toBe("succeeded");
    expect(after.steps[0]!.detail).toBe(`took over the stale lock of pid ${dead.pid}`);

    // The agent daemon running a hub job in the same state dir also holds the self-update off...
    const inflight = join(h.stateDir, "inflight-job.json");
    writeFileSync(inflight, JSON.stringify({ id: "job-7", op: "switch", acceptedAt: new Date().toISOString() }));
    const busy = await runSelfUpdate(cfg, { env: nixEnv(), log: silent });
    expect(busy).toMatchObject({ outcome: "locked", error: expect.stringContaining("agent job switch job-7 in progress") });
    expect(existsSync(join(h.stateDir, "self-update.lock"))).toBe(false);
    // ...unless that record is a day old, left by an agent that is gone.
    const old = new Date(Date.now() - 2 * 86_400_000);
    utimesSync(inflight, old, old);
    expect((await runSelfUpdate(cfg, { env: nixEnv(), log: silent })).outcome).toBe("succeeded");
  });

  it("requests a reboot only when the kernel changed and only inside the window", async () => {
    const h = setUpHost();
    // Saturday 03:30 UTC is inside sat 03:00-04:00; 12:00 is not.
    const window = { days: ["sat" as const], start: "03:00", end: "04:00", timeZone: "UTC" };
    const inside = () => new Date("2026-11-21T03:30:00Z");
    const outside = () => new Date("2026-11-21T12:00:00Z");
    const reboot = (bootedSystem: string) => ({ argv: ["touch", h.marker], bootedSystem, window });

    // Booted system has no kernel, the new one has none either: nothing to reboot for, even inside the window.
    const noChange = await runSelfUpdate(h.config({ reboot: reboot(join(h.dir, "booted-system")) }), { env: nixEnv(), log: silent, now: inside });
    expect(noChange.reboot).toMatchObject({ needed: false, requested: false });
    expect(existsSync(h.marker)).toBe(false);

    // A booted kernel that the new system does not have: a reboot is needed.
    const oldBoot = join(h.dir, "old-boot");
    mkdirSync(oldBoot);
    writeFileSync(join(h.dir, "bzImage-old"), "kernel");
    symlinkSync(join(h.dir, "bzImage-old"), join(oldBoot, "kernel"));

    const deferred = await runSelfUpdate(h.config({ reboot: reboot(oldBoot) }), { env: nixEnv(), log: silent, now: outside });
    expect(deferred.outcome).toBe("succeeded");
    expect(deferred.reboot).toMatchObject({ needed: true, changed: ["kernel"], requested: false });
    expect(deferred.summary).toContain("reboot pending");
    expect(existsSync(h.marker)).toBe(false);

    const rebooted = await runSelfUpdate(h.config({ reboot: reboot(oldBoot) }), { env: nixEnv(), log: silent, now: inside });
    expect(rebooted.reboot).toMatchObject({ needed: true, requested: true });
    expect(rebooted.summary).toContain("rebooting");
    expect(rebooted.steps.slice(-2).map((s) => [s.name, s.status])).toEqual([["reboot-check", "ok"], ["reboot", "ok"]]);
    expect(existsSync(h.marker)).toBe(true);

    // A reboot command that fails is reported, not hidden.
    const failing = await runSelfUpdate(h.config({ reboot: { ...reboot(oldBoot), argv: ["false"] } }), { env: nixEnv(), log: silent, now: inside });
    expect(failing.reboot?.requested).toBe(false);
    expect(failing.summary).toContain("the reboot command failed");
  });
});
