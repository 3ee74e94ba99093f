/**
 * flake.lock (version 7) reader, lock diff, and a parser for Nix's "Flake lock file updates:" text.
 * Pure: callers hand in file contents.
 */
import { z } from "zod";
import type { InputChange, LockDiff, LockedRef } from "./schemas.js";

const InputRef = z.union([z.string(), z.array(z.string())]);
const LockNode = z
  .object({
    inputs: z.record(z.string(), InputRef).optional(),
    locked: z.record(z.string(), z.unknown()).optional(),
    original: z.record(z.string(), z.unknown()).optional(),
    flake: z.boolean().optional(),
  })
  .passthrough();
const FlakeLockFile = z.object({
  nodes: z.record(z.string(), LockNode),
  root: z.string(),
  version: z.number().int(),
});
export type FlakeLockFile = z.infer<typeof FlakeLockFile>;

export class FlakeLockError extends Error {
  override name = "FlakeLockError";
}

export const SUPPORTED_LOCK_VERSIONS = [5, 6, 7];

/** Parse flake.lock text; throws FlakeLockError naming what is wrong. */
export function parseFlakeLock(text: string): FlakeLockFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FlakeLockError(`flake.lock is not valid JSON: ${(e as Error).message}`);
  }
  const r = FlakeLockFile.safeParse(json);
  if (!r.success) {
    const first = r.error.issues[0];
    throw new FlakeLockError(`flake.lock has an unexpected shape at ${first?.path.join(".") || "(top)"}: ${first?.message}`);
  }
  if (!SUPPORTED_LOCK_VERSIONS.includes(r.data.version)) {
    throw new FlakeLockError(`flake.lock version ${r.data.version} is not supported (supported: ${SUPPORTED_LOCK_VERSIONS.join(", ")})`);
  }
  if (!r.data.nodes[r.data.root]) throw new FlakeLockError(`flake.lock root node "${r.data.root}" is missing`);
  return r.data;
}

export function isoDay(lastModified: number): string {
  return new Date(lastModified * 1000).toISOString().slice(0, 10);
}

function toLockedRef(locked: Record<string, unknown> | undefined, original: Record<string, unknown> | undefined): LockedRef {
  const l = locked ?? {};
  const str = (k: string) => (typeof l[k] === "string" ? (l[k] as string) : undefined);
  const ref: LockedRef = { type: str("type") ?? "unknown" };
  for (const k of ["rev", "narHash", "owner", "repo", "url"] as const) {
    const v = str(k);
    if (v !== undefined) ref[k] = v;
  }
  const r = str("ref") ?? (typeof original?.ref === "string" ? (original.ref as string) : undefined);
  if (r !== undefined) ref.ref = r;
  if (typeof l.lastModified === "number") {
    ref.lastModified = l.lastModified;
    ref.date = isoDay(l.lastModified);
  }
  return ref;
}

/** A lock flattened to input paths: "nixpkgs", "home-manager", "home-manager/nixpkgs", ... */
export type FlatLock = Map<string, LockedRef>;

const MAX_DEPTH = 16;

/**
 * Resolve every input reachable from the root. `follows` inputs appear with `follows: "a/b"` and
 * the resolved target's rev/date, so a diff shows both what they follow and what that is.
 */
export function flattenLock(lock: FlakeLockFile): FlatLock {
  const out: FlatLock = new Map();
  const resolvePath = (path: string[]): string | undefined => {
    let node = lock.nodes[lock.root];
    let key: string | undefined = lock.root;
    for (const name of path) {
      const ref = node?.inputs?.[name];
      if (ref === undefined) return undefined;
      key = typeof ref === "string" ? ref : resolvePath(ref);
      if (key === undefined) return undefined;
      node = lock.nodes[key];
    }
    return key;
  };
  const walk = (nodeKey: string, prefix: string[], depth: number) => {
    if (depth > MAX_DEPTH) return;
    const node = lock.nodes[nodeKey];
    for (const [name, ref] of Object.entries(node?.inputs ?? {})) {
      const path = [...prefix, name];
      const id = path.join("/");
      if (typeof ref === "string") {
        const child = lock.nodes[ref];
        out.set(id, toLockedRef(child?.locked, child?.original));
        walk(ref, path, depth + 1);
      } else {
        const target = resolvePath(ref);
        const child = target ? lock.nodes[target] : undefined;
        const lr = child ? toLockedRef(child.locked, child.original) : { type: "unknown" };
        lr.follows = ref.join("/");
        out.set(id, lr);
      }
    }
  };
  walk(lock.root, [], 0);
  return out;
}

/** Newest input date in the lock (unix seconds): the "age" of a lock file. */
export function lockLastModified(lock: FlakeLockFile): number | undefined {
  let newest: number | undefined;
  for (const ref of flattenLock(lock).values()) {
    if (ref.follows === undefined && ref.lastModified !== undefined && (newest === undefined || ref.lastModified > newest)) {
      newest = ref.lastModified;
    }
  }
  return newest;
}

function sameRef(a: LockedRef, b: LockedRef): boolean {
  return a.rev === b.rev && a.narHash === b.narHash && a.follows === b.follows && a.lastModified === b.lastModified && a.url === b.url && a.type === b.type;
}

export function diffFlatLocks(before: FlatLock, after: FlatLock): LockDiff {
  const diff: LockDiff = { added: [], removed: [], updated: [] };
  for (const [input, n] of after) {
    const o = before.get(input);
    if (!o) diff.added.push({ input, new: n });
    else if (!sameRef(o, n)) diff.updated.push({ input, old: o, new: n });
  }
  for (const [input, o] of before) if (!after.has(input)) diff.removed.push({ input, old: o });
  const byName = (a: InputChange, b: InputChange) => a.input.localeCompare(b.input);
  diff.added.sort(byName);
  diff.removed.sort(byName);
  diff.updated.sort(byName);
  return diff;
}

