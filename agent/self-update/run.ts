/**
 * The standalone nightly self-update for hosts without a hub (the home-lab case):
 *
 *   lock -> health checks -> update (nix flake update, or git pull) -> build -> switch -> reboot?
 *
 * Nothing is touched until every health check passed; the build makes an out-link first, so a
 * failed build leaves the running generation alone; a reboot happens only when the kernel, initrd
 * or modules changed and only inside the reboot window. Every run, whatever its end, is appended
 * to <stateDir>/self-update-runs.jsonl and, with a broker configured, reported to the hub.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { realpath } from "node:fs/promises";
import { join } from "node:path";
import pino, { type Logger } from "pino";
import type { SelfUpdateConfig } from "./config.js";
import { profileCommands, switchBackArgvs } from "./config.js";
import { runCommand, describeFailure, type CommandResult } from "./exec.js";
import { runHealthChecks } from "./health.js";
import { acquireSelfUpdateLock, agentJobInProgress, SelfUpdateLockedError, type HeldLock } from "./lock.js";
import { statePaths } from "../config.js";
import { gitSshCommand } from "../git.js";
import { appendRunRecord, startRunRecord, type RunRecord, type RunStep, type RunOutcome } from "./runlog.js";
import { connectReporter, jobStateOf, type RunReporter } from "./report.js";
import { rebootNeeded } from "./system.js";
import { bootPendingFor, clearBootPending, selfUpdateBootSystem, writeBootPending } from "./boot-check.js";
import { readProfile } from "../profile.js";
import { isWithinWindow } from "../../protocol/windows.js";
import { assertCommitSha, expandArgv, localNixSystem, updateInputsArgv } from "../os-profiles.js";
import { awaitHubConfirmation, selfUpdatePendingFile } from "./confirmation.js";

/** The build's out-link: also a GC root, so the built system survives a garbage collection. */
export const OUT_LINK = "self-update-system";

