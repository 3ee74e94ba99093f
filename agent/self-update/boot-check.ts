/**
 * Boot rollback, for updates that reboot (a kernel, initrd or modules change): the self-update's
 * reboot window, and a switch by the agent daemon (a rollout's, by hand) whose new generation
 * needs a reboot to be active fully. Whoever installed such a generation leaves a marker,
 * <stateDir>/boot-pending.json (the self-update just before its reboot; the daemon after the
 * switch, agent/boot-rollback.ts). The first check after booting it (`lockstep-agent boot-check`,
 * the NixOS module's lockstep-boot-check unit, or the agent daemon as it starts) then checks within
 * `bootConfirmSeconds` that the new generation is healthy: the system state (waiting while it is
 * still starting), and what the caller adds (required units not failed, active units such as the
 * agent's own, the host's test scripts, the daemon's declared health checks).
 *
 * Unhealthy: it persists that it rolls back (before doing anything: a crash can never make it try
 * twice), makes the previous generation the boot default again (`nix-env --switch-generation` and
 * `switch-to-configuration boot` on NixOS, what `nixos-rebuild boot --rollback` does) and reboots,
 * once. After that reboot the check runs again: healthy, the host is back; unhealthy again, it
 * stops and reports, never rebooting a second time. Every check is a run-log record (kind
 * "boot-check") and is reported to the hub (a job with op "boot-check"). This file owns that logic
 * (`checkBoot`); `runBootCheck` is the self-update's use of it.
 */
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pino, { type Logger } from "pino";
import { z } from "zod";
import { bootRollbackArgvs, profileCommands, type SelfUpdateConfig } from "./config.js";
import { describeFailure, runCommand } from "./exec.js";
import { checkFailedUnits, type HealthResult } from "./health.js";
import { connectReporter, jobStateOf } from "./report.js";
import { appendRunRecord, startRunRecord, type RunRecord, type RunStep } from "./runlog.js";
import { acquireSelfUpdateLock, SelfUpdateLockedError, type HeldLock } from "./lock.js";
import { expandArgv, localNixSystem } from "../os-profiles.js";
import { listGenerations, readProfile } from "../profile.js";
import { testScriptEnv, testScripts } from "../ops/test.js";

export const BOOT_PENDING_FILE = "boot-pending.json";
/** Held while one process checks a boot (the same O_EXCL pid lock as the self-update's). */
const BOOT_CHECK_LOCK_FILE = "boot-check.lock";

/**
 * Who left a boot marker, and so checks the boot: the agent daemon (a rollout's switch that needs a
 * reboot) or the standalone self-update (its reboot window). Each checks only its own, with its own
 * settings; a marker without an owner predates the daemon's boot check and is the self-update's.
 */
export const BootOwner = z.enum(["daemon", "self-update"]);
export type BootOwner = z.infer<typeof BootOwner>;

export const BootPending = z.object({
  owner: BootOwner.optional(),
  /** The self-update run that rebooted. */
  runId: z.string(),
  /** The generation booted into, and its system. */
  generation: z.number().int(),
  systemPath: z.string(),
  /** The generation that ran before the reboot: the boot default again if the new one is unhealthy. */
  previousGeneration: z.number().int(),
  requestedAt: z.string(),
  /** The boot the marker was left in (/proc/sys/kernel/random/boot_id): no check before another boot. */
  bootId: z.string().optional(),
  /** The rollout whose switch installed the generation (the daemon's marker). */
  rolloutId: z.string().optional(),
  /** Set, and persisted, before the one rollback: the next boot check stops instead of looping. */
  rolledBack: z.object({ at: z.string(), reason: z.string() }).optional(),
});
export type BootPending = z.infer<typeof BootPending>;

const pendingFile = (stateDir: string) => join(stateDir, BOOT_PENDING_FILE);

export function readBootPending(stateDir: string): BootPending | undefined {
  const file = pendingFile(stateDir);
  if (!existsSync(file)) return undefined;
  try {
    return BootPending.parse(JSON.parse(readFileSync(file, "utf8")));
  } catch {
    // Unreadable: set aside (never acted upon, never a loop), kept for inspection.
    renameSync(file, `${file}.broken-${Date.now()}`);
    return undefined;
  }
}

