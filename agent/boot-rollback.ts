/**
 * Boot rollback for the agent daemon's switches (a rollout's, by hand, from Home Assistant): a
 * switch that installs a generation whose kernel, initrd or modules differ from the booted ones
 * (protocol/reboot.ts) cannot activate it fully. The agent says so in the job ("reboot needed")
 * and leaves the boot marker; the first agent start after booting that generation runs the boot
 * check: the system state, its own start (it reached the broker), the declared `health` checks and
 * the host's test scripts, within bootCheck.bootConfirmSeconds. The decisions (roll back once,
 * never loop, the run-log record) are self-update/boot-check.ts's `checkBoot`, shared with the
 * self-update; this file feeds it the daemon's config and reports the check as a job
 * (op "boot-check", the switch's rolloutId) on the host's job history.
 */
import { realpathSync } from "node:fs";
import { join } from "node:path";
import { REBOOT_COMPONENTS, rebootNeedOf, type JobState } from "../protocol/index.js";
import type { AgentConfig } from "./config.js";
import type { AgentContext } from "./context.js";
import { runHealthChecks } from "./health.js";
import { newRunningJob, type RunningJob } from "./job.js";
import type { JobInit } from "./job-topics.js";
import type { JobReporter } from "./jobs.js";
import { expandArgv, profilePathOf } from "./os-profiles.js";
import { readProfile } from "./profile.js";
import { bootCheckDue, bootOwnerOf, bootPendingFor, checkBoot, clearBootPending, readBootPending, runBootTests, writeBootPending, type BootSystem } from "./self-update/boot-check.js";
import { generationArgvs } from "./self-update/config.js";
import type { HealthResult } from "./self-update/health.js";
import type { RunRecord } from "./self-update/runlog.js";

export const BOOT_CHECK_OP = "boot-check";
const BOOT_CHECK_BY = "lockstep-agent (boot check after a reboot into a switched generation)";

function bootCheckEnabled(config: AgentConfig): boolean {
  return config.bootCheck.enabled ?? config.os.kind === "nixos";
}

function bootSystemOf(config: AgentConfig): BootSystem {
  return { systemProfile: profilePathOf(config), bootedSystem: config.bootCheck.bootedSystem, bootIdFile: config.bootCheck.bootIdFile };
}

const realpathOrNull = (p: string): string | null => {
  try {
    return realpathSync(p);
  } catch {
    return null;
  }
};

/**
 * After an activation that succeeded (switch or rollback): does the generation now current need a
 * reboot? Then leave the marker for the boot check after it; otherwise drop one an earlier switch
 * left (what runs now is fully active). Returns what the job's summary should add.
 */
export function noteRebootNeed(ctx: Pick<AgentContext, "config" | "log">, jobId: string, rolloutId?: string): string | undefined {
  const { config } = ctx;
  if (!bootCheckEnabled(config)) return undefined;
  const sys = bootSystemOf(config);
  const current = readProfile(sys.systemProfile);
  const booted = realpathOrNull(sys.bootedSystem);
  if (!current.path || !booted) return undefined;
  const need = rebootNeedOf(REBOOT_COMPONENTS, (c) => realpathOrNull(join(booted, c)), (c) => realpathOrNull(join(current.path!, c)));
  const marker = readBootPending(config.stateDir);
  if (!need.needed) {
    // A marker the boot check itself is in the middle of (rolled back, rebooting) stays.
    if (marker && bootOwnerOf(marker) === "daemon" && !marker.rolledBack) clearBootPending(config.stateDir);
    return undefined;
  }
  const what = `reboot needed (${need.changed.join(", ")} changed)`;
  const pending = bootPendingFor(sys, jobId, current.path);
  if (!pending) {
    ctx.log.warn({ bootedSystem: sys.bootedSystem }, "the booted system is no generation of the profile: a boot check after the reboot could not roll back");
    return `${what}; no boot check after it: the booted system is no generation to go back to`;
  }
  writeBootPending(config.stateDir, { ...pending, owner: "daemon", ...(rolloutId ? { rolloutId } : {}) });
  return `${what}; after the reboot the agent checks generation ${pending.generation} within ${config.bootCheck.bootConfirmSeconds} s and otherwise boots generation ${pending.previousGeneration} again`;
}

