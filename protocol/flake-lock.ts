/**
 * flake.lock reader: every version Nix ≥ 2.4 reads (5, 6, 7), walked the way Nix walks it.
 * Pure: callers hand in file contents. Lock files come from pull requests, so they are untrusted:
 * every loop is bounded (size, nodes, input edges, nesting, follows resolution) and every failure
 * is a FlakeLockError with a `code`, never a hang or a stack overflow.
 *
 * The diff lives in lock-diff.ts, Nix's lock-update text parser in lock-text.ts.
 */
import { z } from "zod";
import type { LockedRef } from "./schemas.js";

const InputRef = z.union([z.string(), z.array(z.string())]);
const Attrs = z.record(z.string(), z.unknown());
const LockNode = z
  .object({
    inputs: z.record(z.string(), InputRef).optional(),
    locked: Attrs.optional(),
    original: Attrs.optional(),
    /** Version 5 keeps lastModified and narHash here instead of in `locked`. */
    info: Attrs.optional(),
    flake: z.boolean().optional(),
  })
  .passthrough();
const FlakeLockShape = z.object({
  nodes: z.record(z.string(), LockNode),
  root: z.string(),
  version: z.number().int(),
});
export type FlakeLockFile = z.infer<typeof FlakeLockShape>;

export type FlakeLockErrorCode = "json" | "shape" | "version" | "root" | "too-large" | "too-deep" | "follows-cycle";

export class FlakeLockError extends Error {
  override name = "FlakeLockError";
  constructor(
    message: string,
    readonly code: FlakeLockErrorCode = "shape",
  ) {
    super(message);
  }
}

export const SUPPORTED_LOCK_VERSIONS = [5, 6, 7];

/**
 * Work limits for one lock. Real locks are far below them (the largest public one we know has
 * ~100 nodes and ~150 input edges, nested 8 deep); a hostile one hits a limit and is refused.
 */
export const LOCK_LIMITS = {
  bytes: 4 * 1024 * 1024,
  nodes: 5_000,
  /** Input edges over all nodes (each is visited at most once). */
  edges: 20_000,
  /** Segments of an input path ("a/b/c" is 3) and of a follows path. */
  depth: 32,
  /** Follows that lead through other follows before reaching a node. */
  followsNesting: 64,
  /** Path segments stepped through while resolving follows, in total. */
  followsSteps: 200_000,
};

/** Parse flake.lock text; throws FlakeLockError naming what is wrong. */
export function parseFlakeLock(text: string): FlakeLockFile {
  if (text.length > LOCK_LIMITS.bytes) throw new FlakeLockError(`flake.lock is larger than ${LOCK_LIMITS.bytes} bytes`, "too-large");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FlakeLockError(`flake.lock is not valid JSON: ${(e as Error).message}`, "json");
  }
  // The version first: locks older than 5 have a different shape ({ inputs, version }).
  const version = typeof json === "object" && json !== null ? (json as Record<string, unknown>).version : undefined;
  if (typeof version === "number" && Number.isInteger(version) && !SUPPORTED_LOCK_VERSIONS.includes(version)) {
    throw new FlakeLockError(
      version < 5
        ? `flake.lock version ${version} is not supported (Nix ≥ 2.4 writes version 5+)`
        : `flake.lock version ${version} is not supported (this Lockstep reads versions ${SUPPORTED_LOCK_VERSIONS.join(", ")}; update Lockstep)`,
      "version",
    );
  }
  const r = FlakeLockShape.safeParse(json);
  if (!r.success) {
    const first = r.error.issues[0];
    throw new FlakeLockError(`flake.lock has an unexpected shape at ${first?.path.join(".") || "(top)"}: ${first?.message}`, "shape");
  }
  const lock = r.data;
  const nodeKeys = Object.keys(lock.nodes);
  if (nodeKeys.length > LOCK_LIMITS.nodes) throw new FlakeLockError(`flake.lock has ${nodeKeys.length} nodes (limit ${LOCK_LIMITS.nodes})`, "too-large");
  let edges = 0;
  for (const key of nodeKeys) edges += Object.keys(lock.nodes[key]!.inputs ?? {}).length;
  if (edges > LOCK_LIMITS.edges) throw new FlakeLockError(`flake.lock has ${edges} input edges (limit ${LOCK_LIMITS.edges})`, "too-large");
  if (!Object.hasOwn(lock.nodes, lock.root)) throw new FlakeLockError(`flake.lock root node "${lock.root}" is missing`, "root");
  return lock;
}

const MAX_UNIX_SECONDS = 253_402_300_799; // 9999-12-31T23:59:59Z