/** Diff two flake.lock texts. */
export function diffLocks(beforeText: string, afterText: string): LockDiff {
  return diffFlatLocks(flattenLock(parseFlakeLock(beforeText)), flattenLock(parseFlakeLock(afterText)));
}

export function isEmptyDiff(d: LockDiff): boolean {
  return d.added.length + d.removed.length + d.updated.length === 0;
}

function describeRef(r?: LockedRef): string {
  if (!r) return "?";
  if (r.follows !== undefined && r.rev === undefined) return `follows ${r.follows}`;
  const rev = r.rev ? r.rev.slice(0, 7) : "";
  return [r.date, rev].filter(Boolean).join(" ") || (r.follows !== undefined ? `follows ${r.follows}` : r.type);
}

/** One line per change: "nixpkgs 2025-12-10 → 2025-12-17". */
export function describeChange(c: InputChange): string {
  if (!c.old) return `${c.input} added (${describeRef(c.new)})`;
  if (!c.new) return `${c.input} removed`;
  const o = c.old, n = c.new;
  if (o.date && n.date && o.date !== n.date) return `${c.input} ${o.date} → ${n.date}`;
  return `${c.input} ${describeRef(o)} → ${describeRef(n)}`;
}

/** Human summary of a diff; `max` limits how many inputs are named before "+N more". */
export function formatLockDiff(d: LockDiff, opts: { max?: number; separator?: string } = {}): string {
  const all = [...d.updated, ...d.added, ...d.removed];
  if (all.length === 0) return "no input changes";
  const max = opts.max ?? all.length;
  const parts = all.slice(0, max).map(describeChange);
  if (all.length > max) parts.push(`+${all.length - max} more`);
  return parts.join(opts.separator ?? ", ");
}

// ---------------------------------------------------------------------------------------------
// "Flake lock file updates:" text, as printed by `nix flake update` and pasted into PR bodies.

/** Turn a flake reference string from Nix's output into a LockedRef. */
export function parseFlakeRefString(s: string, date?: string): LockedRef {
  const ref: LockedRef = { type: "unknown", url: s };
  const gh = /^(github|gitlab|sourcehut):([^/]+)\/([^/?]+)(?:\/([^?]+))?/.exec(s);
  if (gh) {
    ref.type = gh[1]!;
    ref.owner = gh[2]!;
    ref.repo = gh[3]!;
    if (gh[4] && /^[0-9a-f]{40}$/.test(gh[4])) ref.rev = gh[4];
    else if (gh[4]) ref.ref = gh[4];
  } else {
    const m = /^([a-z]+)(?:\+[a-z]+)?:/.exec(s);
    if (m) ref.type = m[1]!;
    const rev = /[?&]rev=([0-9a-f]{40})/.exec(s) ?? /\b([0-9a-f]{40})\b/.exec(s);
    if (rev) ref.rev = rev[1]!;
    const r = /[?&]ref=([^&]+)/.exec(s);
    if (r) ref.ref = decodeURIComponent(r[1]!);
  }
  if (date) {
    ref.date = date;
    ref.lastModified = Math.floor(Date.parse(`${date}T00:00:00Z`) / 1000);
  }
  return ref;
}

const ITEM_RE = /^\s*[•*-]\s+(Updated|Added|Removed)\s+(?:input\s+)?'([^']+)'\s*:?\s*(.*)$/;
const REF_RE = /(follows\s+'([^']*)')|'([^']+)'(?:\s*\((\d{4}-\d{2}-\d{2})\))?/g;

/**
 * Parse the "Flake lock file updates:" block. Handles the multi-line form
 * ("• Updated input 'x':" then "'old' (date)" and "→ 'new' (date)" lines) and the older one-line
 * form ("* Updated 'x': 'old' -> 'new'"). Returns null when the text has no such block.
 */
export function parseLockUpdateText(text: string): LockDiff | null {
  const start = text.search(/Flake lock file updates?:/i);
  if (start < 0) return null;
  const lines = text.slice(start).split(/\r?\n/).slice(1);
  const items: { action: string; input: string; body: string }[] = [];
  for (const raw of lines) {
    const line = raw.replace(/^\s*>\s?/, ""); // quoted in Markdown
    const m = ITEM_RE.exec(line);
    if (m) {
      items.push({ action: m[1]!, input: m[2]!, body: m[3] ?? "" });
      continue;
    }
    const cur = items[items.length - 1];
    if (!cur) continue;
    if (/^\s*$/.test(line) || /^\s*```/.test(line)) continue;
    if (/^\s+/.test(line) || /^\s*(→|->)/.test(line)) cur.body += " " + line.trim();
    else break; // end of the block
  }
  const diff: LockDiff = { added: [], removed: [], updated: [] };
  for (const it of items) {
    const refs: LockedRef[] = [];
    for (const m of it.body.matchAll(REF_RE)) {
      if (m[1]) refs.push({ type: "unknown", follows: m[2]! });
      else if (m[3]) refs.push(parseFlakeRefString(m[3], m[4]));
    }
    if (it.action === "Added") diff.added.push({ input: it.input, new: refs[0] ?? { type: "unknown" } });
    else if (it.action === "Removed") diff.removed.push({ input: it.input, old: refs[0] ?? { type: "unknown" } });
    else diff.updated.push({ input: it.input, old: refs[0] ?? { type: "unknown" }, new: refs[1] ?? refs[0] ?? { type: "unknown" } });
  }
  return diff;
}