export interface BootCheckHooks {
  newReporter(init: JobInit): JobReporter;
  /** The host is busy with the check (no switch comes in between), and idle again. */
  adopt(job: RunningJob): void;
  release(job: RunningJob): void;
  /** Is the agent's broker session up? (Its own start: it reaches the hub.) */
  online(): boolean;
  jobFinished(state: JobState): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** On start: the boot check, when this is the first start after booting a generation a switch installed. */
export async function bootCheckOnStart(ctx: AgentContext, hooks: BootCheckHooks): Promise<RunRecord | undefined> {
  const { config } = ctx;
  if (!bootCheckEnabled(config)) return undefined;
  const sys = bootSystemOf(config);
  if (!bootCheckDue({ stateDir: config.stateDir, bootIdFile: sys.bootIdFile, owner: "daemon" })) return undefined;
  const bc = config.bootCheck;
  let job: { job: RunningJob; end: () => void; reporter: JobReporter } | undefined;
  return checkBoot({
    ...sys,
    owner: "daemon",
    host: ctx.host,
    stateDir: config.stateDir,
    // The daemon deploys the commits it pulls.
    mode: "git-pull",
    bootConfirmSeconds: bc.bootConfirmSeconds,
    pollSeconds: bc.pollSeconds,
    systemState: bc.systemState.enabled ? bc.systemState : null,
    checks: async (remaining, deadline) => {
      const results: HealthResult[] = [await waitOnline(hooks, bc.pollSeconds, bc.bootConfirmSeconds, deadline)];
      for (const c of await runHealthChecks(config, ctx.env, ctx.state.state.failedUnitsBefore)) results.push({ check: "health", ok: c.ok, detail: `${c.name}: ${c.detail}` });
      if (bc.tests) results.push(...(await runBootTests(ctx.checkout.dir, config.testsDir, ctx.host, sys.systemProfile, ctx.env, remaining)));
      return results;
    },
    rollbackArgvs: bc.rollbackArgvs ?? generationArgvs(config.os.kind, "boot"),
    rebootArgv: expandArgv(bc.rebootArgv, { host: ctx.host }),
    env: ctx.env,
    stepTimeoutMs: config.timeouts.switchSeconds * 1000,
    log: ctx.log,
    report: async (record, phase, pending) => {
      if (phase === "running") {
        const reporter = hooks.newReporter({ id: record.id, op: BOOT_CHECK_OP, requestedBy: BOOT_CHECK_BY, ...(pending.rolloutId ? { rolloutId: pending.rolloutId } : {}) });
        job = { ...newRunningJob({ id: record.id, op: BOOT_CHECK_OP, reporter, touches: new Set(["system"]) }), reporter };
        hooks.adopt(job.job);
        reporter.set("running", { summary: `checking generation ${record.generationBefore} after the boot`, ...(record.generationBefore !== undefined ? { generationBefore: record.generationBefore } : {}) });
        return;
      }
      if (!job) return;
      const state = record.outcome === "succeeded" ? "succeeded" : "failed";
      job.reporter.set(state, {
        summary: record.summary,
        ...(record.error ? { error: record.error } : {}),
        ...(state === "succeeded" ? { exitCode: 0 } : {}),
        ...(record.generationBefore !== undefined ? { generationBefore: record.generationBefore } : {}),
        ...(record.generationAfter !== undefined ? { generationAfter: record.generationAfter } : {}),
      });
      job.end();
      hooks.release(job.job);
      await ctx.remeasure();
      hooks.jobFinished(job.reporter.state);
    },
  });
}

/** The agent's own start counts once it reaches the broker, asked every pollSeconds until bootConfirmSeconds ends. */
async function waitOnline(hooks: Pick<BootCheckHooks, "online">, pollSeconds: number, bootConfirmSeconds: number, deadline: number): Promise<HealthResult> {
  while (!hooks.online() && Date.now() + pollSeconds * 1000 < deadline) await sleep(pollSeconds * 1000);
  return hooks.online()
    ? { check: "agent", ok: true, detail: "lockstep-agent started and reached the broker" }
    : { check: "agent", ok: false, detail: `lockstep-agent started but did not reach the broker within ${bootConfirmSeconds} s` };
}
