import { describe, it, expect } from "vitest";
import { diffLocks, flattenLock, FlakeLockError, formatLockDiff, lockLastModified, parseFlakeLock, parseLockUpdateText, lockHash, readLockInputs, describeChange } from "../../protocol/index.js";

const rev = (c: string) => c.repeat(40);
function lock(nixpkgsRev: string, nixpkgsTime: number, extra: Record<string, unknown> = {}) {
  return JSON.stringify({
    version: 7,
    root: "root",
    nodes: {
      root: { inputs: { nixpkgs: "nixpkgs", "home-manager": "home-manager", src: "src", tools: "tools", ...extra } },
      nixpkgs: { locked: { type: "github", owner: "NixOS", repo: "nixpkgs", rev: nixpkgsRev, lastModified: nixpkgsTime, narHash: `sha256-${nixpkgsRev.slice(0, 4)}` }, original: { type: "github", owner: "NixOS", repo: "nixpkgs", ref: "nixos-unstable" } },
      "home-manager": { inputs: { nixpkgs: ["nixpkgs"], utils: "flake-utils" }, locked: { type: "github", owner: "nix-community", repo: "home-manager", rev: rev("c"), lastModified: 1765000000 }, original: { type: "github", owner: "nix-community", repo: "home-manager" } },
      "flake-utils": { inputs: { systems: "systems" }, locked: { type: "github", owner: "numtide", repo: "flake-utils", rev: rev("d"), lastModified: 1700000000 }, original: { type: "indirect", id: "flake-utils" } },
      systems: { locked: { type: "github", owner: "nix-systems", repo: "default", rev: rev("e"), lastModified: 1680000000 }, original: { type: "github", owner: "nix-systems", repo: "default" } },
      src: { flake: false, locked: { type: "tarball", url: "https://example.org/src.tar.gz", narHash: "sha256-x" }, original: { type: "tarball", url: "https://example.org/src.tar.gz" } },
      tools: { inputs: { nixpkgs: ["home-manager", "nixpkgs"], hm: ["home-manager"] }, locked: { type: "git", url: "file:///srv/tools", ref: "main", rev: rev("f"), revCount: 3, lastModified: 1765500000 }, original: { type: "git", url: "file:///srv/tools" } },
    },
  });
}