export function isoDay(lastModified: number): string {
  return new Date(lastModified * 1000).toISOString().slice(0, 10);
}

/** `locked` as Nix sees it: in version 5, `info` (lastModified, narHash) belongs to it. */
export function lockedAttrs(node: FlakeLockFile["nodes"][string] | undefined): Record<string, unknown> | undefined {
  if (!node?.locked) return undefined;
  return node.info ? { ...node.info, ...node.locked } : node.locked;
}

/**
 * The rev a tarball URL carries when the lock has none of its own: FlakeHub's
 * ".../<version>+rev-<sha>/..." and GitHub's ".../archive/<sha>.tar.gz". Used by the reader and the
 * text parser alike, so both describe a tarball the same way.
 */
export function revFromTarballUrl(url: string): string | undefined {
  const m = /(?:[?&]rev=|(?:\+|%2B)rev-|\/archive\/)([0-9a-f]{40})(?![0-9a-f])/i.exec(url);
  return m?.[1]?.toLowerCase();
}

/** A LockedRef from a node's locked attributes (what the diff, the page and HA show). */
export function lockedRefOf(locked: Record<string, unknown> | undefined, original?: Record<string, unknown>): LockedRef {
  const l = locked ?? {};
  const str = (k: string) => (typeof l[k] === "string" ? (l[k] as string) : undefined);
  const ref: LockedRef = { type: str("type") ?? "unknown" };
  for (const k of ["rev", "narHash", "owner", "repo", "url"] as const) {
    const v = str(k);
    if (v !== undefined) ref[k] = v;
  }
  if (ref.url === undefined && str("path") !== undefined) ref.url = `path:${str("path")}`;
  if (ref.rev === undefined && ref.url !== undefined && (ref.type === "tarball" || ref.type === "file")) {
    const rev = revFromTarballUrl(ref.url);
    if (rev) ref.rev = rev;
  }
  const r = str("ref") ?? (typeof original?.ref === "string" ? original.ref : undefined);
  if (r !== undefined) ref.ref = r;
  // A date Nix could have written: whole seconds from 1970 to the year 9999 (others are ignored).
  if (typeof l.lastModified === "number" && Number.isInteger(l.lastModified) && l.lastModified >= 0 && l.lastModified <= MAX_UNIX_SECONDS) {
    ref.lastModified = l.lastModified;
    ref.date = isoDay(ref.lastModified);
  }
  return ref;
}

/** Stable text of a node's locked attributes: two edges are "the same input" when these match (as Nix compares). */
function lockedKey(locked: Record<string, unknown> | undefined): string {
  const l = locked ?? {};
  return JSON.stringify(Object.keys(l).sort().map((k) => [k, l[k]]));
}

/** One input edge of the lock, at one input path. */
export interface LockInput {
  /** "nixpkgs", "home-manager/nixpkgs", ... */
  path: string;
  /** For a locked edge: its node. For a follows edge: the node the follows path leads to, if any. */
  node: string | undefined;
  /** The follows path ("a/b"; "" follows the flake itself), for a follows edge. */
  follows?: string;
  /** What is locked there; for a follows edge `{ type: "follows", follows }`. */
  ref: LockedRef;
  /** Compare key: equal keys mean Nix sees no change on this edge. */
  key: string;
}

export interface LockInputs {
  /** Every edge Nix lists, in Nix's order (input paths compared segment by segment). */
  inputs: Map<string, LockInput>;
  /** The first input path at which each node is listed (follows are grouped under it). */
  pathOfNode: Map<string, string>;
}

const PATH_SEP = "/";
export const joinInputPath = (segments: readonly string[]) => segments.join(PATH_SEP);

/** Nix's order of input paths: segment by segment, each compared as bytes. */
export function compareInputPaths(a: string, b: string): number {
  const x = a.split(PATH_SEP), y = b.split(PATH_SEP);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
  }
  return x.length - y.length;
}

/**
 * Resolves follows paths (always from the root, as in the lock file) to node keys, with a memo,
 * a cycle check (Nix: "follow cycle detected") and the step limits above.
 */
class FollowsResolver {
  private readonly memo = new Map<string, string | undefined>();
  private readonly active = new Set<string>();
  private steps = 0;
  constructor(private readonly lock: FlakeLockFile) {}

