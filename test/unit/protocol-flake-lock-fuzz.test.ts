/**
 * Property test: any flake.lock text, however hostile, gives a typed FlakeLockError or a correct
 * reading, never a crash, a hang or a stack overflow. Fixed seed, so CI runs the same cases;
 * `npm run fuzz` runs FUZZ_RUNS cases per property instead (FUZZ_SEED picks another seed).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { diffLocks, FlakeLockError, LOCK_LIMITS, parseFlakeLock, parseLockUpdateText, readLockInputs } from "../../protocol/index.js";

const SEED = Number(process.env.FUZZ_SEED ?? 20261204);
/** Cases per property: CI's default, or FUZZ_RUNS (npm run fuzz). */
const runs = (ci: number) => Number(process.env.FUZZ_RUNS ?? ci);
const name = fc.constantFrom("a", "b", "c", "nixpkgs", "root", "r", "x/y", "", "__proto__", "constructor");
const edge = fc.oneof(name, fc.array(name, { maxLength: 5 }));
const locked = fc.oneof(
  fc.constant(undefined),
  fc.record({ type: fc.constantFrom("github", "git", "tarball", "path", "file"), rev: fc.stringMatching(/^[0-9a-f]{40}$/), lastModified: fc.oneof(fc.integer({ min: 0, max: 2_000_000_000 }), fc.double()) }, { requiredKeys: ["type"] }),
);
const node = fc.record({ inputs: fc.option(fc.dictionary(name, edge, { maxKeys: 6 }), { nil: undefined }), locked, info: fc.option(fc.record({ lastModified: fc.integer({ min: 0, max: 2_000_000_000 }) }), { nil: undefined }) }, { requiredKeys: [] });
const lockObject = fc.record({ version: fc.constantFrom(4, 5, 6, 7, 8, 7.5), root: name, nodes: fc.dictionary(name, node, { maxKeys: 10 }) });
const lockText = fc.oneof(
  lockObject.map((l) => JSON.stringify(l)),
  fc.string({ maxLength: 200 }),
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
);

function readOrTypedError(text: string): ReturnType<typeof readLockInputs> | undefined {
  try {
    return readLockInputs(parseFlakeLock(text));
  } catch (e) {
    expect(e).toBeInstanceOf(FlakeLockError);
    return undefined;
  }
}

describe("flake.lock reader under random and hostile input", () => {
  it("gives a typed error or a consistent reading", () => {
    fc.assert(
      fc.property(lockText, (text) => {
        const read = readOrTypedError(text);
        if (!read) return;
        const lock = JSON.parse(text) as { nodes: Record<string, { inputs?: Record<string, string | string[]>; locked?: { type?: unknown } }> };
        for (const [path, input] of read.inputs) {
          const segments = path.split("/");
          expect(segments.length).toBeLessThanOrEqual(LOCK_LIMITS.depth);
          if (input.follows === undefined && input.node !== undefined) {
            const type = lock.nodes[input.node]?.locked?.type;
            expect(input.ref.type).toBe(typeof type === "string" ? type : "unknown");
          }
          if (input.follows !== undefined) expect(input.ref).toEqual({ type: "follows", follows: input.follows });
        }
        expect(diffLocks(text, text)).toEqual({ added: [], removed: [], updated: [] });
      }),
      { seed: SEED, numRuns: runs(2000) },
    );
  });

  it("diffs any two readable locks without crashing", () => {
    fc.assert(
      fc.property(lockObject, lockObject, (a, b) => {
        try {
          const d = diffLocks(JSON.stringify(a), JSON.stringify(b));
          for (const c of d.updated) expect(c.kind).toBeDefined();
        } catch (e) {
          expect(e).toBeInstanceOf(FlakeLockError);
        }
      }),
      { seed: SEED, numRuns: runs(1000) },
    );
  });

  it("the lock-update text parser never throws", () => {
    const line = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.constantFrom("Flake lock file updates:", "• Updated input 'a':", "• Added input 'a/b':", "• Removed input 'a'", "  → follows 'a'", "    'github:o/r/" + "a".repeat(40) + "' (2025-01-01)", "* Updated 'a': 'x' -> 'y'", "  → 'https://x/y.tar.gz?rev=zz'", "> • Updated input 'q':"),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 30 }), (lines) => {
        const d = parseLockUpdateText(lines.join("\n"));
        if (d) for (const c of [...d.updated, ...d.added, ...d.removed]) expect(typeof c.input).toBe("string");
      }),
      { seed: SEED, numRuns: runs(2000) },
    );
  });
});
