/**
 * Parser for the lock-update text Nix prints and people paste into commit messages and PR bodies.
 * Every form Nix has printed (src/libflake/lockfile.cc over the years):
 *
 *   Flake input changes:                       (2020-2021)
 *   * Updated 'nixpkgs': 'github:NixOS/nixpkgs/aaa' -> 'github:NixOS/nixpkgs/bbb'
 *   * Added 'x': 'github:o/x/ccc'
 *   * Removed 'y'
 *
 *   Flake lock file changes:  /  Flake lock file updates:    (2021-2022 / 2022-)
 *   • Updated input 'nixpkgs':
 *       'github:NixOS/nixpkgs/aaa' (2025-12-10)
 *     → 'github:NixOS/nixpkgs/bbb' (2025-12-17)
 *   • Added input 'x/nixpkgs':
 *       follows 'nixpkgs'
 *   • Removed input 'y'
 *
 * The header is optional (terminal output starts with "warning: updating lock file …:"), and a
 * squash merge holds several blocks: they are read in order and combined into one diff.
 */
import type { InputChange, LockDiff, LockedRef } from "./schemas.js";
import { compareInputPaths, revFromTarballUrl } from "./flake-lock.js";
import { changeKind } from "./lock-diff.js";

const TEXT_LIMIT = 1024 * 1024;
const ITEMS_LIMIT = 5_000;

/** Archive extensions for which Nix takes a plain http(s) URL as a tarball, not a file. */
const ARCHIVE_RE = /\.(zip|tar|tgz|tar\.gz|tar\.xz|tar\.bz2|tar\.zst)$/i;
const SHA1_RE = /^[0-9a-f]{40}$/;

function queryParams(s: string): URLSearchParams {
  const q = s.indexOf("?");
  try {
    return new URLSearchParams(q >= 0 ? s.slice(q + 1) : "");
  } catch {
    return new URLSearchParams();
  }
}

/** Turn a flake reference as Nix prints it ("github:o/r/rev?narHash=…", "git+https://…?rev=…") into a LockedRef. */
export function parseFlakeRefString(s: string, date?: string): LockedRef {
  const ref: LockedRef = { type: "unknown", url: s };
  const q = queryParams(s);
  const base = s.split("?")[0]!;
  const forge = /^(github|gitlab|sourcehut):([^/]+)\/([^/]+)(?:\/(.+))?$/.exec(base);
  const scheme = /^([a-z][a-z0-9.-]*)(?:\+([a-z][a-z0-9.-]*))?:/i.exec(base);
  if (forge) {
    ref.type = forge[1]!;
    ref.owner = forge[2]!;
    ref.repo = forge[3]!;
    const rest = forge[4];
    if (rest && SHA1_RE.test(rest)) ref.rev = rest;
    else if (rest) ref.ref = rest;
  } else if (scheme) {
    const [, first, second] = scheme;
    const a = first!.toLowerCase();
    if (a === "git" || a === "hg" || a === "path" || a === "tarball" || a === "file") ref.type = a === "hg" ? "mercurial" : a;
    if (a === "flake") ref.type = "indirect";
    if (second === undefined && (a === "http" || a === "https" || a === "file")) ref.type = ARCHIVE_RE.test(base) ? "tarball" : "file";
    if (ref.type === "git" || ref.type === "mercurial" || ((ref.type === "tarball" || ref.type === "file") && second !== undefined)) {
      ref.url = base.replace(/^[a-z]+\+/i, "");
    } else if (ref.type === "tarball" || ref.type === "file") ref.url = base;
    else if (ref.type === "path") ref.url = base;
  }
  const rev = q.get("rev");
  if (!ref.rev && rev && SHA1_RE.test(rev)) ref.rev = rev;
  if (!ref.rev && (ref.type === "tarball" || ref.type === "file")) {
    const r = revFromTarballUrl(s);
    if (r) ref.rev = r;
  }
  const r = q.get("ref");
  if (r && ref.ref === undefined) ref.ref = r;
  const narHash = q.get("narHash");
  if (narHash) ref.narHash = narHash;
  const day = date ? Date.parse(`${date}T00:00:00Z`) : NaN;
  if (date && Number.isFinite(day)) {
    ref.date = date;
    ref.lastModified = Math.floor(day / 1000);
  }
  return ref;
}

type Action = "Updated" | "Added" | "Removed";
interface Item {
  action: Action;
  input: string;
  refs: LockedRef[];
  /** How many ref lines may follow the header line (new form). */
  expect: number;
}

