/**
 * Health means "nothing broke", not only "it answered": besides the host's test scripts, the `test`
 * op compares systemd's failed units with those failed just before the last switch (a unit failed
 * only since is a failure; one failed before is reported, not blamed on the update) and runs the
 * checks declared in the agent's config (units that must be active, TCP and HTTP endpoints that
 * must answer). Argv and addresses come only from the config file.
 */
import { connect } from "node:net";
import { failedUnitsArgvOf, type AgentConfig } from "./config.js";
import { expandArgv } from "./os-profiles.js";
import { runProcess } from "./process.js";
import { UNIT_NAME } from "./self-update/config.js";
import type { PersistedState } from "./state.js";

export interface HealthCheck {
  name: string;
  ok: boolean;
  detail: string;
}

/** Unit names shown in one line; the rest is counted. */
const SHOWN = 10;
const list = (units: string[]) => units.slice(0, SHOWN).join(", ") + (units.length > SHOWN ? ` and ${units.length - SHOWN} more` : "");

/** The failed units now, or why they cannot be listed; undefined without systemd. */
export async function listFailedUnits(config: AgentConfig, env: NodeJS.ProcessEnv): Promise<{ units: string[] } | { error: string } | undefined> {
  const argv = failedUnitsArgvOf(config);
  if (!argv) return undefined;
  let out = "";
  const r = await runProcess(argv, {
    env,
    timeoutMs: config.health.timeoutSeconds * 1000,
    onLine: (stream, text) => {
      if (stream === "stdout" && out.length < 100_000) out += `${text}\n`;
    },
  }).done;
  if (r.spawnError) return { error: `${argv[0]} could not be started: ${r.spawnError}` };
  if (r.exitCode !== 0) return { error: `${argv.join(" ")} exited ${r.exitCode ?? r.signal}` };
  const units = out
    .split("\n")
    .map((line) => line.trim().split(/\s+/)[0] ?? "")
    .filter((unit) => UNIT_NAME.test(unit));
  return { units: [...new Set(units)].sort() };
}

/** Failed units now against those failed before the last switch. */
export async function checkFailedUnits(config: AgentConfig, env: NodeJS.ProcessEnv, before: PersistedState["failedUnitsBefore"]): Promise<HealthCheck | undefined> {
  const now = await listFailedUnits(config, env);
  if (!now) return undefined;
  if ("error" in now) return { name: "failed units", ok: false, detail: `cannot list failed units: ${now.error}` };
  const old = new Set(before?.units ?? []);
  const fresh = now.units.filter((u) => !old.has(u));
  const already = now.units.filter((u) => old.has(u));
  const beforeNote = already.length ? `; already failed before the switch (not blamed on it): ${list(already)}` : "";
  if (fresh.length > 0) return { name: "failed units", ok: false, detail: `failed since the switch: ${list(fresh)} (systemctl status ${fresh[0]})${beforeNote}` };
  return { name: "failed units", ok: true, detail: now.units.length === 0 ? "no failed units" : `no unit failed since the switch${beforeNote}` };
}

async function checkActive(config: AgentConfig, env: NodeJS.ProcessEnv, unit: string): Promise<HealthCheck> {
  const argv = expandArgv(config.health.isActiveArgv, { unit });
  const r = await runProcess(argv, { env, timeoutMs: config.health.timeoutSeconds * 1000 }).done;
  const ok = r.exitCode === 0;
  return { name: `unit ${unit}`, ok, detail: ok ? "active" : r.spawnError ? `${argv[0]} could not be started: ${r.spawnError}` : `not active (${argv.join(" ")} exited ${r.exitCode ?? r.signal})` };
}

function checkTcp(host: string, port: number, timeoutMs: number): Promise<HealthCheck> {
  const name = `tcp ${host}:${port}`;
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean, detail: string) => {
      socket.destroy();
      resolve({ name, ok, detail });
    };
    socket.setTimeout(timeoutMs, () => done(false, `no answer within ${timeoutMs / 1000} s`));
    socket.once("connect", () => done(true, "accepts connections"));
    socket.once("error", (e) => done(false, e.message));
  });
}

async function checkHttp(url: string, status: number | undefined, timeoutMs: number): Promise<HealthCheck> {
  const name = `http ${url}`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: "manual" });
    await res.body?.cancel();
    const ok = status !== undefined ? res.status === status : res.status < 400;
    return { name, ok, detail: `answered ${res.status}${ok ? "" : ` (expected ${status ?? "below 400"})`}` };
  } catch (e) {
    return { name, ok: false, detail: (e as Error).message };
  }
}

/** Every declared check, in config order, failed units first. */
export async function runHealthChecks(config: AgentConfig, env: NodeJS.ProcessEnv, before: PersistedState["failedUnitsBefore"]): Promise<HealthCheck[]> {
  const timeoutMs = config.health.timeoutSeconds * 1000;
  const results: HealthCheck[] = [];
  const units = await checkFailedUnits(config, env, before);
  if (units) results.push(units);
  for (const unit of config.health.activeUnits) results.push(await checkActive(config, env, unit));
  for (const t of config.health.tcp) results.push(await checkTcp(t.host, t.port, timeoutMs));
  for (const h of config.health.http) results.push(await checkHttp(h.url, h.status, timeoutMs));
  return results;
}