export function writeBootPending(stateDir: string, p: BootPending): void {
  mkdirSync(stateDir, { recursive: true });
  const file = pendingFile(stateDir);
  writeFileSync(`${file}.tmp`, JSON.stringify(p, null, 1), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

/** Who checks the boot `p` is waiting for. */
export const bootOwnerOf = (p: BootPending): BootOwner => p.owner ?? "self-update";

export function clearBootPending(stateDir: string): void {
  rmSync(pendingFile(stateDir), { force: true });
}

/** Where a system's generations and its boot are read: the profile, the booted system, the boot id. */
export interface BootSystem {
  systemProfile: string;
  /** The running kernel's system (NixOS: /run/booted-system). */
  bootedSystem: string;
  /** This boot's id (Linux: /proc/sys/kernel/random/boot_id); null: not known (each check then counts as after a boot). */
  bootIdFile: string | null;
}

/**
 * The marker left for the boot into `systemPath` (the profile's current generation): the previous
 * generation is the one booted now (its store path is a generation of the profile). Undefined when
 * the booted system is not one of the profile's generations (nothing to go back to).
 */
export function bootPendingFor(sys: BootSystem, runId: string, systemPath: string): BootPending | undefined {
  const target = readProfile(sys.systemProfile);
  const booted = realpathOrUndefined(sys.bootedSystem);
  const previous = listGenerations(sys.systemProfile).filter((g) => g.path === booted && g.generation !== target.generation).at(-1);
  if (target.generation === undefined || !previous) return undefined;
  const bootId = readBootId(sys);
  return { runId, generation: target.generation, systemPath, previousGeneration: previous.generation, requestedAt: new Date().toISOString(), ...(bootId ? { bootId } : {}) };
}

/** The self-update's BootSystem. */
export function selfUpdateBootSystem(cfg: SelfUpdateConfig): BootSystem {
  return { systemProfile: cfg.systemProfile, bootedSystem: cfg.reboot.bootedSystem, bootIdFile: cfg.reboot.bootIdFile };
}

function realpathOrUndefined(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

function readBootId(sys: Pick<BootSystem, "bootIdFile">): string | undefined {
  if (!sys.bootIdFile) return undefined;
  try {
    return readFileSync(sys.bootIdFile, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/** What a boot check needs from its caller (the self-update's config, or the agent daemon's). */
export interface BootCheckTarget extends BootSystem {
  /** Only markers this one left are checked here. */
  owner: BootOwner;
  host: string;
  stateDir: string;
  /** The run log's `mode` field for the record. */
  mode: RunRecord["mode"];
  bootConfirmSeconds: number;
  pollSeconds: number;
  /** `systemctl is-system-running` and the states that count as healthy; null: not checked. */
  systemState: { argv: string[]; accepted: string[] } | null;
  /** The other checks of a healthy boot; `remainingMs`: what is left of bootConfirmSeconds (at least 1 s, a step's timeout), until `deadline` (epoch ms). */
  checks(remainingMs: () => number, deadline: number): Promise<HealthResult[]>;
  /** Make {generation} the boot default, with {profile} {generation} {host}. */
  rollbackArgvs: string[][];
  /** The reboot, expanded. */
  rebootArgv: string[];
  env: NodeJS.ProcessEnv;
  stepTimeoutMs: number;
  log: Logger;
  /** Tell the hub: the record is final when `phase` is "finished". Must not throw. */
  report?(record: RunRecord, phase: "running" | "finished", pending: BootPending): Promise<void>;
}

/** States systemd passes through while booting: asked again until bootConfirmSeconds ends. */
const STILL_BOOTING = new Set(["initializing", "starting"]);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Is a boot into the marker's generation waiting for its check (a boot happened since the marker was left)? */
export function bootCheckDue(t: Pick<BootCheckTarget, "stateDir" | "bootIdFile" | "owner">): boolean {
  const pending = readBootPending(t.stateDir);
  if (!pending || bootOwnerOf(pending) !== t.owner) return false;
  return !pending.bootId || pending.bootId !== readBootId(t);
}

/**
 * One boot check. Resolves with the run-log record, or undefined when no boot into a new
 * generation is waiting for its check (every other boot, and before the reboot the marker waits for).
 */
export async function checkBoot(t: BootCheckTarget): Promise<RunRecord | undefined> {
  if (!bootCheckDue(t)) return undefined;
  // Each marker has one owner (bootCheckDue); the lock keeps two processes of that owner (the
  // lockstep-boot-check unit and a self-update run) from checking it at once.
  let lock: HeldLock;
  try {
    lock = acquireSelfUpdateLock(join(t.stateDir, BOOT_CHECK_LOCK_FILE));
  } catch (e) {
    if (e instanceof SelfUpdateLockedError) return undefined;
    throw e;
  }
  try {
    return bootCheckDue(t) ? await checkBootLocked(t, readBootPending(t.stateDir)!) : undefined;
  } finally {
    lock.release();
  }
}

async function checkBootLocked(t: BootCheckTarget, pending: BootPending): Promise<RunRecord> {
  const started = new Date();
  const deadline = Date.now() + t.bootConfirmSeconds * 1000;
  const record: RunRecord = {
    ...startRunRecord("boot-check", t, started),
    systemPath: pending.systemPath,
    // The generation booted; generationAfter: the boot default once the check is done.
    generationBefore: pending.rolledBack ? pending.previousGeneration : pending.generation,
  };
  const steps: RunStep[] = record.steps;
  const runLog = t.log.child({ runId: record.id, host: t.host, bootOf: pending.runId });
  const timed = async <T>(name: RunStep["name"], body: () => Promise<{ ok: boolean; detail: string; value: T }>): Promise<T> => {
    const at = new Date();
    const t0 = performance.now();
    const r = await body();
    steps.push({ name, status: r.ok ? "ok" : "failed", startedAt: at.toISOString(), durationMs: Math.round(performance.now() - t0), detail: r.detail });
    runLog[r.ok ? "info" : "warn"]({ step: name, detail: r.detail }, "boot check step");
    return r.value;
  };
  await t.report?.(record, "running", pending);

  const results = await timed("boot-check", async () => {
    const remaining = () => Math.max(1000, deadline - Date.now());
    const health = [...(t.systemState ? [await waitForSystemState(t, t.systemState, deadline)] : []), ...(await t.checks(remaining, deadline))];
    const failed = health.filter((h) => !h.ok);
    return { ok: failed.length === 0, detail: health.map((h) => `${h.check}: ${h.detail}`).join("; ") || "nothing to check", value: health };
  });
  record.health = results;
  const failed = results.filter((h) => !h.ok);
  const reason = failed.map((h) => h.detail).join("; ");
  const gen = `generation ${pending.generation}`;
  const prev = `generation ${pending.previousGeneration}`;

  const booted = realpathOrUndefined(t.bootedSystem);
  if (!pending.rolledBack && booted !== pending.systemPath) {
    // Not the generation the marker waited for (picked by hand in the boot menu, or the bootloader fell back).
    clearBootPending(t.stateDir);
    record.outcome = "failed";
    record.summary = `booted ${booted ?? "an unknown system"}, not ${gen} (${pending.systemPath}): nothing rolled back; check the bootloader`;
    record.error = record.summary;
  } else if (pending.rolledBack) {
    // The boot after the one rollback (or a crash during it): report, and never reboot again.
    clearBootPending(t.stateDir);
    if (failed.length === 0) {
      record.outcome = "succeeded";
      record.summary = `healthy again on ${prev} after ${gen} failed its boot check (${pending.rolledBack.reason})`;
    } else {
      record.outcome = "failed";
      record.summary = `unhealthy again after rolling back from ${gen} to ${prev} (${reason}): stopped, not rebooting a second time; fix the host by hand`;
      record.error = reason;
    }
  } else if (failed.length === 0) {
    clearBootPending(t.stateDir);
    record.outcome = "succeeded";
    record.summary = `${gen} booted healthy`;
  } else {
    // Persisted first: whatever happens next, the following boot check stops instead of looping.
    // This boot's id: the check after the rollback waits for the reboot (an agent restarted meanwhile does not run it).
    const bootId = readBootId(t);
    writeBootPending(t.stateDir, { ...pending, ...(bootId ? { bootId } : {}), rolledBack: { at: new Date().toISOString(), reason } });
    const rolledBack = await timed("boot-rollback", async () => {
      const vars = { profile: t.systemProfile, generation: String(pending.previousGeneration), host: t.host };
      for (const template of t.rollbackArgvs) {
        const r = await runCommand(expandArgv(template, vars), { env: t.env, timeoutMs: t.stepTimeoutMs });
        if (r.exitCode !== 0) return { ok: false, detail: describeFailure(r), value: false };
      }
      return { ok: true, detail: `${prev} is the boot default again`, value: true };
    });
    if (!rolledBack) {
      clearBootPending(t.stateDir);
      record.outcome = "failed";
      record.summary = `${gen} failed its boot check (${reason}) and making ${prev} the boot default failed: fix the host by hand`;
      record.error = steps.at(-1)?.detail;
    } else {
      const rebooted = await timed("reboot", async () => {
        const r = await runCommand(t.rebootArgv, { env: t.env, timeoutMs: t.stepTimeoutMs });
        return r.exitCode === 0 ? { ok: true, detail: `ran ${t.rebootArgv[0]}`, value: true } : { ok: false, detail: describeFailure(r), value: false };
      });
      record.outcome = "rolled-back";
      record.summary = `${gen} failed its boot check (${reason}): ${prev} is the boot default again; ${rebooted ? "rebooting into it" : "the reboot command failed: reboot by hand"}`;
      record.error = reason;
    }
  }
  record.generationAfter = readProfile(t.systemProfile).generation;
  record.finishedAt = new Date().toISOString();
  record.durationMs = Date.now() - started.getTime();
  appendRunRecord(t.stateDir, record);
  runLog.info({ outcome: record.outcome, summary: record.summary }, "boot check finished");
  await t.report?.(record, "finished", pending);
  return record;
}

export interface BootCheckOptions {
  log?: Logger;
  env?: NodeJS.ProcessEnv;
}

/** `lockstep-agent boot-check`: the self-update's boot check, reported with its own broker connection. */
export async function runBootCheck(cfg: SelfUpdateConfig, opts: BootCheckOptions = {}): Promise<RunRecord | undefined> {
  const log = opts.log ?? pino({ level: cfg.logLevel }, pino.destination(2));
  const env: NodeJS.ProcessEnv = { ...(opts.env ?? process.env), ...cfg.env };
  const vars = { host: cfg.host, profile: cfg.systemProfile, flake: cfg.checkoutDir, out: readBootPending(cfg.stateDir)?.systemPath ?? "", attr: profileCommands(cfg, localNixSystem()).attribute };
  return checkBoot({
    ...selfUpdateBootSystem(cfg),
    owner: "self-update",
    host: cfg.host,
    stateDir: cfg.stateDir,
    mode: cfg.mode,
    bootConfirmSeconds: cfg.bootConfirmSeconds,
    pollSeconds: cfg.bootCheck.pollSeconds,
    systemState: cfg.health.systemState.enabled ? cfg.health.systemState : null,
    checks: (remaining, deadline) => selfUpdateBootChecks(cfg, env, remaining, deadline),
    rollbackArgvs: bootRollbackArgvs(cfg),
    rebootArgv: expandArgv(cfg.reboot.argv, vars),
    env,
    stepTimeoutMs: cfg.stepTimeoutSeconds * 1000,
    log,
    report: async (record, phase) => {
      if (!cfg.broker || phase !== "finished") return;
      const reporter = await connectReporter(cfg.broker, cfg.host, cfg.topicPrefix, log);
      if (reporter) {
        await reporter.publish(jobStateOf(record, "finished"));
        await reporter.close();
      }
    },
  });
}

/** The self-update's checks besides the system state: required units, active units, the test scripts. */
async function selfUpdateBootChecks(cfg: SelfUpdateConfig, env: NodeJS.ProcessEnv, remaining: () => number, deadline: number): Promise<HealthResult[]> {
  const results: HealthResult[] = [];
  if (cfg.health.failedUnits.enabled && cfg.health.failedUnits.required.length > 0) {
    results.push(await checkFailedUnits(cfg.health.failedUnits.argv, cfg.health.failedUnits.required, { env, timeoutMs: remaining() }));
  }
  results.push(...(await waitForActiveUnits(cfg.bootCheck.activeUnits, cfg.bootCheck.activeUnitArgv, cfg.bootCheck.pollSeconds, cfg.bootConfirmSeconds, env, remaining, deadline)));
  if (cfg.bootCheck.tests) results.push(...(await runBootTests(cfg.checkoutDir, cfg.bootCheck.testsDir, cfg.host, cfg.systemProfile, env, remaining)));
  return results;
}

/** Each unit active, asked again every pollSeconds until bootConfirmSeconds ends. */
export async function waitForActiveUnits(units: string[], argv: string[], pollSeconds: number, bootConfirmSeconds: number, env: NodeJS.ProcessEnv, remaining: () => number, deadline: number): Promise<HealthResult[]> {
  const results: HealthResult[] = [];
  const poll = pollSeconds * 1000;
  for (const unit of units) {
    let r = await runCommand(expandArgv(argv, { unit }), { env, timeoutMs: remaining() });
    while (r.exitCode !== 0 && Date.now() + poll < deadline) {
      await sleep(poll);
      r = await runCommand(expandArgv(argv, { unit }), { env, timeoutMs: remaining() });
    }
    results.push({ check: "unit", ok: r.exitCode === 0, detail: r.exitCode === 0 ? `${unit} is active` : `${unit} is not active within ${bootConfirmSeconds} s of the boot check` });
  }
  return results;
}

/** The host's test scripts (as the agent's `test` runs them: testScripts, testScriptEnv), on the booted generation. */
export async function runBootTests(checkoutDir: string, testsDir: string, host: string, systemProfile: string, env: NodeJS.ProcessEnv, remaining: () => number): Promise<HealthResult[]> {
  const results: HealthResult[] = [];
  for (const s of testScripts(checkoutDir, testsDir, host)) {
    const r = await runCommand([s.path], { cwd: checkoutDir, env: testScriptEnv(env, host, readProfile(systemProfile)), timeoutMs: remaining() });
    results.push({ check: "test", ok: r.exitCode === 0, detail: r.exitCode === 0 ? `${s.name} passed` : `${s.name} failed: ${describeFailure(r)}` });
  }
  return results;
}

/** `systemctl is-system-running` until it leaves "starting" (or bootConfirmSeconds ends). */
async function waitForSystemState(t: Pick<BootCheckTarget, "env" | "pollSeconds" | "bootConfirmSeconds">, systemState: { argv: string[]; accepted: string[] }, deadline: number): Promise<HealthResult> {
  const { argv, accepted } = systemState;
  for (;;) {
    const r = await runCommand(argv, { env: t.env, timeoutMs: Math.max(1000, deadline - Date.now()) });
    const state = /^[a-z-]+$/.exec((r.stdout.split("\n")[0] ?? "").trim())?.[0];
    if (state && accepted.includes(state)) return { check: "system-state", ok: true, detail: `system is ${state}` };
    const booting = state !== undefined && STILL_BOOTING.has(state);
    if (!booting || Date.now() + t.pollSeconds * 1000 >= deadline) {
      const what = state ? `system is ${state}` : `${argv.join(" ")} printed no state (exit ${r.exitCode})`;
      return { check: "system-state", ok: false, detail: `${what}${booting ? ` after ${t.bootConfirmSeconds} s` : ""} (accepted: ${accepted.join(", ")})` };
    }
    await sleep(t.pollSeconds * 1000);
  }
}
