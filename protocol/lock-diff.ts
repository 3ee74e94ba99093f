/**
 * The difference between two flake.lock files, as Nix sees it (`nix flake update` prints the same
 * entries), and its one-line text.
 *
 * Shape (protocol/schemas.ts LockDiff; the page, HA and the history show it):
 *
 *   {
 *     updated: [
 *       { input: "nixpkgs", kind: "updated",                    // locked → locked
 *         old: { type: "github", owner, repo, rev, date: "2025-12-10", lastModified, narHash },
 *         new: { type: "github", ..., rev, date: "2025-12-17" },
 *         followers: ["home-manager/nixpkgs", "sops/nixpkgs"] },  // follow it, changed with it
 *       { input: "nix/nixpkgs", kind: "now-pinned",              // follows → its own lock
 *         old: { type: "follows", follows: "nixpkgs" }, new: { type: "github", rev, date } },
 *       { input: "x/nixpkgs", kind: "now-follows", old: {...}, new: { type: "follows", follows: "nixpkgs" } },
 *       { input: "y/utils", kind: "follows-changed", old: { type: "follows", follows: "a" }, new: { type: "follows", follows: "b" } },
 *     ],
 *     added: [{ input: "sops", new: { type: "github", rev, date } }],
 *     removed: [{ input: "old", old: { type: "github", rev, date } }],
 *   }
 *
 * Inputs are Nix's input paths, in Nix's order (segment by segment). `type` is the lock's
 * (github, gitlab, sourcehut, git, tarball, file, path, mercurial) or "follows". An input that
 * follows another and whose follows path did not change is never an entry of its own: it is
 * listed in `followers` of the entry it leads to. Entries stored before `kind` existed have none.
 */
import type { ChangeKind, InputChange, LockDiff, LockedRef } from "./schemas.js";
import { compareInputPaths, parseFlakeLock, readLockInputs, type LockInputs } from "./flake-lock.js";

/** The kind of an update from its two sides (a side with `follows` follows another input). */
export function changeKind(o: LockedRef, n: LockedRef): ChangeKind {
  if (o.follows !== undefined) return n.follows !== undefined ? "follows-changed" : "now-pinned";
  return n.follows !== undefined ? "now-follows" : "updated";
}

/**
 * Diff two read locks. An edge whose follows path did not change is not a change of its own even
 * when what it follows moved: it is listed in `followers` of the input it leads to.
 */
export function diffLockInputs(before: LockInputs, after: LockInputs): LockDiff {
  const diff: LockDiff = { added: [], removed: [], updated: [] };
  for (const [input, n] of after.inputs) {
    const o = before.inputs.get(input);
    if (!o) diff.added.push({ input, new: n.ref });
    else if (o.key !== n.key) diff.updated.push({ input, kind: changeKind(o.ref, n.ref), old: o.ref, new: n.ref });
  }
  for (const [input, o] of before.inputs) if (!after.inputs.has(input)) diff.removed.push({ input, old: o.ref });
  const byPath = new Map(diff.updated.map((c) => [c.input, c]));
  for (const [input, n] of after.inputs) {
    const o = before.inputs.get(input);
    if (n.follows === undefined || o?.key !== n.key || n.node === undefined) continue;
    const target = byPath.get(after.pathOfNode.get(n.node) ?? "");
    if (target) (target.followers ??= []).push(input);
  }
  const byName = (a: InputChange, b: InputChange) => compareInputPaths(a.input, b.input);
  diff.added.sort(byName);
  diff.removed.sort(byName);
  diff.updated.sort(byName);
  return diff;
}

/** Diff two flake.lock texts; throws FlakeLockError when either cannot be read. */
export function diffLocks(beforeText: string, afterText: string): LockDiff {
  return diffLockInputs(readLockInputs(parseFlakeLock(beforeText)), readLockInputs(parseFlakeLock(afterText)));
}

/** The diffs of an update's PRs as one (its parts change different inputs, so nothing overlaps). */
export function combineLockDiffs(diffs: LockDiff[]): LockDiff {
  return { updated: diffs.flatMap((d) => d.updated), added: diffs.flatMap((d) => d.added), removed: diffs.flatMap((d) => d.removed) };
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

/** One line per change: "nixpkgs 2025-12-10 → 2025-12-17 (+2 following)". */
export function describeChange(c: InputChange): string {
  const following = c.followers?.length ? ` (+${c.followers.length} following)` : "";
  if (!c.old) return `${c.input} added (${describeRef(c.new)})`;
  if (!c.new) return `${c.input} removed`;
  const o = c.old, n = c.new;
  if (o.date && n.date && o.date !== n.date) return `${c.input} ${o.date} → ${n.date}${following}`;
  return `${c.input} ${describeRef(o)} → ${describeRef(n)}${following}`;
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
