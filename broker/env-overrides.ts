/**
 * LOCKSTEP_* environment overrides on top of a JSON config, shared by the broker's and the hub's
 * loaders: each variable names a path in the config object and how to read its string.
 */
import { readFileSync } from "node:fs";
import { ConfigError } from "../protocol/errors.js";

/** Read a JSON config file that must hold an object. Throws ConfigError. */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`, "check the path given with --config");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new ConfigError(`config file ${file} must hold a JSON object`);
  return parsed as Record<string, unknown>;
}
export type EnvKind = "string" | "port" | "int" | "number" | "boolean";

/** Env strings become numbers/booleans when they look like one; otherwise zod reports the field. */
export function envValue(raw: string, kind: EnvKind): unknown {
  const t = raw.trim();
  if ((kind === "port" || kind === "int") && /^\d+$/.test(t)) return Number(t);
  if (kind === "number" && /^\d+(\.\d+)?$/.test(t)) return Number(t);
  if (kind === "boolean") {
    if (/^(1|true|yes|on)$/i.test(t)) return true;
    if (/^(0|false|no|off)$/i.test(t)) return false;
  }
  return raw;
}

/** Set `value` at `path` in `target`, creating (or replacing non-object) intermediate objects. */
export function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== "object" || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}
