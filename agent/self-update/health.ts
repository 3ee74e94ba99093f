/**
 * Health checks that run before a self-update touches anything: enough free disk, systemd happy
 * (no required unit failed; other failed units are reported), and the host not freshly booted. Each is configurable and can be switched off.
 */
import { statfs, readFile } from "node:fs/promises";
import { uptime as osUptime } from "node:os";
import { z } from "zod";
import { UNIT_NAME, type HealthConfig } from "./config.js";
import { runCommand } from "./exec.js";

export interface HealthResult {
  /** unit and test: the boot check's active units and test scripts (boot-check.ts); agent and health: the daemon's (its start, its declared checks). */
  check: "disk" | "system-state" | "failed-units" | "uptime" | "unit" | "test" | "agent" | "health";
  ok: boolean;
  detail: string;
}

export interface HealthOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export async function checkDisk(path: string, maxUsedPercent: number): Promise<HealthResult> {
  try {
    const s = await statfs(path);
    // Like df: used = total - free; the share is of what non-root users can have (used + avail).
    const used = (s.blocks - s.bfree) * s.bsize;
    const usable = used + s.bavail * s.bsize;
    const percent = usable > 0 ? Math.round((used / usable) * 1000) / 10 : 100;
    const ok = percent <= maxUsedPercent;
    return { check: "disk", ok, detail: `${path} is ${percent}% used (limit ${maxUsedPercent}%)${ok ? "" : ": free space (nix-collect-garbage -d) before updating"}` };
  } catch (e) {
    return { check: "disk", ok: false, detail: `cannot measure ${path}: ${(e as Error).message}` };
  }
}

const SystemState = z.string().trim().regex(/^[a-z-]+$/, "a systemd state word");

export async function checkSystemState(argv: string[], accepted: string[], opts: HealthOptions = {}): Promise<HealthResult> {
  // is-system-running exits non-zero for anything but "running": the printed state is what counts.
  const r = await runCommand(argv, { env: opts.env, timeoutMs: opts.timeoutMs ?? 30_000 });
  if (r.spawnError) return { check: "system-state", ok: false, detail: `${argv[0]} could not be started: ${r.spawnError}` };
  const state = SystemState.safeParse(r.stdout.split("\n")[0] ?? "");
  if (!state.success) return { check: "system-state", ok: false, detail: `${argv.join(" ")} printed no state (exit ${r.exitCode})` };
  const ok = accepted.includes(state.data);
  return { check: "system-state", ok, detail: `system is ${state.data}${ok ? "" : ` (accepted: ${accepted.join(", ")}; see systemctl --failed)`}` };
}

/** Unit names shown in a detail line; the rest is counted. */
const SHOWN_UNITS = 10;

/**
 * `systemctl list-units --state=failed --plain --no-legend`: one unit per line, name first. Every
 * failed unit is reported; only a failed `required` one stops the run. When the list cannot be
 * read, the run stops only if some unit is required (otherwise there was nothing to enforce).
 */
export async function checkFailedUnits(argv: string[], required: string[], opts: HealthOptions = {}): Promise<HealthResult> {
  const r = await runCommand(argv, { env: opts.env, timeoutMs: opts.timeoutMs ?? 30_000 });
  if (r.spawnError || r.exitCode !== 0) {
    const why = r.spawnError ? `${argv[0]} could not be started: ${r.spawnError}` : `${argv.join(" ")} exited ${r.exitCode}`;
    return { check: "failed-units", ok: required.length === 0, detail: `cannot list failed units (${why})` };
  }
  const failed = r.stdout
    .split("\n")
    .map((line) => line.trim().split(/\s+/)[0] ?? "")
    .filter((unit) => UNIT_NAME.test(unit));
  const blocking = required.filter((u) => failed.includes(u));
  const shown = failed.slice(0, SHOWN_UNITS).join(", ") + (failed.length > SHOWN_UNITS ? ` and ${failed.length - SHOWN_UNITS} more` : "");
  if (blocking.length > 0) return { check: "failed-units", ok: false, detail: `required unit(s) failed: ${blocking.join(", ")} (systemctl status ${blocking[0]})` };
  return { check: "failed-units", ok: true, detail: failed.length === 0 ? "no failed units" : `failed units (not required, the run goes ahead): ${shown}` };
}

/** /proc/uptime: "12345.67 23456.78" -- seconds since boot, then idle seconds. */
const Uptime = z.string().regex(/^\d+(\.\d+)?\s/).transform((s) => Number(s.split(/\s/)[0]));

export async function checkUptime(uptimeFile: string | null, minSeconds: number): Promise<HealthResult> {
  if (uptimeFile === null) return uptimeResult(osUptime(), minSeconds);
  try {
    const r = Uptime.safeParse(await readFile(uptimeFile, "utf8"));
    if (!r.success) return { check: "uptime", ok: false, detail: `${uptimeFile} is not in /proc/uptime format` };
    return uptimeResult(r.data, minSeconds);
  } catch (e) {
    return { check: "uptime", ok: false, detail: `cannot read ${uptimeFile}: ${(e as Error).message}` };
  }
}

function uptimeResult(seconds: number, minSeconds: number): HealthResult {
  const ok = seconds >= minSeconds;
  return { check: "uptime", ok, detail: `up ${Math.floor(seconds)} s (minimum ${minSeconds} s)${ok ? "" : ": the host booted recently; the next run will update it"}` };
}

export async function runHealthChecks(cfg: HealthConfig, opts: HealthOptions = {}): Promise<HealthResult[]> {
  const results: HealthResult[] = [];
  if (cfg.disk.enabled) results.push(await checkDisk(cfg.disk.path, cfg.disk.maxUsedPercent));
  if (cfg.systemState.enabled) results.push(await checkSystemState(cfg.systemState.argv, cfg.systemState.accepted, opts));
  if (cfg.failedUnits.enabled) results.push(await checkFailedUnits(cfg.failedUnits.argv, cfg.failedUnits.required, opts));
  if (cfg.uptime.enabled) results.push(await checkUptime(cfg.uptime.uptimeFile, cfg.uptime.minSeconds));
  return results;
}