describe("flake.lock reader", () => {
  const text = lock(rev("a"), 1765324800); // 2025-12-10
  it("flattens nested inputs and resolves follows paths (also follows-of-follows)", () => {
    const flat = flattenLock(parseFlakeLock(text));
    expect([...flat.keys()].sort()).toEqual(["home-manager", "home-manager/nixpkgs", "home-manager/utils", "home-manager/utils/systems", "nixpkgs", "src", "tools", "tools/hm", "tools/nixpkgs"]);
    expect(flat.get("home-manager/nixpkgs")).toEqual({ type: "follows", follows: "nixpkgs" });
    expect(flat.get("tools/nixpkgs")).toEqual({ type: "follows", follows: "home-manager/nixpkgs" });
    const inputs = readLockInputs(parseFlakeLock(text)).inputs;
    expect(inputs.get("tools/nixpkgs")!.node).toBe("nixpkgs"); // follows of follows, resolved
    expect(inputs.get("tools/hm")!.node).toBe("home-manager");
    expect(flat.get("nixpkgs")).toMatchObject({ type: "github", owner: "NixOS", ref: "nixos-unstable", date: "2025-12-10" });
    expect(flat.get("src")).toMatchObject({ type: "tarball", url: "https://example.org/src.tar.gz" });
    expect(flat.get("tools")).toMatchObject({ type: "git", ref: "main", url: "file:///srv/tools" });
  });

  it("lock age = newest direct input date", () => {
    expect(lockLastModified(parseFlakeLock(text))).toBe(1765500000);
  });

  it("clear errors for broken or unsupported files", () => {
    expect(() => parseFlakeLock("{")).toThrow(FlakeLockError);
    expect(() => parseFlakeLock(JSON.stringify({ version: 7, root: "root", nodes: {} }))).toThrow(/root node "root" is missing/);
    expect(() => parseFlakeLock(JSON.stringify({ version: 3, root: "root", nodes: { root: {} } }))).toThrow(/version 3 is not supported/);
    // Locks before version 5 have another shape: the version is what to report, not the shape.
    expect(() => parseFlakeLock(JSON.stringify({ version: 4, inputs: { nixpkgs: { uri: "github:NixOS/nixpkgs" } } }))).toThrow("flake.lock version 4 is not supported (Nix ≥ 2.4 writes version 5+)");
    expect(() => parseFlakeLock(JSON.stringify({ version: 8, root: "root", nodes: { root: {} } }))).toThrow(/version 8 is not supported .*update Lockstep/);
    expect(() => parseFlakeLock(JSON.stringify({ version: 7, root: "root", nodes: { root: { inputs: { a: 5 } } } }))).toThrow(/nodes\.root\.inputs\.a/);
  });

  it("a dangling follows does not crash", () => {
    const t = JSON.stringify({ version: 7, root: "root", nodes: { root: { inputs: { x: ["missing"] } } } });
    expect(flattenLock(parseFlakeLock(t)).get("x")).toEqual({ type: "follows", follows: "missing" });
    expect(readLockInputs(parseFlakeLock(t)).inputs.get("x")!.node).toBeUndefined();
  });

  it("version 5: dates and narHash from `info`", () => {
    const v5 = JSON.stringify({
      version: 5,
      root: "root",
      nodes: {
        root: { inputs: { nix: "nix" } },
        nix: { info: { lastModified: 1586427766, narHash: "sha256-n" }, locked: { type: "github", owner: "NixOS", repo: "nix", rev: rev("3") }, original: { type: "github", owner: "NixOS", repo: "nix" } },
      },
    });
    expect(flattenLock(parseFlakeLock(v5)).get("nix")).toMatchObject({ date: "2020-04-09", narHash: "sha256-n", rev: rev("3") });
    expect(lockLastModified(parseFlakeLock(v5))).toBe(1586427766);
  });

  it("a lock whose nodes share inputs is walked once per node (the 173-byte lock bomb)", () => {
    // Every node points at the next one three times: 3^16 paths to depth 16, 16 nodes to walk.
    const nodes: Record<string, unknown> = {};
    for (let i = 0; i < 16; i++) nodes[`n${i}`] = i === 15 ? { locked: { type: "path", path: "/x" } } : { inputs: { a: `n${i + 1}`, b: `n${i + 1}`, c: `n${i + 1}` }, locked: { type: "path", path: "/x" } };
    nodes.r = { inputs: { a: "n0", b: "n0", c: "n0" } };
    const bomb = JSON.stringify({ version: 7, root: "r", nodes });
    const inputs = readLockInputs(parseFlakeLock(bomb)).inputs;
    expect(inputs.size).toBe(3 * 16); // each node's three edges, listed under the first path that reaches it
    const selfLoop = JSON.stringify({ version: 7, root: "r", nodes: { r: { inputs: { a: "r", b: "r", c: "r" } } } });
    expect([...flattenLock(parseFlakeLock(selfLoop)).keys()]).toEqual(["a", "b", "c"]);
    expect(diffLocks(bomb, selfLoop).removed.length).toBeGreaterThan(0);
  });

  it("a follows cycle is a clear error, not a stack overflow", () => {
    const cycle = JSON.stringify({ version: 7, root: "r", nodes: { r: { inputs: { a: ["b"], b: ["a"] } } } });
    const err = (() => {
      try {
        readLockInputs(parseFlakeLock(cycle));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(FlakeLockError);
    expect(err).toMatchObject({ code: "follows-cycle", message: expect.stringMatching(/follows cycle at '(a|b)'/) });
    const self = JSON.stringify({ version: 7, root: "r", nodes: { r: { inputs: { x: "n" } }, n: { inputs: { y: ["x", "y"] }, locked: { type: "path", path: "/x" } } } });
    expect(() => diffLocks(self, self)).toThrow(expect.objectContaining({ code: "follows-cycle" }));
  });

  it("refuses locks over the work limits with a typed error", () => {
    const wide = { version: 7, root: "r", nodes: Object.fromEntries([["r", { inputs: Object.fromEntries(Array.from({ length: 20_001 }, (_, i) => [`i${i}`, "r"])) }]]) };
    expect(() => parseFlakeLock(JSON.stringify(wide))).toThrow(expect.objectContaining({ code: "too-large" }));
    const deep: Record<string, unknown> = { r: { inputs: { a: "n0" } } };
    for (let i = 0; i < 40; i++) deep[`n${i}`] = { inputs: { a: `n${i + 1}` }, locked: { type: "path", path: "/x" } };
    deep.n40 = { locked: { type: "path", path: "/x" } };
    expect(() => readLockInputs(parseFlakeLock(JSON.stringify({ version: 7, root: "r", nodes: deep })))).toThrow(expect.objectContaining({ code: "too-deep" }));
  });
});

describe("lock diff", () => {
  it("reports updated (incl. inputs that follow), added and removed inputs with dates", () => {
    const before = lock(rev("a"), 1765324800);
    const after = lock(rev("b"), 1765929600, { extra: "systems" }); // 2025-12-17, plus a new root input
    const d = diffLocks(before, after);
    // The inputs that follow nixpkgs did not change on their own: they are grouped under it.
    expect(d.updated.map((c) => c.input)).toEqual(["nixpkgs"]);
    const np = d.updated[0]!;
    expect(np).toMatchObject({ kind: "updated", followers: ["home-manager/nixpkgs", "tools/nixpkgs"] });
    expect(np.old).toMatchObject({ rev: rev("a"), date: "2025-12-10" });
    expect(np.new).toMatchObject({ rev: rev("b"), date: "2025-12-17" });
    expect(d.added.map((c) => c.input)).toEqual(["extra"]);
    expect(diffLocks(after, before).removed.map((c) => c.input)).toEqual(["extra"]);
    expect(formatLockDiff(d, { max: 1 })).toBe("nixpkgs 2025-12-10 → 2025-12-17 (+2 following), +1 more");
    expect(formatLockDiff(d)).toBe("nixpkgs 2025-12-10 → 2025-12-17 (+2 following), extra added (2023-03-28 eeeeeee)");
  });

  it("a change between follows and a pinned input is its own kind", () => {
    const follows = lock(rev("a"), 1765324800);
    const pinned = follows.replace('"nixpkgs":["nixpkgs"],"utils"', '"nixpkgs":"hm-nixpkgs","utils"').replace('"systems":{', '"hm-nixpkgs":{"locked":{"type":"github","owner":"NixOS","repo":"nixpkgs","rev":"' + rev("9") + '","lastModified":1765929600}},"systems":{');
    const d = diffLocks(follows, pinned);
    // tools/nixpkgs still follows home-manager/nixpkgs: it moves with it, as its follower.
    expect(d.updated).toEqual([
      { input: "home-manager/nixpkgs", kind: "now-pinned", old: { type: "follows", follows: "nixpkgs" }, new: expect.objectContaining({ rev: rev("9"), date: "2025-12-17" }), followers: ["tools/nixpkgs"] },
    ]);
    expect(describeChange(d.updated[0]!)).toBe(`home-manager/nixpkgs follows nixpkgs → 2025-12-17 ${rev("9").slice(0, 7)} (+1 following)`);
    expect(diffLocks(pinned, follows).updated[0]).toMatchObject({ input: "home-manager/nixpkgs", kind: "now-follows" });
    const retargeted = follows.replace('"tools":{"inputs":{"nixpkgs":["home-manager","nixpkgs"]', '"tools":{"inputs":{"nixpkgs":["nixpkgs"]');
    expect(diffLocks(follows, retargeted).updated).toEqual([{ input: "tools/nixpkgs", kind: "follows-changed", old: { type: "follows", follows: "home-manager/nixpkgs" }, new: { type: "follows", follows: "nixpkgs" } }]);
  });

  it("identical locks have an empty diff; the lock hash identifies exact bytes", () => {
    const t = lock(rev("a"), 1765324800);
    expect(diffLocks(t, t)).toEqual({ added: [], removed: [], updated: [] });
    expect(lockHash(t)).toMatch(/^[0-9a-f]{64}$/);
    expect(lockHash(t + "\n")).not.toBe(lockHash(t));
  });
});

