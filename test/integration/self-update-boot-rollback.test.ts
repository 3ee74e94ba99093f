/**
 * Boot rollback with the test fleet's profile (real nix builds, real nix-env generations) and
 * stand-ins for what only a real boot has: the booted system (a symlink the test points at the
 * generation "booted"), systemd's state (a file the test writes) and the reboot (a script that
 * counts its calls). A self-update whose kernel changed reboots and leaves its marker; a failing
 * check after that boot makes the previous generation the default and reboots, once; failing again
 * it stops (no second reboot, no loop); a healthy boot keeps the new generation.
 */
import { afterAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, realpathSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import mqtt from "mqtt";
import { nixEnv } from "../fleet/nix-env.js";
import { selfUpdateHost } from "../fleet/self-update-host.js";
import { runSelfUpdate } from "../../agent/self-update/run.js";
import { BOOT_PENDING_FILE, readBootPending, runBootCheck } from "../../agent/self-update/boot-check.js";
import { parseSelfUpdateConfig, type SelfUpdateConfigInput } from "../../agent/self-update/config.js";
import { readRunRecords } from "../../agent/self-update/runlog.js";
import { listGenerations, readProfile } from "../../agent/profile.js";
import { JobState, Topics } from "../../protocol/index.js";
import { startTestBroker } from "../support/brokers.js";

const HOST = "alpha";
const silent = pino({ level: "silent" });
const roots: string[] = [];
afterAll(() => roots.forEach((r) => rmSync(r, { recursive: true, force: true })));

/** One NixOS-like host (kernel in its system) on generation 1, with its stand-ins. */
function setUpHost() {
  const { dir, repo, checkout, profile, baseConfig } = selfUpdateHost("lockstep-boot-rollback-", HOST, { kernel: true, packages: ["hello"] });
  roots.push(dir);
  const booted = join(dir, "booted-system");
  const bootIdFile = join(dir, "boot_id");
  let boots = 0;
  /** "Boot" a generation: /run/booted-system points at its system, and the boot has a new id. */
  const boot = (generation: number) => {
    const g = listGenerations(profile).find((x) => x.generation === generation);
    if (!g) throw new Error(`no generation ${generation}`);
    if (existsSync(booted)) unlinkSync(booted);
    symlinkSync(g.path, booted);
    writeFileSync(bootIdFile, `boot-${++boots}\n`);
  };
  boot(1);
  const stateFile = join(dir, "system-state");
  const setSystemState = (s: string) => writeFileSync(stateFile, `${s}\n`);
  setSystemState("running");
  const reboots = join(dir, "reboots");
  const rebootScript = join(dir, "reboot");
  writeFileSync(rebootScript, `#!/bin/sh\necho reboot >> '${reboots}'\n`, { mode: 0o755 });
  const rebootCount = () => (existsSync(reboots) ? readFileSync(reboots, "utf8").split("\n").filter(Boolean).length : 0);
  const stateDir = baseConfig.stateDir;
  const config = (extra: Partial<SelfUpdateConfigInput> = {}) =>
    parseSelfUpdateConfig({
      ...baseConfig,
      health: { ...baseConfig.health, systemState: { argv: ["cat", stateFile] }, failedUnits: { enabled: false } },
      reboot: { argv: [rebootScript], bootedSystem: booted, bootIdFile, window: null },
      bootConfirmSeconds: 3,
      bootCheck: { pollSeconds: 0.2 },
      nextRunArgv: null,
      ...extra,
    });
  return { dir, repo, checkout, profile, stateDir, boot, setSystemState, rebootCount, config };
}

/** A self-update of a kernel change: generation 2, a reboot requested, the boot marker left. */
async function updateKernel(h: ReturnType<typeof setUpHost>, extra: Partial<SelfUpdateConfigInput> = {}) {
  h.repo.bumpPackages("nixpkgs", { linux: { version: "6.6.59" } });
  const run = await runSelfUpdate(h.config(extra), { env: nixEnv(), log: silent });
  expect(run.outcome, run.error).toBe("succeeded");
  expect(run.reboot).toMatchObject({ needed: true, requested: true });
  expect(run.generationAfter).toBe(2);
  expect(h.rebootCount()).toBe(1);
  expect(readBootPending(h.stateDir)).toMatchObject({ runId: run.id, generation: 2, previousGeneration: 1, systemPath: run.systemPath });
  return run;
}

describe("boot rollback after a self-update's reboot", () => {
  it("a failing check after the boot makes the previous generation the default and reboots once; failing again, it stops", async () => {
    const h = setUpHost();
    const broker = await startTestBroker();
    try {
      const agent = await broker.credentials("agent", HOST);
      const passwordFile = join(h.dir, "broker-password");
      writeFileSync(passwordFile, `${agent.password}\n`, { mode: 0o600 });
      const watcher = await mqtt.connectAsync(broker.url, { clientId: "boot-watcher", ...(await broker.credentials("viewer", "watcher")) });
      const jobs: JobState[] = [];
      watcher.on("message", (_t, p) => jobs.push(JobState.parse(JSON.parse(p.toString()))));
      await watcher.subscribeAsync(new Topics().allJobs(), { qos: 1 });
      // Nobody confirms the switch here (self-update-magic-rollback.test.ts has the hub's confirmer).
      const withBroker = { broker: { url: broker.url, username: agent.username, passwordFile }, magicRollback: false };

      await updateKernel(h, withBroker);
      // The host comes up on generation 2, and the system is degraded.
      h.boot(2);
      h.setSystemState("degraded");
      const first = (await runBootCheck(h.config(withBroker), { env: nixEnv(), log: silent }))!;
      expect(first.outcome, first.summary).toBe("rolled-back");
      expect(first.summary).toBe("generation 2 failed its boot check (system is degraded (accepted: running)): generation 1 is the boot default again; rebooting into it");
      expect(first.steps.map((s) => [s.name, s.status])).toEqual([["boot-check", "failed"], ["boot-rollback", "ok"], ["reboot", "ok"]]);
      expect(readProfile(h.profile).generation).toBe(1);
      expect(h.rebootCount()).toBe(2);
      expect(readBootPending(h.stateDir)?.rolledBack?.reason).toBe("system is degraded (accepted: running)");

      // Back on generation 1, and still degraded: stop and report, no second rollback or reboot.
      h.boot(1);
      const second = (await runBootCheck(h.config(withBroker), { env: nixEnv(), log: silent }))!;
      expect(second.outcome).toBe("failed");
      expect(second.summary).toBe("unhealthy again after rolling back from generation 2 to generation 1 (system is degraded (accepted: running)): stopped, not rebooting a second time; fix the host by hand");
      expect(second.steps.map((s) => s.name)).toEqual(["boot-check"]);
      expect(h.rebootCount()).toBe(2);
      expect(readProfile(h.profile).generation).toBe(1);
      expect(existsSync(join(h.stateDir, BOOT_PENDING_FILE))).toBe(false);
      // Every later boot has nothing to check: never a loop.
      expect(await runBootCheck(h.config(), { env: nixEnv(), log: silent })).toBeUndefined();
      expect(h.rebootCount()).toBe(2);

      // The run log holds the update and both boot checks; the hub got each as a job.
      const log = readRunRecords(h.stateDir);
      expect(log.map((r) => [r.kind ?? "self-update", r.outcome])).toEqual([["self-update", "succeeded"], ["boot-check", "rolled-back"], ["boot-check", "failed"]]);
      expect(log[1]).toMatchObject({ generationBefore: 2, generationAfter: 1 });
      await expect.poll(() => jobs.filter((j) => j.op === "boot-check").map((j) => [j.id, j.state])).toEqual([[first.id, "failed"], [second.id, "failed"]]);
      expect(jobs.find((j) => j.id === first.id)!.summary).toBe(first.summary);
      await watcher.endAsync();
    } finally {
      await broker.stop();
    }
  }, 300_000);

  it("the new generation healthy after its boot: kept, the marker cleared, no reboot", async () => {
    const h = setUpHost();
    await updateKernel(h);
    h.boot(2);
    // Still starting when the check begins (systemd prints "starting" once, then "running"): it waits.
    const flag = join(h.dir, "asked-once");
    const systemctl = join(h.dir, "is-system-running");
    writeFileSync(systemctl, `#!/bin/sh
if [ -e '${flag}' ]; then echo running; else touch '${flag}'; echo starting; fi
`, { mode: 0o755 });
    const check = (await runBootCheck(h.config({ health: { ...h.config().health, systemState: { enabled: true, argv: [systemctl], accepted: ["running"] } } }), { env: nixEnv(), log: silent }))!;
    expect(existsSync(flag)).toBe(true);
    expect(check.outcome, check.summary).toBe("succeeded");
    expect(check.summary).toBe("generation 2 booted healthy");
    expect(check.health.map((r) => [r.check, r.ok])).toEqual([["system-state", true], ["test", true], ["test", true]]);
    expect(readProfile(h.profile).generation).toBe(2);
    expect(h.rebootCount()).toBe(1);
    expect(readBootPending(h.stateDir)).toBeUndefined();
  }, 300_000);

  it("a host test script that fails after the boot, or a system still starting at bootConfirmSeconds, rolls back", async () => {
    const h = setUpHost();
    await updateKernel(h);
    h.boot(2);
    const script = join(h.checkout, "tests", HOST, "20-service.sh");
    writeFileSync(script, "#!/bin/sh\necho 'web service did not come up' >&2\nexit 1\n", { mode: 0o755 });
    const check = (await runBootCheck(h.config(), { env: nixEnv(), log: silent }))!;
    expect(check.outcome).toBe("rolled-back");
    expect(check.summary).toMatch(/^generation 2 failed its boot check \(alpha\/20-service\.sh failed: .*web service did not come up\): generation 1 is the boot default again/);
    expect(readProfile(h.profile).generation).toBe(1);
    expect(realpathSync(h.profile)).toBe(listGenerations(h.profile).find((g) => g.generation === 1)!.path);

    const h2 = setUpHost();
    await updateKernel(h2);
    h2.boot(2);
    h2.setSystemState("starting");
    const slow = (await runBootCheck(h2.config(), { env: nixEnv(), log: silent }))!;
    expect(slow.outcome).toBe("rolled-back");
    expect(slow.summary).toMatch(/\(system is starting after 3 s \(accepted: running\)\)/);
  }, 300_000);
});
