/**
 * A lock diff as a reader sees it: one row per input with old rev and date → new rev and date,
 * what changed about `follows`, a link to the upstream compare view, and the inputs that only
 * follow it (and so changed with it) grouped under it instead of filling the list.
 *
 * No zod and no Node: the fleet page's browser module (protocol/page.ts) is built from this file.
 */
import type { InputChange, LockDiff, LockedRef } from "./schemas.js";

/** What happened to one input. Derived from old/new when a stored diff has no `kind`. */
export type LockRowKind = "updated" | "added" | "removed" | "follows-changed" | "now-pinned" | "now-follows" | "follows-only";

/** One side of a change, ready to print: any part may be missing in a lock. */
export interface LockSide {
  /** Short rev (7 characters), when the input has one. */
  rev?: string;
  /** Day of the input's last commit (YYYY-MM-DD). */
  date?: string;
  /** The input path this side follows, when it follows one. */
  follows?: string;
  /** Source type when there is neither rev nor date (path, tarball, ...). */
  type: string;
}

export interface LockDiffRow {
  input: string;
  kind: LockRowKind;
  old?: LockSide;
  new?: LockSide;
  /** Upstream compare view (GitHub, GitLab, sourcehut) between the two revs, when both are known. */
  compareUrl?: string;
  /** Inputs that follow this one and changed only because it did. */
  followers: string[];
}

/** An InputChange as stored now or later: the `kind`/`followers` fields are optional extras. */
type Change = InputChange & { kind?: string; followers?: unknown };

