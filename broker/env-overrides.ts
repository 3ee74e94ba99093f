/**
 * LOCKSTEP_* environment overrides on top of a JSON config, shared by the broker's and the hub's
 * loaders: each variable names a path in the config object and how to read its string.
 */

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
