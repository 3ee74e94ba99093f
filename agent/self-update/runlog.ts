/**
 * Every self-update run is one JSON line in <stateDir>/self-update-runs.jsonl: what ran, how long
 * each step took, and how it ended. `lockstep-agent status` reads it back (validated: a truncated
 * line from a crash is skipped, not fatal).
 */
import { appendFileSync, mkdirSync, readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { z } from "zod";

export const RUN_LOG_FILE = "self-update-runs.jsonl";

/** reboot-check decides whether a reboot is needed and allowed; reboot is running the command. */
export const STEP_NAMES = ["lock", "health", "update", "build", "switch", "reboot-check", "reboot", "boot-check", "boot-rollback", "confirm", "rollback"] as const;
export const RunStep = z.object({
  name: z.enum(STEP_NAMES),
  status: z.enum(["ok", "failed", "skipped"]),
  startedAt: z.string(),
  durationMs: z.number().nonnegative(),
  detail: z.string().optional(),
});
export type RunStep = z.infer<typeof RunStep>;

/**
 * succeeded: updated (or already current); unhealthy: a health check stopped the run before any
 * change; failed: update, build or switch failed (the running generation is untouched unless the
 * switch itself failed); locked: another run was in progress; rolled-back: switched, but the hub
 * did not confirm within confirmTimeoutSeconds (magic rollback: the previous generation runs). A boot check (kind "boot-check"):
 * succeeded, the new generation booted healthy; rolled-back, it did not, the previous generation
 * is the boot default again and the host reboots; failed, unhealthy again after that rollback
 * (stopped: no second reboot) or the rollback itself failed.
 */
export const RUN_OUTCOMES = ["succeeded", "unhealthy", "failed", "locked", "rolled-back"] as const;
export const RunOutcome = z.enum(RUN_OUTCOMES);
export type RunOutcome = z.infer<typeof RunOutcome>;

export const RunRecord = z.object({
  id: z.string(),
  host: z.string(),
  /** "boot-check": the check after booting the generation a run rebooted into (boot-check.ts); absent: a self-update run. */
  kind: z.literal("boot-check").optional(),
  mode: z.enum(["flake-update", "git-pull"]),
  startedAt: z.string(),
  finishedAt: z.string(),
  durationMs: z.number().nonnegative(),
  outcome: RunOutcome,
  summary: z.string(),
  error: z.string().optional(),
  steps: z.array(RunStep),
  health: z.array(z.object({ check: z.string(), ok: z.boolean(), detail: z.string() })).default([]),
  commitBefore: z.string().optional(),
  commitAfter: z.string().optional(),
  lockChanged: z.boolean().optional(),
  systemPath: z.string().optional(),
  generationBefore: z.number().int().optional(),
  generationAfter: z.number().int().optional(),
  reboot: z
    .object({ needed: z.boolean(), changed: z.array(z.string()), requested: z.boolean(), reason: z.string() })
    .optional(),
});
export type RunRecord = z.infer<typeof RunRecord>;

/** A record for a run starting now (outcome "failed" until it says otherwise), with an id that sorts by time. */
export function startRunRecord(kind: "self-update" | "boot-check", cfg: { host: string; mode: RunRecord["mode"] }, started: Date): RunRecord {
  const stamp = started.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return {
    id: `${kind}-${stamp}-${randomBytes(2).toString("hex")}`,
    host: cfg.host,
    ...(kind === "boot-check" ? { kind } : {}),
    mode: cfg.mode,
    startedAt: started.toISOString(),
    finishedAt: started.toISOString(),
    durationMs: 0,
    outcome: "failed",
    summary: "",
    steps: [],
    health: [],
  };
}

export function appendRunRecord(stateDir: string, record: RunRecord): void {
  mkdirSync(stateDir, { recursive: true });
  appendFileSync(join(stateDir, RUN_LOG_FILE), JSON.stringify(record) + "\n", { mode: 0o640 });
}

/** The last `count` valid records, oldest first. */
export function readRunRecords(stateDir: string, count = 10): RunRecord[] {
  let text: string;
  try {
    text = readFileSync(join(stateDir, RUN_LOG_FILE), "utf8");
  } catch {
    return [];
  }
  const records: RunRecord[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const r = RunRecord.safeParse(JSON.parse(line));
      if (r.success) records.push(r.data);
    } catch {
      // a line cut short by a crash or power loss
    }
  }
  return records.slice(-count);
}
