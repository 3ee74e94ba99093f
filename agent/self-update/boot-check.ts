/**
 * Boot rollback, for updates that reboot (a kernel, initrd or modules change in the self-update's
 * reboot window). Before the self-update reboots into a new generation it leaves a marker,
 * <stateDir>/boot-pending.json. `lockstep-agent boot-check`, run once per boot (the NixOS module's
 * lockstep-boot-check unit), then checks within `bootConfirmSeconds` that the new generation is
 * healthy: the system state (`health.systemState`, waiting while it is still starting), required
 * units not failed, `bootCheck.activeUnits` active (the agent's own unit), the host's test scripts.
 *
 * Unhealthy: it persists that it rolls back (before doing anything: a crash can never make it try
 * twice), makes the previous generation the boot default again (`nix-env --switch-generation` and
 * `switch-to-configuration boot` on NixOS, what `nixos-rebuild boot --rollback` does) and reboots,
 * once. After that reboot the check runs again: healthy, the host is back; unhealthy again, it
 * stops and reports, never rebooting a second time. Every check is a run-log record (kind
 * "boot-check") and, with a broker, a job on the hub.
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
import { expandArgv, localNixSystem } from "../os-profiles.js";
import { listGenerations, readProfile } from "../profile.js";
import { testScripts } from "../ops/test.js";

export const BOOT_PENDING_FILE = "boot-pending.json";

export const BootPending = z.object({
  /** The self-update run that rebooted. */
  runId: z.string(),
  /** The generation booted into, and its system. */
  generation: z.number().int(),
  systemPath: z.string(),
  /** The generation that ran before the reboot: the boot default again if the new one is unhealthy. */
  previousGeneration: z.number().int(),
  requestedAt: z.string(),
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

export function clearBootPending(stateDir: string): void {
  rmSync(pendingFile(stateDir), { force: true });
}

/**
 * The marker the self-update leaves before rebooting into `systemPath`: the previous generation is
 * the one booted now (its store path is a generation of the profile). Undefined when the booted
 * system is not one of the profile's generations (nothing to go back to).
 */
export function bootPendingFor(cfg: SelfUpdateConfig, runId: string, systemPath: string): BootPending | undefined {
  const target = readProfile(cfg.systemProfile);
  const booted = bootedSystem(cfg);
  const previous = listGenerations(cfg.systemProfile).filter((g) => g.path === booted && g.generation !== target.generation).at(-1);
  if (target.generation === undefined || !previous) return undefined;
  return { runId, generation: target.generation, systemPath, previousGeneration: previous.generation, requestedAt: new Date().toISOString() };
}

function bootedSystem(cfg: SelfUpdateConfig): string | undefined {
  try {
    return realpathSync(cfg.reboot.bootedSystem);
  } catch {
    return undefined;
  }
}

export interface BootCheckOptions {
  log?: Logger;
  env?: NodeJS.ProcessEnv;
}

/** States systemd passes through while booting: asked again until bootConfirmSeconds ends. */
const STILL_BOOTING = new Set(["initializing", "starting"]);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One boot check. Resolves with the run-log record, or undefined when no reboot into a new
 * generation is waiting for its check (every other boot).
 */
