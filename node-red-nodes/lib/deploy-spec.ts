/**
 * How the deploy node builds a RolloutSpec (layered with rollout/spec.ts mergeSpecLayers): the hub's defaults (settings.lockstep.rollout), then the
 * node's own fields, then msg.spec, then the commit and hosts of the message. Validation is the
 * rollout engine's own zod schema (parseRolloutSpec); this file only reads editor strings.
 */
import { ConfigError } from "../../protocol/errors.js";
import { optionalNumber, optionalString } from "./input.js";

type Obj = Record<string, unknown>;

/** "2" → {size: 2}; "50%" → {percent: 50}. */
function sizeOrPercent(text: string, what: string): Obj {
  const m = /^(\d+(?:\.\d+)?)\s*(%?)$/.exec(text);
  if (!m) throw new ConfigError(`${what} "${text}" is neither a number nor a percentage`);
  return m[2] ? { percent: Number(m[1]) } : { size: Number(m[1]) };
}

/** The deploy node's editor fields as a partial spec (blank fields are left out). */
export function specFromNodeConfig(def: Obj): Obj {
  const spec: Obj = {};
  const strategy: Obj = {};
  const canary = optionalString(def.canary);
  if (canary !== undefined) {
    strategy.canary = /^\d+$/.test(canary) ? Number(canary) : canary.split(/[\s,]+/).filter(Boolean);
  }
  const soak = optionalNumber(def.soak);
  if (soak !== undefined) strategy.soakMs = Math.round(soak * 1000);
  const waves = optionalString(def.waves);
  if (waves !== undefined) strategy.waves = sizeOrPercent(waves, "wave size");
  const parallelism = optionalNumber(def.parallelism);
  if (parallelism !== undefined) strategy.parallelism = parallelism;
  const healthTimeout = optionalNumber(def.healthTimeout);
  if (healthTimeout !== undefined) strategy.healthTimeoutMs = Math.round(healthTimeout * 1000);
  if (Object.keys(strategy).length) spec.strategy = strategy;

  const budget = optionalString(def.failureBudget);
  if (budget !== undefined) {
    const b = sizeOrPercent(budget, "failure budget");
    spec.failureBudget = "percent" in b ? b : { count: b.size };
  }
  const onFailure = optionalString(def.onFailure);
  if (onFailure !== undefined) spec.onFailure = onFailure;
  const revert = optionalString(def.revertOnFailure);
  if (revert === "true" || revert === "false") spec.revertOnFailure = revert === "true";
  const offline = optionalString(def.offline);
  const offlineMinutes = optionalNumber(def.offlineMinutes) ?? 30;
  if (offline === "skip") spec.offline = "skip";
  else if (offline === "wait") spec.offline = { wait: Math.round(offlineMinutes * 60_000) };
  else if (offline === "queue") spec.offline = { queue: Math.round(offlineMinutes * 60_000) };
  const windows = optionalString(def.respectWindows);
  if (windows === "true" || windows === "false") spec.respectWindows = windows === "true";
  return spec;
}