const FULL_REV = /^[0-9a-f]{40}$/;
// Owner and repository names as the forges allow them; anything else gets no link.
const SAFE_NAME = /^~?[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const GIT_URL = /^(?:git\+)?https:\/\/(github\.com|gitlab\.com)\/([^/]+)\/([^/?#]+?)(?:\.git)?(?:[?#].*)?$/;

function side(r: LockedRef): LockSide {
  const s: LockSide = { type: r.type };
  if (r.rev) s.rev = r.rev.slice(0, 7);
  if (r.date) s.date = r.date;
  if (r.follows !== undefined) s.follows = r.follows;
  return s;
}

/** Forge, owner and repository of a locked input, when it lives on GitHub, GitLab or sourcehut. */
function forgeOf(r: LockedRef): { forge: "github" | "gitlab" | "sourcehut"; owner: string; repo: string } | undefined {
  if ((r.type === "github" || r.type === "gitlab" || r.type === "sourcehut") && r.owner && r.repo) {
    return { forge: r.type, owner: r.owner, repo: r.repo };
  }
  const m = r.url ? GIT_URL.exec(r.url) : null;
  if (m) return { forge: m[1] === "github.com" ? "github" : "gitlab", owner: m[2]!, repo: m[3]! };
  return undefined;
}

/**
 * The upstream view of what changed between two locked revs: GitHub's and GitLab's compare pages,
 * sourcehut's log from the new rev (it has no compare page). Undefined unless both sides are the
 * same repository with full hex revs, so nothing from a lock file ever shapes a URL beyond those.
 */
export function compareUrl(oldRef: LockedRef | undefined, newRef: LockedRef | undefined): string | undefined {
  if (!oldRef || !newRef || !oldRef.rev || !newRef.rev || oldRef.rev === newRef.rev) return undefined;
  if (!FULL_REV.test(oldRef.rev) || !FULL_REV.test(newRef.rev)) return undefined;
  const a = forgeOf(oldRef), b = forgeOf(newRef);
  if (!a || !b || a.forge !== b.forge || a.owner.toLowerCase() !== b.owner.toLowerCase() || a.repo.toLowerCase() !== b.repo.toLowerCase()) return undefined;
  if (!SAFE_NAME.test(b.owner) || !SAFE_NAME.test(b.repo)) return undefined;
  switch (b.forge) {
    case "github":
      return `https://github.com/${b.owner}/${b.repo}/compare/${oldRef.rev}...${newRef.rev}`;
    case "gitlab":
      return `https://gitlab.com/${b.owner}/${b.repo}/-/compare/${oldRef.rev}...${newRef.rev}`;
    case "sourcehut": {
      const owner = b.owner.startsWith("~") ? b.owner : `~${b.owner}`;
      return `https://git.sr.ht/${owner}/${b.repo}/log/${newRef.rev}`;
    }
  }
}

function kindOf(c: Change): LockRowKind {
  if (!c.old) return "added";
  if (!c.new) return "removed";
  const o = c.old.follows, n = c.new.follows;
  if (o !== undefined && n !== undefined) return o === n ? "follows-only" : "follows-changed";
  if (o !== undefined) return "now-pinned";
  if (n !== undefined) return "now-follows";
  return "updated";
}

const stringList = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);

/**
 * Rows for a diff: updated inputs, then added, then removed (as formatLockDiff orders them).
 * An input whose `follows` did not change is listed under the input it follows when that one is
 * in the diff (diffs stored before `followers` existed list them on their own; they are grouped
 * here the same way).
 */
export function lockDiffRows(diff: LockDiff): LockDiffRow[] {
  const changes: Change[] = [...(diff.updated ?? []), ...(diff.added ?? []), ...(diff.removed ?? [])];
  const rows: LockDiffRow[] = [];
  const byInput = new Map<string, LockDiffRow>();
  for (const c of changes) {
    const kind = kindOf(c);
    const row: LockDiffRow = { input: c.input, kind, followers: stringList(c.followers) };
    if (c.old) row.old = side(c.old);
    if (c.new) row.new = side(c.new);
    // A compare view shows an upstream update; a change of what an input follows is not one.
    const url = kind === "updated" || kind === "follows-only" ? compareUrl(c.old, c.new) : undefined;
    if (url) row.compareUrl = url;
    rows.push(row);
    byInput.set(c.input, row);
  }
  return rows.filter((row) => {
    if (row.kind !== "follows-only") return true;
    const target = byInput.get(row.new?.follows ?? "");
    if (!target || target === row) return true;
    if (!target.followers.includes(row.input)) target.followers.push(row.input);
    return false;
  });
}

/** "2025-12-17 abc1234", "follows 'nixpkgs'", or the source type when neither is known. */
export function describeSide(s: LockSide | undefined): string {
  if (!s) return "?";
  if (s.follows !== undefined && !s.rev) return `follows '${s.follows}'`;
  return [s.date, s.rev].filter(Boolean).join(" ") || s.type;
}

const revs = (o: LockSide | undefined, n: LockSide | undefined) => (o?.rev && n?.rev && o.rev !== n.rev ? ` (${o.rev} → ${n.rev})` : "");
const pinned = (s: LockSide | undefined): LockSide | undefined => (s ? { type: s.type, ...(s.rev ? { rev: s.rev } : {}), ...(s.date ? { date: s.date } : {}) } : s);

/**
 * One line for a row, dates first as Nix prints them and the revs after:
 * "nixpkgs 2025-12-10 → 2025-12-17 (aaaaaaa → bbbbbbb) (+2 following)".
 */
export function describeRow(row: LockDiffRow): string {
  const following = row.followers.length ? ` (+${row.followers.length} following)` : "";
  const o = pinned(row.old), n = pinned(row.new);
  switch (row.kind) {
    case "added":
      return `${row.input} added (${describeSide(row.new)})`;
    case "removed":
      return `${row.input} removed`;
    case "now-follows":
      return `${row.input} → follows '${row.new?.follows}'`;
    case "now-pinned":
      return `${row.input} no longer follows '${row.old?.follows}': ${describeSide(n)}`;
    case "follows-changed":
      return `${row.input} follows '${row.old?.follows}' → follows '${row.new?.follows}'`;
    default: {
      const via = row.kind === "follows-only" ? ` (follows '${row.new?.follows}')` : "";
      const change = o?.date && n?.date && o.date !== n.date ? `${o.date} → ${n.date}${revs(o, n)}` : `${describeSide(o)} → ${describeSide(n)}`;
      return `${row.input}${via} ${change}${following}`;
    }
  }
}

/** A whole diff on one line (or `separator`-joined), `max` rows before "+N more". */
export function describeLockDiff(diff: LockDiff, opts: { max?: number; separator?: string } = {}): string {
  const rows = lockDiffRows(diff);
  if (rows.length === 0) return "no input changes";
  const max = opts.max ?? rows.length;
  const parts = rows.slice(0, max).map(describeRow);
  if (rows.length > max) parts.push(`+${rows.length - max} more`);
  return parts.join(opts.separator ?? ", ");
}