/** "• Updated input 'x':" (2021-), also with "*" or "-" bullets as Markdown renders them. */
const NEW_ITEM = /^[•*-]\s+(Updated|Added|Removed) input '([^']+)'/;
/** "* Updated 'x': 'a' -> 'b'", "* Added 'x': 'a'", "* Removed 'x'" (2020-2021). */
const OLD_ITEM = /^[•*-]\s+(Updated|Added|Removed) '([^']+)'(?::\s*(.*))?$/;
/** One ref: "follows 'a/b'" or "'github:…' (2025-12-17)"; a hand-edited line may lose its closing quote. */
const REF = /^(?:follows\s+'([^']*)'|'([^'\s]+)'?(?:\s*\((\d{4}-\d{2}-\d{2})\))?)/;

function readRef(text: string): { ref: LockedRef; rest: string } | undefined {
  const m = REF.exec(text);
  if (!m) return undefined;
  const ref: LockedRef = m[1] !== undefined ? { type: "follows", follows: m[1] } : parseFlakeRefString(m[2]!, m[3]);
  return { ref, rest: text.slice(m[0].length).trim() };
}

/** A line as typed: without ANSI colours, Markdown quote marks and surrounding blanks. */
function clean(line: string): string {
  // eslint-disable-next-line no-control-regex
  return line.replace(/\x1b\[[0-9;]*m/g, "").replace(/^(\s*>)+/, "").trim();
}

function readItems(text: string): Item[] {
  const items: Item[] = [];
  let cur: Item | undefined;
  for (const raw of text.slice(0, TEXT_LIMIT).split(/\r?\n/)) {
    const line = clean(raw);
    const neu = NEW_ITEM.exec(line);
    const old = neu ? null : OLD_ITEM.exec(line);
    if (neu) {
      cur = { action: neu[1] as Action, input: neu[2]!, refs: [], expect: neu[1] === "Updated" ? 2 : neu[1] === "Added" ? 1 : 0 };
      items.push(cur);
    } else if (old) {
      // The old one-line form carries its refs on the same line: "'a' -> 'b'".
      const it: Item = { action: old[1] as Action, input: old[2]!, refs: [], expect: 0 };
      let rest = old[3] ?? "";
      for (let r = readRef(rest); r; r = readRef(rest)) {
        it.refs.push(r.ref);
        rest = r.rest.replace(/^->\s*/, "");
      }
      if (it.action === "Removed" || it.refs.length >= (it.action === "Updated" ? 2 : 1)) items.push(it);
      cur = undefined;
    } else if (cur && cur.refs.length < cur.expect) {
      const r = readRef(line.replace(/^(→|->)\s*/, ""));
      if (r) cur.refs.push(r.ref);
      else cur = undefined;
    } else cur = undefined;
    if (items.length > ITEMS_LIMIT) break;
  }
  return items;
}

/**
 * Parse Nix's lock-update text (any form above) into a LockDiff, or null when the text has none.
 * Several blocks (a squash merge) combine in the order written: an input updated twice goes from
 * the first old ref to the last new one.
 */
export function parseLockUpdateText(text: string): LockDiff | null {
  const items = readItems(text);
  if (items.length === 0) return null;
  type State = { old?: LockedRef; new?: LockedRef; existedBefore: boolean; existsNow: boolean };
  const state = new Map<string, State>();
  for (const it of items) {
    const s = state.get(it.input) ?? { existedBefore: it.action !== "Added", existsNow: it.action !== "Added" };
    if (!state.has(it.input)) {
      if (it.action === "Updated") s.old = it.refs[0];
    }
    if (it.action === "Removed") {
      s.existsNow = false;
      delete s.new;
    } else {
      s.existsNow = true;
      s.new = it.action === "Updated" ? (it.refs[1] ?? it.refs[0]) : it.refs[0];
    }
    state.set(it.input, s);
  }
  const unknown: LockedRef = { type: "unknown" };
  const diff: LockDiff = { added: [], removed: [], updated: [] };
  for (const [input, s] of state) {
    if (!s.existedBefore && s.existsNow) diff.added.push({ input, new: s.new ?? unknown });
    else if (s.existedBefore && !s.existsNow) diff.removed.push({ input, ...(s.old ? { old: s.old } : {}) } as InputChange);
    else if (s.existedBefore && s.existsNow) {
      const o = s.old ?? unknown, n = s.new ?? unknown;
      diff.updated.push({ input, kind: changeKind(o, n), old: o, new: n });
    }
  }
  const byName = (a: InputChange, b: InputChange) => compareInputPaths(a.input, b.input);
  diff.added.sort(byName);
  diff.removed.sort(byName);
  diff.updated.sort(byName);
  return diff;
}