export async function runBootCheck(cfg: SelfUpdateConfig, opts: BootCheckOptions = {}): Promise<RunRecord | undefined> {
  const log = opts.log ?? pino({ level: cfg.logLevel }, pino.destination(2));
  const env: NodeJS.ProcessEnv = { ...(opts.env ?? process.env), ...cfg.env };
  const pending = readBootPending(cfg.stateDir);
  if (!pending) return undefined;
  const started = new Date();
  const deadline = Date.now() + cfg.bootConfirmSeconds * 1000;
  const record: RunRecord = {
    ...startRunRecord("boot-check", cfg, started),
    systemPath: pending.systemPath,
    // The generation booted; generationAfter: the boot default once the check is done.
    generationBefore: pending.rolledBack ? pending.previousGeneration : pending.generation,
  };
  const steps: RunStep[] = record.steps;
  const runLog = log.child({ runId: record.id, host: cfg.host, bootOf: pending.runId });
  const timed = async <T>(name: RunStep["name"], body: () => Promise<{ ok: boolean; detail: string; value: T }>): Promise<T> => {
    const at = new Date();
    const t0 = performance.now();
    const r = await body();
    steps.push({ name, status: r.ok ? "ok" : "failed", startedAt: at.toISOString(), durationMs: Math.round(performance.now() - t0), detail: r.detail });
    runLog[r.ok ? "info" : "warn"]({ step: name, detail: r.detail }, "boot check step");
    return r.value;
  };

  const results = await timed("boot-check", async () => {
    const health = await bootHealth(cfg, env, deadline);
    const failed = health.filter((h) => !h.ok);
    return { ok: failed.length === 0, detail: health.map((h) => `${h.check}: ${h.detail}`).join("; ") || "nothing to check", value: health };
  });
  record.health = results;
  const failed = results.filter((h) => !h.ok);
  const reason = failed.map((h) => h.detail).join("; ");
  const gen = `generation ${pending.generation}`;
  const prev = `generation ${pending.previousGeneration}`;

  const booted = bootedSystem(cfg);
  if (!pending.rolledBack && booted !== pending.systemPath) {
    // Not the generation the run rebooted into (picked by hand in the boot menu, or the bootloader fell back).
    clearBootPending(cfg.stateDir);
    record.outcome = "failed";
    record.summary = `booted ${booted ?? "an unknown system"}, not ${gen} (${pending.systemPath}): nothing rolled back; check the bootloader`;
    record.error = record.summary;
  } else if (pending.rolledBack) {
    // The boot after the one rollback (or a crash during it): report, and never reboot again.
    clearBootPending(cfg.stateDir);
    if (failed.length === 0) {
      record.outcome = "succeeded";
      record.summary = `healthy again on ${prev} after ${gen} failed its boot check (${pending.rolledBack.reason})`;
    } else {
      record.outcome = "failed";
      record.summary = `unhealthy again after rolling back from ${gen} to ${prev} (${reason}): stopped, not rebooting a second time; fix the host by hand`;
      record.error = reason;
    }
  } else if (failed.length === 0) {
    clearBootPending(cfg.stateDir);
    record.outcome = "succeeded";
    record.summary = `${gen} booted healthy`;
  } else {
    // Persisted first: whatever happens next, the following boot check stops instead of looping.
    writeBootPending(cfg.stateDir, { ...pending, rolledBack: { at: new Date().toISOString(), reason } });
    const rolledBack = await timed("boot-rollback", async () => {
      const vars = { profile: cfg.systemProfile, generation: String(pending.previousGeneration), host: cfg.host };
      for (const template of bootRollbackArgvs(cfg)) {
        const r = await runCommand(expandArgv(template, vars), { env, timeoutMs: cfg.stepTimeoutSeconds * 1000 });
        if (r.exitCode !== 0) return { ok: false, detail: describeFailure(r), value: false };
      }
      return { ok: true, detail: `${prev} is the boot default again`, value: true };
    });
    if (!rolledBack) {
      clearBootPending(cfg.stateDir);
      record.outcome = "failed";
      record.summary = `${gen} failed its boot check (${reason}) and making ${prev} the boot default failed: fix the host by hand`;
      record.error = steps.at(-1)?.detail;
    } else {
      const rebooted = await timed("reboot", async () => {
        const vars = { host: cfg.host, profile: cfg.systemProfile, flake: cfg.checkoutDir, out: pending.systemPath, attr: profileCommands(cfg, localNixSystem()).attribute };
        const r = await runCommand(expandArgv(cfg.reboot.argv, vars), { env, timeoutMs: cfg.stepTimeoutSeconds * 1000 });
        return r.exitCode === 0 ? { ok: true, detail: `ran ${cfg.reboot.argv[0]}`, value: true } : { ok: false, detail: describeFailure(r), value: false };
      });
      record.outcome = "rolled-back";
      record.summary = `${gen} failed its boot check (${reason}): ${prev} is the boot default again; ${rebooted ? "rebooting into it" : "the reboot command failed: reboot by hand"}`;
      record.error = reason;
    }
  }
  record.generationAfter = readProfile(cfg.systemProfile).generation;
  record.finishedAt = new Date().toISOString();
  record.durationMs = Date.now() - started.getTime();
  appendRunRecord(cfg.stateDir, record);
  runLog.info({ outcome: record.outcome, summary: record.summary }, "boot check finished");
  if (cfg.broker) {
    const reporter = await connectReporter(cfg.broker, cfg.host, cfg.topicPrefix, runLog);
    if (reporter) {
      await reporter.publish(jobStateOf(record, "finished"));
      await reporter.close();
    }
  }
  return record;
}

