/**
 * Nix's lock-update text in every form it has printed, from short excerpts written for the test
 * (the real messages are checked in test/integration/corpus-flake-locks.test.ts).
 */
import { describe, expect, it } from "vitest";
import { parseFlakeRefString, parseLockUpdateText } from "../../protocol/index.js";

const rev = (c: string) => c.repeat(40);

describe("Nix's lock-update text", () => {
  it("'Flake lock file updates:' (2022-): multi-line items, follows, added and removed", () => {
    const text = [
      "Automated changes by the update-flake-lock action.",
      "",
      "```",
      "Flake lock file updates:",
      "",
      "• Updated input 'nixpkgs':",
      `    'github:NixOS/nixpkgs/${rev("a")}?narHash=sha256-x%3D' (2025-12-10)`,
      `  → 'github:NixOS/nixpkgs/${rev("b")}?narHash=sha256-y%3D' (2025-12-17)`,
      "• Updated input 'home-manager/nixpkgs':",
      "    follows 'nixpkgs'",
      `  → 'github:NixOS/nixpkgs/${rev("c")}' (2025-12-18)`,
      "• Added input 'sops':",
      `    'github:Mic92/sops-nix/${rev("d")}' (2025-12-01)`,
      "• Added input 'sops/nixpkgs':",
      "    follows 'nixpkgs'",
      "• Removed input 'old'",
      "```",
      "",
      "### Running GitHub Actions on this PR",
    ].join("\n");
    const d = parseLockUpdateText(text)!;
    expect(d.updated).toEqual([
      // Nix's order: input paths compared segment by segment.
      { input: "home-manager/nixpkgs", kind: "now-pinned", old: { type: "follows", follows: "nixpkgs" }, new: expect.objectContaining({ rev: rev("c") }) },
      { input: "nixpkgs", kind: "updated", old: expect.objectContaining({ type: "github", owner: "NixOS", repo: "nixpkgs", rev: rev("a"), date: "2025-12-10", narHash: "sha256-x=" }), new: expect.objectContaining({ rev: rev("b"), date: "2025-12-17" }) },
    ]);
    expect(d.added).toEqual([
      { input: "sops", new: expect.objectContaining({ owner: "Mic92", rev: rev("d") }) },
      { input: "sops/nixpkgs", new: { type: "follows", follows: "nixpkgs" } },
    ]);
    expect(d.removed.map((c) => c.input)).toEqual(["old"]);
  });

  it("'Flake lock file changes:' (2021-2022) has the same items", () => {
    const d = parseLockUpdateText(["flake.lock: Update", "", "Flake lock file changes:", "", "• Updated input 'lowdown-src':", `    'github:kristapsdz/lowdown/${rev("1")}' (2021-09-24)`, `  → 'github:kristapsdz/lowdown/${rev("2")}' (2021-10-06)`].join("\n"))!;
    expect(d.updated).toEqual([{ input: "lowdown-src", kind: "updated", old: expect.objectContaining({ rev: rev("1"), date: "2021-09-24" }), new: expect.objectContaining({ rev: rev("2"), date: "2021-10-06" }) }]);
  });

  it("'Flake input changes:' (2020-2021): one line per input, no dates", () => {
    const text = [
      "flake.lock: Update",
      "",
      "Flake input changes:",
      "",
      `* Updated 'nixpkgs': 'github:NixOS/nixpkgs/${rev("a")}' -> 'github:NixOS/nixpkgs/${rev("b")}'`,
      `* Updated 'nix/nixpkgs': 'github:NixOS/nixpkgs/${rev("c")}' -> follows 'nixpkgs'`,
      `* Added 'nix/lowdown-src': 'github:kristapsdz/lowdown/${rev("d")}'`,
      "* Removed 'old'",
    ].join("\n");
    const d = parseLockUpdateText(text)!;
    expect(d.updated).toEqual([
      { input: "nix/nixpkgs", kind: "now-follows", old: expect.objectContaining({ rev: rev("c") }), new: { type: "follows", follows: "nixpkgs" } },
      { input: "nixpkgs", kind: "updated", old: expect.objectContaining({ rev: rev("a") }), new: expect.objectContaining({ rev: rev("b") }) },
    ]);
    expect(d.updated[1]!.new!.date).toBeUndefined();
    expect(d.added).toEqual([{ input: "nix/lowdown-src", new: expect.objectContaining({ type: "github", rev: rev("d") }) }]);
    expect(d.removed.map((c) => c.input)).toEqual(["old"]);
  });

  it("pasted terminal output with no header", () => {
    const text = [
      "$ nix flake update",
      "warning: Git tree '/home/me/cfg' is dirty",
      "warning: updating lock file '/home/me/cfg/flake.lock':",
      "• Updated input 'flox':",
      `    'github:flox/flox/${rev("a")}' (2023-06-30)`,
      `  → 'git+ssh://git@github.com/flox/flox?ref=latest&rev=${rev("b")}' (2023-06-29)`,
      "• Updated input 'flox/pkgs':",
      `    'github:flox/floxpkgs/${rev("c")}' (2023-06-28)`,
      "  → follows ''",
      "warning: Git tree '/home/me/cfg' is dirty",
    ].join("\n");
    const d = parseLockUpdateText(text)!;
    expect(d.updated).toEqual([
      { input: "flox", kind: "updated", old: expect.objectContaining({ type: "github", rev: rev("a") }), new: expect.objectContaining({ type: "git", url: "ssh://git@github.com/flox/flox", ref: "latest", rev: rev("b"), date: "2023-06-29" }) },
      { input: "flox/pkgs", kind: "now-follows", old: expect.objectContaining({ rev: rev("c") }), new: { type: "follows", follows: "" } },
    ]);
  });

  it("several blocks (a squash merge) combine in order: first old → last new", () => {
    const block = (from: string, to: string, d1: string, d2: string) => ["* flake.lock: Update", "", "Flake lock file updates:", "", "• Updated input 'nixpkgs':", `    'github:NixOS/nixpkgs/${rev(from)}' (${d1})`, `  → 'github:NixOS/nixpkgs/${rev(to)}' (${d2})`, ""];
    const text = ["Weekly updates (#12)", "", ...block("a", "b", "2025-12-01", "2025-12-08"), "* fix: host x", "", ...block("b", "c", "2025-12-08", "2025-12-15"), "• Added input 'extra':", `    'github:o/extra/${rev("e")}' (2025-12-15)`].join("\n");
    const d = parseLockUpdateText(text)!;
    expect(d.updated).toEqual([{ input: "nixpkgs", kind: "updated", old: expect.objectContaining({ rev: rev("a"), date: "2025-12-01" }), new: expect.objectContaining({ rev: rev("c"), date: "2025-12-15" }) }]);
    expect(d.added.map((c) => c.input)).toEqual(["extra"]);
    // Added in one block and removed in a later one: no change at all.
    const gone = parseLockUpdateText(["• Added input 'tmp':", `    'github:o/tmp/${rev("f")}' (2025-12-01)`, "• Removed input 'tmp'"].join("\n"))!;
    expect(gone).toEqual({ added: [], removed: [], updated: [] });
  });

  it("types inputs the way the lock does", () => {
    expect(parseFlakeRefString("https://github.com/NixOS/nixpkgs/archive/" + rev("a") + ".tar.gz?narHash=x", "2024-06-01")).toMatchObject({ type: "tarball", url: "https://github.com/NixOS/nixpkgs/archive/" + rev("a") + ".tar.gz", rev: rev("a"), date: "2024-06-01" });
    expect(parseFlakeRefString("https://api.flakehub.com/f/pinned/NixOS/nixpkgs/0.2511.1%2Brev-" + rev("b") + "/0199/source.tar.gz")).toMatchObject({ type: "tarball", rev: rev("b") });
    expect(parseFlakeRefString("tarball+https://example.org/src?x=1")).toMatchObject({ type: "tarball", url: "https://example.org/src" });
    expect(parseFlakeRefString("https://example.org/hosts.txt?narHash=x")).toMatchObject({ type: "file" });
    expect(parseFlakeRefString("file+https://example.org/a.tar.gz")).toMatchObject({ type: "file" });
    expect(parseFlakeRefString(`git+https://github.com/Mic92/nixpkgs?ref=main&rev=${rev("c")}&shallow=1`)).toMatchObject({ type: "git", url: "https://github.com/Mic92/nixpkgs", ref: "main", rev: rev("c") });
    expect(parseFlakeRefString(`gitlab:rycee/nur-expressions/${rev("d")}?dir=pkgs/firefox-addons`)).toMatchObject({ type: "gitlab", owner: "rycee", repo: "nur-expressions", rev: rev("d") });
    expect(parseFlakeRefString(`sourcehut:~misterio/nix-colors/${rev("e")}`)).toMatchObject({ type: "sourcehut", owner: "~misterio", rev: rev("e") });
    expect(parseFlakeRefString(`path:/nix/store/x-source?lastModified=1&narHash=y&rev=${rev("f")}`)).toMatchObject({ type: "path", url: "path:/nix/store/x-source", rev: rev("f") });
    expect(parseFlakeRefString("flake:nixpkgs")).toMatchObject({ type: "indirect" });
    expect(parseFlakeRefString("github:NixOS/nixpkgs/nixos-unstable")).toMatchObject({ type: "github", ref: "nixos-unstable" });
  });

  it("text with no lock-update lines gives null; look-alike prose is not an item", () => {
    expect(parseLockUpdateText("Bump stuff")).toBeNull();
    expect(parseLockUpdateText("* Updated 'README' to say more")).toBeNull();
    expect(parseLockUpdateText("")).toBeNull();
  });
});
