import { describe, it, expect } from "vitest";
import { diffLocks, flattenLock, FlakeLockError, formatLockDiff, lockLastModified, parseFlakeLock, parseLockUpdateText, lockHash } from "../../protocol/index.js";

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
    expect(flat.get("home-manager/nixpkgs")).toMatchObject({ follows: "nixpkgs", rev: rev("a") });
    expect(flat.get("tools/nixpkgs")).toMatchObject({ follows: "home-manager/nixpkgs", rev: rev("a") });
    expect(flat.get("tools/hm")).toMatchObject({ follows: "home-manager", rev: rev("c") });
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
    expect(() => parseFlakeLock(JSON.stringify({ version: 7, root: "root", nodes: { root: { inputs: { a: 5 } } } }))).toThrow(/nodes\.root\.inputs\.a/);
  });

  it("a dangling follows does not crash", () => {
    const t = JSON.stringify({ version: 7, root: "root", nodes: { root: { inputs: { x: ["missing"] } } } });
    expect(flattenLock(parseFlakeLock(t)).get("x")).toMatchObject({ type: "unknown", follows: "missing" });
  });
});

describe("lock diff", () => {
  it("reports updated (incl. inputs that follow), added and removed inputs with dates", () => {
    const before = lock(rev("a"), 1765324800);
    const after = lock(rev("b"), 1765929600, { extra: "systems" }); // 2025-12-17, plus a new root input
    const d = diffLocks(before, after);
    expect(d.updated.map((c) => c.input)).toEqual(["home-manager/nixpkgs", "nixpkgs", "tools/nixpkgs"]);
    const np = d.updated.find((c) => c.input === "nixpkgs")!;
    expect(np.old).toMatchObject({ rev: rev("a"), date: "2025-12-10" });
    expect(np.new).toMatchObject({ rev: rev("b"), date: "2025-12-17" });
    expect(d.added.map((c) => c.input)).toEqual(["extra"]);
    expect(diffLocks(after, before).removed.map((c) => c.input)).toEqual(["extra"]);
    expect(formatLockDiff(d, { max: 2 })).toBe("home-manager/nixpkgs 2025-12-10 → 2025-12-17, nixpkgs 2025-12-10 → 2025-12-17, +2 more");
  });

  it("identical locks have an empty diff; the lock hash identifies exact bytes", () => {
    const t = lock(rev("a"), 1765324800);
    expect(diffLocks(t, t)).toEqual({ added: [], removed: [], updated: [] });
    expect(lockHash(t)).toMatch(/^[0-9a-f]{64}$/);
    expect(lockHash(t + "\n")).not.toBe(lockHash(t));
  });
});

describe("'Flake lock file updates:' text", () => {
  it("parses the current multi-line form with → lines, follows and added/removed", () => {
    const text = [
      "Automated changes by the update-flake-lock action.",
      "",
      "```",
      "Flake lock file updates:",
      "",
      "• Updated input 'nixpkgs':",
      "    'github:NixOS/nixpkgs/" + rev("a") + "?narHash=sha256-x%3D' (2025-12-10)",
      "  → 'github:NixOS/nixpkgs/" + rev("b") + "?narHash=sha256-y%3D' (2025-12-17)",
      "• Updated input 'home-manager/nixpkgs':",
      "    follows 'nixpkgs'",
      "  → 'github:NixOS/nixpkgs/" + rev("c") + "' (2025-12-18)",
      "• Added input 'sops':",
      "    'github:Mic92/sops-nix/" + rev("d") + "' (2025-12-01)",
      "• Removed input 'old'",
      "```",
      "",
      "### Running GitHub Actions on this PR",
    ].join("\n");
    const d = parseLockUpdateText(text)!;
    expect(d.updated).toHaveLength(2);
    expect(d.updated[0]).toMatchObject({ input: "nixpkgs", old: { type: "github", owner: "NixOS", repo: "nixpkgs", rev: rev("a"), date: "2025-12-10" }, new: { rev: rev("b"), date: "2025-12-17" } });
    expect(d.updated[1]).toMatchObject({ input: "home-manager/nixpkgs", old: { follows: "nixpkgs" }, new: { rev: rev("c") } });
    expect(d.added[0]).toMatchObject({ input: "sops", new: { owner: "Mic92", rev: rev("d") } });
    expect(d.removed[0]!.input).toBe("old");
  });

  it("parses the older one-line form", () => {
    const text = "warning: updating lock file '/x/flake.lock':\nFlake lock file updates:\n* Updated 'nixpkgs': 'github:NixOS/nixpkgs/" + rev("a") + "' -> 'github:NixOS/nixpkgs/" + rev("b") + "'\n* Updated 'tools': 'git+file:///srv/tools?ref=main&rev=" + rev("c") + "' -> 'git+file:///srv/tools?ref=main&rev=" + rev("d") + "'\n";
    const d = parseLockUpdateText(text)!;
    expect(d.updated.map((c) => [c.input, c.old?.rev, c.new?.rev])).toEqual([
      ["nixpkgs", rev("a"), rev("b")],
      ["tools", rev("c"), rev("d")],
    ]);
    expect(d.updated[1]!.old).toMatchObject({ type: "git", ref: "main" });
  });

  it("single-line '→' form (Nix 2.4-2.18) and no block at all", () => {
    const d = parseLockUpdateText(`Flake lock file updates:\n\n• Updated input 'nixpkgs': 'github:NixOS/nixpkgs/${rev("a")}' (2025-12-10) → 'github:NixOS/nixpkgs/${rev("b")}' (2025-12-17)\n`)!;
    expect(d.updated[0]).toMatchObject({ input: "nixpkgs", old: { date: "2025-12-10" }, new: { date: "2025-12-17", rev: rev("b") } });
    expect(parseLockUpdateText("Bump stuff")).toBeNull();
  });
});