/** Everything a booted generation must show before bootConfirmSeconds ends. */
async function bootHealth(cfg: SelfUpdateConfig, env: NodeJS.ProcessEnv, deadline: number): Promise<HealthResult[]> {
  const remaining = () => Math.max(1000, deadline - Date.now());
  const poll = cfg.bootCheck.pollSeconds * 1000;
  const results: HealthResult[] = [];
  if (cfg.health.systemState.enabled) results.push(await waitForSystemState(cfg, env, deadline));
  if (cfg.health.failedUnits.enabled && cfg.health.failedUnits.required.length > 0) {
    results.push(await checkFailedUnits(cfg.health.failedUnits.argv, cfg.health.failedUnits.required, { env, timeoutMs: remaining() }));
  }
  for (const unit of cfg.bootCheck.activeUnits) {
    let r = await runCommand(expandArgv(cfg.bootCheck.activeUnitArgv, { unit }), { env, timeoutMs: remaining() });
    while (r.exitCode !== 0 && Date.now() + poll < deadline) {
      await sleep(poll);
      r = await runCommand(expandArgv(cfg.bootCheck.activeUnitArgv, { unit }), { env, timeoutMs: remaining() });
    }
    results.push({ check: "unit", ok: r.exitCode === 0, detail: r.exitCode === 0 ? `${unit} is active` : `${unit} is not active within ${cfg.bootConfirmSeconds} s of the boot check` });
  }
  if (cfg.bootCheck.tests) {
    for (const s of testScripts(cfg.checkoutDir, cfg.bootCheck.testsDir, cfg.host)) {
      const profile = readProfile(cfg.systemProfile);
      const r = await runCommand([s.path], {
        cwd: cfg.checkoutDir,
        env: { ...env, LOCKSTEP_HOST: cfg.host, LOCKSTEP_SYSTEM: profile.path ?? "", ...(profile.generation !== undefined ? { LOCKSTEP_GENERATION: String(profile.generation) } : {}) },
        timeoutMs: remaining(),
      });
      results.push({ check: "test", ok: r.exitCode === 0, detail: r.exitCode === 0 ? `${s.name} passed` : `${s.name} failed: ${describeFailure(r)}` });
    }
  }
  return results;
}

/** `systemctl is-system-running` until it leaves "starting" (or bootConfirmSeconds ends). */
async function waitForSystemState(cfg: SelfUpdateConfig, env: NodeJS.ProcessEnv, deadline: number): Promise<HealthResult> {
  const { argv, accepted } = cfg.health.systemState;
  for (;;) {
    const r = await runCommand(argv, { env, timeoutMs: Math.max(1000, deadline - Date.now()) });
    const state = /^[a-z-]+$/.exec((r.stdout.split("\n")[0] ?? "").trim())?.[0];
    if (state && accepted.includes(state)) return { check: "system-state", ok: true, detail: `system is ${state}` };
    const booting = state !== undefined && STILL_BOOTING.has(state);
    if (!booting || Date.now() + cfg.bootCheck.pollSeconds * 1000 >= deadline) {
      const what = state ? `system is ${state}` : `${argv.join(" ")} printed no state (exit ${r.exitCode})`;
      return { check: "system-state", ok: false, detail: `${what}${booting ? ` after ${cfg.bootConfirmSeconds} s` : ""} (accepted: ${accepted.join(", ")})` };
    }
    await sleep(cfg.bootCheck.pollSeconds * 1000);
  }
}