export interface SelfUpdateOptions {
  log?: Logger;
  /** The clock the reboot window is checked against. */
  now?: () => Date;
  /** Base environment for commands (default process.env); the config's `env` is laid over it. */
  env?: NodeJS.ProcessEnv;
  /** Nix system for the generic profile's attribute (default: this machine's). */
  system?: string;
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** Thrown inside a run to end it with an outcome; caught by runSelfUpdate. */
class RunStop extends Error {
  constructor(
    readonly outcome: RunOutcome,
    readonly summary: string,
    readonly error?: string,
  ) {
    super(summary);
  }
}

export async function runSelfUpdate(cfg: SelfUpdateConfig, opts: SelfUpdateOptions = {}): Promise<RunRecord> {
  const log = opts.log ?? pino({ level: cfg.logLevel }, pino.destination(2));
  const now = opts.now ?? (() => new Date());
  const env: NodeJS.ProcessEnv = { ...(opts.env ?? process.env), ...cfg.env };
  if (cfg.sshKeyFile) env.GIT_SSH_COMMAND = gitSshCommand(cfg.sshKeyFile);
  const timeoutMs = cfg.stepTimeoutSeconds * 1000;
  const started = now();
  const startedMs = Date.now();
  const record: RunRecord = startRunRecord("self-update", cfg, started);
  const steps: RunStep[] = record.steps;
  const runLog = log.child({ runId: record.id, host: cfg.host });
  mkdirSync(cfg.stateDir, { recursive: true });
  const pendingConfirmation = selfUpdatePendingFile(cfg.stateDir, runLog);

  /** Time one step and record it; a step returns its detail or throws RunStop. */
  const step = async (name: RunStep["name"], body: () => Promise<string>): Promise<void> => {
    const at = new Date();
    const t0 = performance.now();
    try {
      const detail = await body();
      steps.push({ name, status: "ok", startedAt: at.toISOString(), durationMs: Math.round(performance.now() - t0), detail });
      runLog.info({ step: name, detail }, "self-update step done");
    } catch (e) {
      const detail = e instanceof RunStop ? (e.error ?? e.summary) : (e as Error).message;
      steps.push({ name, status: "failed", startedAt: at.toISOString(), durationMs: Math.round(performance.now() - t0), detail });
      runLog.warn({ step: name, detail }, "self-update step failed");
      throw e;
    }
  };
  const run = (argv: string[], cwd?: string): Promise<CommandResult> => {
    runLog.debug({ argv }, "running");
    return runCommand(argv, { cwd, env, timeoutMs });
  };

  /** Magic rollback: the generation before the run active again, the checkout back where it was. */
  const switchBack = async (from: number | undefined, why: string): Promise<string> => {
    const vars = { profile: cfg.systemProfile, generation: String(record.generationBefore), host: cfg.host, flake: cfg.checkoutDir, out: join(cfg.stateDir, OUT_LINK), attr: profileCommands(cfg, opts.system ?? localNixSystem()).attribute };
    for (const argv of switchBackArgvs(cfg)) {
      const r = await run(expandArgv(argv, vars), cfg.checkoutDir);
      if (r.exitCode !== 0) throw new RunStop("failed", `${why}, and switching back to generation ${record.generationBefore} failed: fix the host by hand`, describeFailure(r));
    }
    record.generationAfter = readProfile(cfg.systemProfile).generation;
    let checkout = "checkout unchanged";
    if (record.commitBefore && record.commitAfter && record.commitBefore !== record.commitAfter) {
      const r = await run(["git", "checkout", "-q", "-B", cfg.branch, assertCommitSha(record.commitBefore)], cfg.checkoutDir);
      checkout = r.exitCode === 0 ? `checkout back at ${record.commitBefore.slice(0, 8)}` : `checkout not restored: ${describeFailure(r)}`;
    } else if (record.lockChanged) {
      const r = await run(["git", "checkout", "-q", "--", "flake.lock"], cfg.checkoutDir);
      checkout = r.exitCode === 0 ? "flake.lock back as it was" : `flake.lock not restored: ${describeFailure(r)}`;
    }
    return `generation ${from ?? "?"} -> ${record.generationAfter ?? "?"}; ${checkout}`;
  };

  let lock: HeldLock | undefined;
  let reporter: RunReporter | null = null;
  let rebootArgv: string[] | undefined;
  try {
    await step("lock", async () => {
      try {
        lock = acquireSelfUpdateLock(statePaths(cfg.stateDir).selfUpdateLock);
      } catch (e) {
        if (e instanceof SelfUpdateLockedError) throw new RunStop("locked", "another self-update run is in progress; this one did nothing", e.message);
        throw e;
      }
      const agentJob = agentJobInProgress(cfg.stateDir);
      if (agentJob) {
        throw new RunStop("locked", "the agent daemon is running a job; this run did nothing", `agent job ${agentJob.op} ${agentJob.id} in progress (${agentJob.path})`);
      }
      return lock.tookOverStalePid ? `took over the stale lock of pid ${lock.tookOverStalePid}` : "acquired";
    });
    // A run killed while its switch waited for the hub's confirmation: this one finishes it, nothing
    // else (confirmation.ts). Its reporter waits: a clean connection would drop the queued confirm.
    const resumed = pendingConfirmation.read();
    if (resumed) {
      const own = steps.splice(0);
      Object.assign(record, resumed.run);
      steps.push(...resumed.run.steps, ...own);
      record.steps = steps;
      runLog.warn({ resumedRun: resumed.run.id, pid: resumed.pid, deadline: resumed.deadline }, "a run was killed while its switch awaited confirmation: finishing it");
    } else if (cfg.broker) {
      reporter = await connectReporter(cfg.broker, cfg.host, cfg.topicPrefix, runLog);
      await reporter?.publish(jobStateOf(record, "running"));
    }

    const checkout = cfg.checkoutDir;
    const lockFile = join(checkout, "flake.lock");
    const commands = profileCommands(cfg, opts.system ?? localNixSystem());
    const outLink = join(cfg.stateDir, OUT_LINK);
    const placeholders = { flake: checkout, attr: commands.attribute, out: outLink, profile: cfg.systemProfile, host: cfg.host };
    let switched = resumed !== undefined;
    if (!resumed) {
      record.generationBefore = readProfile(cfg.systemProfile).generation;
      const headOf = async () => (existsSync(join(checkout, ".git")) ? (await run(["git", "rev-parse", "HEAD"], checkout)).stdout.trim() || undefined : undefined);
      record.commitBefore = await headOf();

      await step("health", async () => {
        record.health = await runHealthChecks(cfg.health, { env });
        const failed = record.health.filter((h) => !h.ok);
        if (failed.length) {
          throw new RunStop("unhealthy", `health check failed, nothing was changed: ${failed.map((h) => h.detail).join("; ")}`, failed.map((h) => `${h.check}: ${h.detail}`).join("; "));
        }
        return record.health.length ? record.health.map((h) => h.detail).join("; ") : "all checks disabled";
      });

      await step("update", async () => {
        if (!existsSync(join(checkout, ".git"))) {
          if (!cfg.repoUrl) throw new RunStop("failed", `${checkout} is not a git checkout`, "set repoUrl so the self-update clones it, or clone it there");
          const c = await run(["git", "clone", "--quiet", "--branch", cfg.branch, cfg.repoUrl, checkout]);
          if (c.exitCode !== 0) throw new RunStop("failed", "cloning the flake repository failed", describeFailure(c));
        }
        if (cfg.mode === "git-pull") {
          const r = await run(["git", "pull", "--ff-only", cfg.remote, cfg.branch], checkout);
          if (r.exitCode !== 0) throw new RunStop("failed", "git pull failed; nothing was built or switched", describeFailure(r));
        } else {
          const lockBefore = readOrUndefined(lockFile);
          const r = await run(updateInputsArgv(cfg.inputs), checkout);
          if (r.exitCode !== 0) throw new RunStop("failed", "nix flake update failed; nothing was built or switched", describeFailure(r));
          record.lockChanged = readOrUndefined(lockFile) !== lockBefore;
          if (record.lockChanged && cfg.commitLock) {
            const report = `${r.stderr}`.slice(Math.max(0, r.stderr.indexOf("•"))).trim();
            const identity = ["-c", "user.name=Lockstep self-update", "-c", `user.email=lockstep-self-update@${cfg.host}`];
            const c = await run(["git", ...identity, "commit", "-q", "-m", "flake.lock: Update", ...(report ? ["-m", report] : []), "--", "flake.lock"], checkout);
            if (c.exitCode !== 0) throw new RunStop("failed", "the lock was updated but could not be committed", describeFailure(c));
          }
        }
        record.commitAfter = await headOf();
        if (cfg.mode === "git-pull") return record.commitAfter === record.commitBefore ? "already at the remote head" : `pulled ${record.commitBefore?.slice(0, 12)} -> ${record.commitAfter?.slice(0, 12)}`;
        return record.lockChanged ? "flake.lock updated" : "flake.lock already current";
      });

      await step("build", async () => {
        const r = await run(expandArgv(commands.build, placeholders), checkout);
        if (r.exitCode !== 0) throw new RunStop("failed", "build failed; the running generation is untouched", describeFailure(r));
        record.systemPath = await realpath(outLink);
        return record.systemPath;
      });

      await step("switch", async () => {
        const running = await realpath(cfg.systemProfile).catch(() => undefined);
        if (running === record.systemPath) return "already running this system";
        for (const argv of commands.switches) {
          const r = await run(expandArgv(argv, placeholders), checkout);
          if (r.exitCode !== 0) throw new RunStop("failed", "switch failed", describeFailure(r));
        }
        switched = true;
        return `switched to ${record.systemPath}`;
      });
    }
    record.generationAfter = readProfile(cfg.systemProfile).generation;
    let confirmed = "";
    const awaitsConfirmation = resumed !== undefined || (switched && record.generationBefore !== undefined && record.generationAfter !== record.generationBefore);
    if (awaitsConfirmation && (!cfg.broker || !cfg.magicRollback)) pendingConfirmation.clear(); // turned off since the run was killed
    if (awaitsConfirmation && cfg.broker && cfg.magicRollback) {
      // Magic rollback: the hub must see this host after the switch and confirm it (confirmation.ts).
      record.summary = `switched to generation ${record.generationAfter}`;
      await reporter?.close();
      reporter = null;
      const at = new Date();
      const t0 = performance.now();
      const verdict = await awaitHubConfirmation(cfg, record, runLog, resumed);
      reporter = verdict.reporter;
      const detail = verdict.confirmedBy ? `confirmed by ${verdict.confirmedBy}` : verdict.why!;
      const resumedNote = resumed ? `finished by pid ${process.pid} after the waiting run (pid ${resumed.pid}) ended: ` : "";
      steps.push({ name: "confirm", status: verdict.confirmedBy ? "ok" : "failed", startedAt: at.toISOString(), durationMs: Math.round(performance.now() - t0), detail: `${resumedNote}${detail}` });
      if (!verdict.confirmedBy) {
        const before = record.generationAfter;
        let back = "";
        try {
          await step("rollback", async () => {
            back = await switchBack(before, verdict.why!);
            return back;
          });
        } finally {
          // Rolled back, or failed to and said so: either way no later run acts on it again.
          pendingConfirmation.clear();
        }
        throw new RunStop("rolled-back", `rolled-back: ${verdict.why}; ${back}`, verdict.why);
      }
      confirmed = `; ${detail}`;
    }

    if (cfg.reboot.enabled) {
      await step("reboot-check", async () => {
        const need = await rebootNeeded(cfg.reboot.bootedSystem, record.systemPath!, cfg.reboot.components);
        const inWindow = cfg.reboot.window === null || isWithinWindow(cfg.reboot.window, now());
        const reason = !need.needed
          ? "no reboot needed: kernel, initrd and modules are the booted ones"
          : inWindow
            ? `reboot requested: ${need.changed.join(", ")} changed`
            : `reboot needed (${need.changed.join(", ")} changed) but outside the reboot window; a later run inside the window reboots`;
        record.reboot = { needed: need.needed, changed: need.changed, requested: need.needed && inWindow, reason };
        if (record.reboot.requested) rebootArgv = expandArgv(cfg.reboot.argv, placeholders);
        return reason;
      });
    }

    record.outcome = "succeeded";
    const what = switched ? `switched to generation ${record.generationAfter}${confirmed}` : "system already current";
    record.summary = record.reboot?.requested ? `${what}; rebooting` : record.reboot?.needed ? `${what}; reboot pending (outside window)` : what;
  } catch (e) {
    if (e instanceof RunStop) {
      record.outcome = e.outcome;
      record.summary = e.summary;
      record.error = e.error;
    } else {
      record.outcome = "failed";
      record.summary = "self-update failed unexpectedly";
      record.error = (e as Error).message;
      runLog.error({ err: e }, "self-update failed unexpectedly");
    }
  }

  // The reboot command runs last. The default (shutdown -r +1) schedules it a minute ahead, which
  // leaves time to write the record and report it before the host goes down.
  if (rebootArgv) {
    const t0 = performance.now();
    const at = new Date();
    // Left before the reboot, for the boot check that follows it (boot-check.ts: boot rollback).
    const pending = record.systemPath ? bootPendingFor(selfUpdateBootSystem(cfg), record.id, record.systemPath) : undefined;
    if (pending) writeBootPending(cfg.stateDir, { ...pending, owner: "self-update" });
    else runLog.warn({ bootedSystem: cfg.reboot.bootedSystem }, "the booted system is no generation of the profile: the boot check after this reboot cannot roll back");
    const r = await run(rebootArgv);
    const ok = r.exitCode === 0;
    if (!ok && pending) clearBootPending(cfg.stateDir);
    steps.push({ name: "reboot", status: ok ? "ok" : "failed", startedAt: at.toISOString(), durationMs: Math.round(performance.now() - t0), detail: ok ? `ran ${rebootArgv[0]}` : describeFailure(r) });
    if (!ok && record.reboot) {
      record.reboot.requested = false;
      record.summary = `${record.summary.replace(/; rebooting$/, "")}; the reboot command failed`;
      record.error = describeFailure(r);
    }
  }
  record.finishedAt = now().toISOString();
  record.durationMs = Date.now() - startedMs;
  try {
    appendRunRecord(cfg.stateDir, record);
    runLog.info({ outcome: record.outcome, summary: record.summary, durationMs: record.durationMs, generationBefore: record.generationBefore, generationAfter: record.generationAfter }, "self-update run finished");
    if (cfg.broker && !reporter && (record.outcome === "locked" || record.outcome === "rolled-back")) {
      reporter = await connectReporter(cfg.broker, cfg.host, cfg.topicPrefix, runLog);
    }
    if (reporter) {
      await reporter.publish(jobStateOf(record, "finished"));
      await reporter.close();
    }
  } finally {
    (lock as HeldLock | undefined)?.release();
  }
  return record;
}
