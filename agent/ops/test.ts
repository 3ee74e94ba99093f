/**
 * `test`: every executable file in <checkout>/<testsDir>/common and <checkout>/<testsDir>/<host>,
 * in name order, with LOCKSTEP_SYSTEM, LOCKSTEP_HOST and LOCKSTEP_GENERATION; the result is kept
 * as lastTest (the Tests compartment).
 */
import { accessSync, constants, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { step, type AgentContext } from "../context.js";
import { runHealthChecks } from "../health.js";
import type { Outcome, RunningJob } from "../job.js";
import { profilePathOf } from "../os-profiles.js";
import { meaningfulErrorLine } from "../process.js";
import { readProfile, type ProfileState } from "../profile.js";

/** The host's test scripts, in the order they run. */
export function testScripts(checkoutDir: string, testsDir: string, host: string): Array<{ name: string; path: string }> {
  const base = join(checkoutDir, testsDir);
  const scripts: Array<{ name: string; path: string }> = [];
  for (const dir of ["common", host]) {
    let entries: string[] = [];
    try {
      entries = readdirSync(join(base, dir)).sort();
    } catch {
      continue;
    }
    for (const e of entries) {
      const path = join(base, dir, e);
      if (isExecutableFile(path)) scripts.push({ name: `${dir}/${e}`, path });
    }
  }
  return scripts;
}

/** What each test script gets (here and in the boot check): the host, and the system generation under test. */
export function testScriptEnv(env: NodeJS.ProcessEnv, host: string, profile: ProfileState): NodeJS.ProcessEnv {
  return { ...env, LOCKSTEP_HOST: host, LOCKSTEP_SYSTEM: profile.path ?? "", ...(profile.generation !== undefined ? { LOCKSTEP_GENERATION: String(profile.generation) } : {}) };
}

export async function test(ctx: AgentContext, job: RunningJob): Promise<Outcome> {
  const profile = readProfile(profilePathOf(ctx.config));
  const scripts = testScripts(ctx.checkout.dir, ctx.config.testsDir, ctx.host);
  const failed: string[] = [];
  const output: string[] = [];
  for (const s of scripts) {
    const r = await step(ctx, job, [s.path], {
      cwd: ctx.checkout.dir,
      timeoutMs: ctx.config.timeouts.testSeconds * 1000,
      env: testScriptEnv(ctx.env, ctx.host, profile),
    });
    if (job.cancelled) break;
    const ok = r.exitCode === 0;
    job.reporter.line("info", `${s.name}: ${ok ? "passed" : r.timedOut ? "timed out" : `failed (exit ${r.exitCode ?? r.signal})`}`);
    if (!ok) {
      failed.push(s.name);
      output.push(`${s.name}: ${meaningfulErrorLine(r.tail) ?? (r.timedOut ? "timed out" : `exit ${r.exitCode}`)}`);
    }
  }
  if (job.cancelled) return { state: "failed", summary: "cancelled" };
  const checks = await runHealthChecks(ctx.config, ctx.env, ctx.state.state.failedUnitsBefore);
  for (const c of checks) {
    job.reporter.line("info", `${c.name}: ${c.ok ? "ok" : "FAILED"}: ${c.detail}`);
    if (!c.ok) {
      failed.push(c.name);
      output.push(`${c.name}: ${c.detail}`);
    }
  }
  const total = scripts.length + checks.length;
  const passed = failed.length === 0;
  ctx.state.update((s) => {
    s.lastTest = {
      ...(profile.generation !== undefined ? { generation: profile.generation } : {}),
      passed,
      failed,
      total: scripts.length,
      at: new Date().toISOString(),
      ...(output.length ? { output: output.join("\n") } : {}),
    };
  });
  const gen = profile.generation !== undefined ? ` on generation ${profile.generation}` : "";
  const notes = checks.filter((c) => c.ok && c.detail.includes("not blamed")).map((c) => `${c.name}: ${c.detail}`);
  const note = notes.length ? ` (${notes.join("; ")})` : "";
  if (passed) return { state: "succeeded", summary: `${total}/${total} passed${gen}${note}`, exitCode: 0 };
  return { state: "failed", summary: `${failed.length}/${total} failed${gen}: ${output.join("; ")}`.slice(0, 1000), exitCode: 1, error: output.join("\n") };
}

function isExecutableFile(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