  resolve(path: readonly string[]): string | undefined {
    if (path.length > LOCK_LIMITS.depth) throw new FlakeLockError(`a follows path has ${path.length} segments (limit ${LOCK_LIMITS.depth}): ${joinInputPath(path.slice(0, 8))}/…`, "too-deep");
    const id = JSON.stringify(path);
    if (this.memo.has(id)) return this.memo.get(id);
    if (this.active.has(id)) {
      throw new FlakeLockError(`follows cycle at '${joinInputPath(path)}': the inputs follow each other in a circle; fix the follows in flake.nix and run nix flake lock`, "follows-cycle");
    }
    if (this.active.size >= LOCK_LIMITS.followsNesting) {
      throw new FlakeLockError(`follows lead through more than ${LOCK_LIMITS.followsNesting} other follows at '${joinInputPath(path)}'`, "too-deep");
    }
    this.active.add(id);
    let pos: string | undefined = this.lock.root;
    for (const name of path) {
      if (++this.steps > LOCK_LIMITS.followsSteps) throw new FlakeLockError(`resolving follows took more than ${LOCK_LIMITS.followsSteps} steps`, "too-large");
      const node: FlakeLockFile["nodes"][string] | undefined = this.lock.nodes[pos];
      const edge: string | string[] | undefined = node?.inputs && Object.hasOwn(node.inputs, name) ? node.inputs[name] : undefined;
      if (edge === undefined) {
        pos = undefined;
        break;
      }
      pos = typeof edge === "string" ? edge : this.resolve(edge);
      if (pos === undefined || !Object.hasOwn(this.lock.nodes, pos)) {
        pos = undefined;
        break;
      }
    }
    this.active.delete(id);
    this.memo.set(id, pos);
    return pos;
  }
}

/**
 * Every input edge, as Nix lists them for `nix flake metadata` and its lock diff: depth first from
 * the root, each node's inputs walked once (a node reached again is listed, its inputs are not).
 * Without that "once", a small lock whose nodes share inputs has exponentially many paths.
 */
export function readLockInputs(lock: FlakeLockFile): LockInputs {
  const resolver = new FollowsResolver(lock);
  const inputs = new Map<string, LockInput>();
  const pathOfNode = new Map<string, string>();
  const visited = new Set<string>();
  type Frame = { node: string; prefix: string[]; names: string[]; i: number };
  const enter = (node: string, prefix: string[]): Frame | undefined => {
    if (visited.has(node)) return undefined;
    visited.add(node);
    const names = Object.keys(lock.nodes[node]?.inputs ?? {}).sort((a, b) => (a === b ? 0 : a < b ? -1 : 1));
    return { node, prefix, names, i: 0 };
  };
  const stack: Frame[] = [enter(lock.root, [])!];
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    if (frame.i >= frame.names.length) {
      stack.pop();
      continue;
    }
    const name = frame.names[frame.i++]!;
    const segments = [...frame.prefix, name];
    if (segments.length > LOCK_LIMITS.depth) throw new FlakeLockError(`inputs are nested deeper than ${LOCK_LIMITS.depth} at '${joinInputPath(segments.slice(0, 8))}/…'`, "too-deep");
    const path = joinInputPath(segments);
    const edge = lock.nodes[frame.node]!.inputs![name]!;
    if (typeof edge === "string") {
      const child = lock.nodes[edge];
      const locked = child && Object.hasOwn(lock.nodes, edge) ? lockedAttrs(child) : undefined;
      inputs.set(path, { path, node: Object.hasOwn(lock.nodes, edge) ? edge : undefined, ref: lockedRefOf(locked, child?.original), key: `node:${lockedKey(locked)}` });
      if (!pathOfNode.has(edge)) pathOfNode.set(edge, path);
      if (Object.hasOwn(lock.nodes, edge)) {
        const next = enter(edge, segments);
        if (next) stack.push(next);
      }
    } else {
      const follows = joinInputPath(edge);
      inputs.set(path, { path, node: resolver.resolve(edge), follows, ref: { type: "follows", follows }, key: `follows:${JSON.stringify(edge)}` });
    }
  }
  return { inputs: new Map([...inputs].sort(([a], [b]) => compareInputPaths(a, b))), pathOfNode };
}

/** A lock flattened to input paths: "nixpkgs", "home-manager", "home-manager/nixpkgs", ... */
export type FlatLock = Map<string, LockedRef>;

/** Every input edge's LockedRef by input path (follows edges: `{ type: "follows", follows }`). */
export function flattenLock(lock: FlakeLockFile): FlatLock {
  return new Map([...readLockInputs(lock).inputs].map(([path, input]) => [path, input.ref]));
}

/** Newest input date in the lock (unix seconds): the "age" of a lock file. */
export function lockLastModified(lock: FlakeLockFile): number | undefined {
  let newest: number | undefined;
  for (const input of readLockInputs(lock).inputs.values()) {
    const lm = input.follows === undefined ? input.ref.lastModified : undefined;
    if (lm !== undefined && (newest === undefined || lm > newest)) newest = lm;
  }
  return newest;
}
