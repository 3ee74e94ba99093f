/**
 * Boot rollback for a switch the agent daemon ran (a rollout's) that needs a reboot, with the test
 * fleet's profile (real nix builds, real nix-env generations, a real agent process) and stand-ins
 * for what only a real boot has: the booted system (a symlink the test points at the generation
 * "booted"), the boot id (a file), systemd's state (a file) and the reboot (a script counting its
 * calls). The switch says a reboot is needed and leaves the marker; an agent restart in the same
 * boot checks nothing; the first start after booting the new generation finds it degraded, makes
 * the previous generation the boot default and reboots, once; unhealthy again, it stops and reports
 * (no second reboot, no loop). Each check is a job on the hub and a run-log record.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestBroker, type TestBroker } from "../support/brokers.js";
import { TestFleet } from "../fleet/fleet.js";
import { readBootPending } from "../../agent/self-update/boot-check.js";
import { readRunRecords } from "../../agent/self-update/runlog.js";
import type { JobState } from "../../protocol/index.js";

const HOST = "kernel";
const ROLLOUT = "r-kernel-1";

describe("boot rollback after a rollout's switch that needs a reboot (real agent, real Nix)", () => {
  let broker: TestBroker;
  let fleet: TestFleet;
  let root: string;
  const files = { booted: "", bootId: "", systemState: "", reboots: "", reboot: "" };
  let boots = 0;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lockstep-agent-boot-rollback-"));
    for (const k of Object.keys(files) as Array<keyof typeof files>) files[k] = join(root, k);
    writeFileSync(files.reboot, `#!/bin/sh\necho reboot >> '${files.reboots}'\n`, { mode: 0o755 });
    writeFileSync(files.bootId, "boot-0\n");
    writeFileSync(files.systemState, "running\n");
    broker = await startTestBroker({ kind: "aedes" });
    fleet = await TestFleet.create({
      root,
      hosts: [HOST],
      broker,
      startAgents: false,
      hostOptions: {
        [HOST]: {
          extraConfig: {
            magicRollback: false, // confirmations: agent-magic-rollback.test.ts
            bootCheck: { enabled: true, bootedSystem: files.booted, bootIdFile: files.bootId, bootConfirmSeconds: 3, pollSeconds: 0.2, systemState: { argv: ["cat", files.systemState] }, rebootArgv: [files.reboot] },
          },
        },
      },
    });
    fleet.repo.setHostModule(HOST, { kernel: true, packages: ["hello"] });
    await fleet.startAgent(HOST, 60_000);
    await fleet.bootstrap(); // generation 1
  }, 300_000);

  afterAll(async () => {
    await fleet?.stop();
    await broker?.stop();
    if (root && !process.env.LOCKSTEP_KEEP_TEST_DIRS) rmSync(root, { recursive: true, force: true });
  });

  const stateDir = () => fleet.paths(HOST).stateDir;
  const rebootCount = () => (existsSync(files.reboots) ? readFileSync(files.reboots, "utf8").split("\n").filter(Boolean).length : 0);
  const bootChecks = () => fleet.allJobs(HOST).filter((j) => j.op === "boot-check");
  /** The host "boots" a generation: the booted system is its, the boot has a new id, the agent starts. */
  async function bootInto(generation: number): Promise<void> {
    await fleet.stopAgent(HOST);
    const g = fleet.generations(HOST).find((x) => x.generation === generation);
    if (!g) throw new Error(`no generation ${generation}`);
    if (existsSync(files.booted)) unlinkSync(files.booted);
    symlinkSync(g.path, files.booted);
    writeFileSync(files.bootId, `boot-${++boots}\n`);
    await fleet.startAgent(HOST, 60_000);
  }
  const finishedBootCheck = (n: number) =>
    fleet.until(() => {
      const done = bootChecks().filter((j) => j.state !== "running" && j.state !== "accepted");
      return done.length >= n ? done.at(-1) : undefined;
    }, 60_000, `boot check ${n} to finish`);

  it("checks the booted generation, rolls back to the previous one once, and never loops", async () => {
    await bootInto(1);
    expect(fleet.generation(HOST).generation).toBe(1);
    // A rollout switches to a new kernel: active only after a reboot, so the switch says so and leaves the marker.
    fleet.repo.bumpPackages("nixpkgs", { linux: { version: "6.6.59" } });
    const commit = fleet.repo.mergeIntoBranch(fleet.repo.lockUpdateBranch("kernel-update").sha, "Merge the kernel update");
    expect((await fleet.runCommand(HOST, "pull", { commit }, { rolloutId: ROLLOUT })).state).toBe("succeeded");
    const sw = await fleet.runCommand(HOST, "switch", { commit }, { rolloutId: ROLLOUT, timeoutMs: 180_000 });
    expect(sw.state, sw.summary).toBe("succeeded");
    expect(sw.summary).toBe("generation 1 -> 2; reboot needed (kernel, initrd, kernel-modules changed); after the reboot the agent checks generation 2 within 3 s and otherwise boots generation 1 again");
    expect(readBootPending(stateDir())).toMatchObject({ runId: sw.id, generation: 2, previousGeneration: 1, bootId: `boot-${boots}`, rolloutId: ROLLOUT });

    // The agent restarts without a reboot (a restart into the installed agent): nothing to check yet.
    await fleet.stopAgent(HOST);
    await fleet.startAgent(HOST, 60_000);
    expect((await fleet.runCommand(HOST, "refresh")).state).toBe("succeeded");
    expect(bootChecks()).toEqual([]);
    expect(readBootPending(stateDir())?.generation).toBe(2);

    // The reboot: generation 2 comes up degraded. The previous generation becomes the boot default, one reboot.
    writeFileSync(files.systemState, "degraded\n");
    await bootInto(2);
    const first: JobState = await finishedBootCheck(1);
    expect(first.state).toBe("failed");
    expect(first.summary).toBe("generation 2 failed its boot check (system is degraded (accepted: running)): generation 1 is the boot default again; rebooting into it");
    expect(first).toMatchObject({ requestedBy: expect.stringContaining("boot check"), rolloutId: ROLLOUT, generationBefore: 2, generationAfter: 1 });
    expect(fleet.generation(HOST).generation).toBe(1);
    expect(rebootCount()).toBe(1);

    // Back on generation 1, still degraded: it stops and says so; no second rollback, no second reboot.
    await bootInto(1);
    const second = await finishedBootCheck(2);
    expect(second.state).toBe("failed");
    expect(second.summary).toBe("unhealthy again after rolling back from generation 2 to generation 1 (system is degraded (accepted: running)): stopped, not rebooting a second time; fix the host by hand");
    expect(rebootCount()).toBe(1);
    expect(readBootPending(stateDir())).toBeUndefined();

    // Every later boot has nothing to check.
    await bootInto(1);
    expect((await fleet.runCommand(HOST, "refresh")).state).toBe("succeeded");
    expect(bootChecks()).toHaveLength(2);
    expect(rebootCount()).toBe(1);
    // The run log holds both checks, with what each did.
    const log = readRunRecords(stateDir()).filter((r) => r.kind === "boot-check");
    expect(log.map((r) => [r.id, r.outcome])).toEqual([[first.id, "rolled-back"], [second.id, "failed"]]);
    expect(log[0]!.steps.map((s) => [s.name, s.status])).toEqual([["boot-check", "failed"], ["boot-rollback", "ok"], ["reboot", "ok"]]);
    expect(log[0]!.health.map((h) => [h.check, h.ok])).toEqual(expect.arrayContaining([["system-state", false], ["agent", true]]));
  }, 600_000);
});
