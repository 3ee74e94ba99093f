import { describe, expect, it } from "vitest";
import { compareUrl, describeLockDiff, describeRow, lockDiffRows, type LockDiff, type LockedRef } from "../../protocol/index.js";

const A = "a".repeat(40);
const B = "b".repeat(40);
const gh = (rev: string, date: string): LockedRef => ({ type: "github", owner: "NixOS", repo: "nixpkgs", rev, date });

describe("lock diff rows for the page", () => {
  it("shows old rev and date → new rev and date, with a GitHub compare link", () => {
    const [row] = lockDiffRows({ added: [], removed: [], updated: [{ input: "nixpkgs", old: gh(A, "2025-12-10"), new: gh(B, "2025-12-17") }] });
    expect(row!.kind).toBe("updated");
    expect(describeRow(row!)).toBe("nixpkgs 2025-12-10 → 2025-12-17 (aaaaaaa → bbbbbbb)");
    expect(row!.compareUrl).toBe(`https://github.com/NixOS/nixpkgs/compare/${A}...${B}`);
  });

  it("links GitLab and sourcehut inputs and git inputs on github.com, and nothing else", () => {
    const gl = (rev: string): LockedRef => ({ type: "gitlab", owner: "inkscape", repo: "inkscape", rev });
    expect(compareUrl(gl(A), gl(B))).toBe(`https://gitlab.com/inkscape/inkscape/-/compare/${A}...${B}`);
    const srht = (rev: string): LockedRef => ({ type: "sourcehut", owner: "~rycee", repo: "nmd", rev });
    expect(compareUrl(srht(A), srht(B))).toBe(`https://git.sr.ht/~rycee/nmd/log/${B}`);
    const git = (rev: string): LockedRef => ({ type: "git", url: "https://github.com/nix-community/disko.git", rev });
    expect(compareUrl(git(A), git(B))).toBe(`https://github.com/nix-community/disko/compare/${A}...${B}`);
    // Not linked: short or odd revs, another repository, an unknown host, a name that is not a name.
    expect(compareUrl(gh("abc1234", "x"), gh(B, "y"))).toBeUndefined();
    expect(compareUrl(gh(A, "x"), { ...gh(B, "y"), repo: "home-manager" })).toBeUndefined();
    expect(compareUrl({ type: "git", url: "https://example.org/x.git", rev: A }, { type: "git", url: "https://example.org/x.git", rev: B })).toBeUndefined();
    expect(compareUrl({ ...gh(A, "x"), owner: "a/../../evil" }, { ...gh(B, "y"), owner: "a/../../evil" })).toBeUndefined();
    expect(compareUrl(gh(A, "x"), gh(A, "y"))).toBeUndefined();
  });

  it("groups inputs that only follow an updated input under it (stored diffs and diffs with followers alike)", () => {
    const follows = (rev: string, date: string): LockedRef => ({ ...gh(rev, date), follows: "nixpkgs" });
    const legacy: LockDiff = {
      added: [],
      removed: [],
      updated: [
        { input: "home-manager/nixpkgs", old: follows(A, "2025-12-10"), new: follows(B, "2025-12-17") },
        { input: "nixpkgs", old: gh(A, "2025-12-10"), new: gh(B, "2025-12-17") },
        { input: "agenix/nixpkgs", old: follows(A, "2025-12-10"), new: follows(B, "2025-12-17") },
      ],
    };
    const rows = lockDiffRows(legacy);
    expect(rows.map((r) => r.input)).toEqual(["nixpkgs"]);
    expect(rows[0]!.followers).toEqual(["home-manager/nixpkgs", "agenix/nixpkgs"]);
    expect(describeLockDiff(legacy)).toBe("nixpkgs 2025-12-10 → 2025-12-17 (aaaaaaa → bbbbbbb) (+2 following)");

    const withFollowers = { added: [], removed: [], updated: [{ input: "nixpkgs", old: gh(A, "2025-12-10"), new: gh(B, "2025-12-17"), followers: ["a/nixpkgs"] }] } as unknown as LockDiff;
    expect(lockDiffRows(withFollowers)[0]!.followers).toEqual(["a/nixpkgs"]);
  });

  it("says what changed about follows", () => {
    const diff: LockDiff = {
      added: [{ input: "disko", new: gh(B, "2025-12-17") }],
      removed: [{ input: "flake-utils", old: { type: "github" } }],
      updated: [
        { input: "a/nixpkgs", old: gh(A, "2025-12-10"), new: { ...gh(B, "2025-12-17"), follows: "nixpkgs" } },
        { input: "b/nixpkgs", old: { ...gh(A, "2025-12-10"), follows: "nixpkgs" }, new: gh(B, "2025-12-17") },
        { input: "c/utils", old: { type: "github", follows: "flake-utils" }, new: { type: "github", follows: "utils" } },
        { input: "d/nixpkgs", old: { ...gh(A, "2025-12-10"), follows: "nixpkgs-stable" }, new: { ...gh(B, "2025-12-17"), follows: "nixpkgs-stable" } },
      ],
    };
    expect(lockDiffRows(diff).map(describeRow)).toEqual([
      "a/nixpkgs → follows 'nixpkgs'",
      "b/nixpkgs no longer follows 'nixpkgs': 2025-12-17 bbbbbbb",
      "c/utils follows 'flake-utils' → follows 'utils'",
      // Follows an input that is not in the diff: listed on its own, saying what it follows.
      "d/nixpkgs (follows 'nixpkgs-stable') 2025-12-10 → 2025-12-17 (aaaaaaa → bbbbbbb)",
      "disko added (2025-12-17 bbbbbbb)",
      "flake-utils removed",
    ]);
    expect(describeLockDiff(diff, { max: 2 })).toBe("a/nixpkgs → follows 'nixpkgs', b/nixpkgs no longer follows 'nixpkgs': 2025-12-17 bbbbbbb, +4 more");
    expect(describeLockDiff({ added: [], removed: [], updated: [] })).toBe("no input changes");
  });
});

describe("compare links", () => {
  it("are given for updates, not for a change of what an input follows", () => {
    const rows = lockDiffRows({
      added: [],
      removed: [],
      updated: [{ input: "x/nixpkgs", old: gh(A, "2025-12-10"), new: { ...gh(B, "2025-12-17"), follows: "nixpkgs" } }],
    });
    expect(rows[0]!.kind).toBe("now-follows");
    expect(rows[0]!.compareUrl).toBeUndefined();
  });
});
