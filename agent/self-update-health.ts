/**
 * Health checks that run before a self-update touches anything: enough free disk, systemd happy,
 * and the host not freshly booted. Each is configurable and can be switched off.
 */
import { statfs, readFile } from "node:fs/promises";
import { uptime as osUptime } from "node:os";
import { z } from "zod";
import type { HealthConfig } from "./self-update-config.js";
import { runCommand } from "./self-update-exec.js";

export interface HealthResult {
  check: "disk" | "system-state" | "uptime";
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
  if (cfg.uptime.enabled) results.push(await checkUptime(cfg.uptime.uptimeFile, cfg.uptime.minSeconds));
  return results;
}
