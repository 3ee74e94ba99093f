import { describe, expect, it } from "vitest";
import { DetectionRules } from "../../github/config.js";
import { groupUpdates, inputsChanged, isRevertPull, matchRules } from "../../github/detect.js";
import type { LockDiff } from "../../protocol/index.js";

const rules = DetectionRules.parse({});
const pr = (title: string, ref = "some-branch", labels: string[] = [], body: string | null = null) => ({ title, head: { ref }, labels: labels.map((name) => ({ name })), body });
const diff = (...inputs: string[]): LockDiff => ({ added: [], removed: [], updated: inputs.map((input) => ({ input, kind: "updated" as const, old: { type: "github" }, new: { type: "github" } })) });

describe("detection rules", () => {
  it("knows GitHub's revert PRs by title, branch or body, and never matches them", () => {
    expect(isRevertPull(pr('Revert "flake.lock: Update (#154)"'))).toBe(true);
    expect(isRevertPull(pr("flake.lock: Update", "revert-154-update_flake_lock_action"))).toBe(true);
    expect(isRevertPull(pr("flake.lock: Update", "x", [], "Reverts acme/fleet#154"))).toBe(true);
    expect(isRevertPull(pr("flake.lock: Update", "update_flake_lock_action", [], "Flake lock file updates:"))).toBe(false);
    expect(matchRules(pr('Revert "flake.lock: Update"', "update_flake_lock_action", ["automated", "dependencies"]), rules)).toEqual([]);
    expect(matchRules(pr('Revert "flake.lock: Update"'), DetectionRules.parse({ ignoreReverts: false }))).toEqual(["title"]);
  });

  it("knows the update tools' defaults", () => {
    expect(matchRules(pr("Lock file maintenance", "renovate/lock-file-maintenance"), rules)).toEqual(["title", "headBranch"]);
    expect(matchRules(pr("chore(deps): update nixpkgs digest to aec71e3", "renovate/nixpkgs-digest"), rules)).toEqual(["title", "headBranch"]);
    expect(matchRules(pr("Update flake input: nixpkgs", "update-nixpkgs", ["dependencies"]), rules)).toEqual(["title"]);
    expect(matchRules(pr("flake.lock: Update", "update_flake_lock_action"), rules)).toEqual(["title", "headBranch"]);
    expect(matchRules(pr("alpha: tweak"), rules)).toEqual([]);
  });

  it("groups PRs that change different inputs, supersedes those that change the same", () => {
    const a = { n: 1, diff: diff("nixpkgs") }, b = { n: 2, diff: diff("home-manager") }, c = { n: 3, diff: diff("home-manager/nixpkgs") }, empty = { n: 4, diff: diff() };
    const g = groupUpdates([a, b, c, empty], true);
    expect(g.together.map((x) => x.n)).toEqual([1, 2]);
    expect(g.superseded.map((x) => x.n)).toEqual([3, 4]);
    expect(groupUpdates([a, b], false).superseded.map((x) => x.n)).toEqual([2]);
    const withFollowers: LockDiff = { ...diff("nixpkgs"), updated: [{ ...diff("nixpkgs").updated[0]!, followers: ["home-manager/nixpkgs"] }] };
    expect([...inputsChanged(withFollowers)]).toEqual(["nixpkgs"]);
  });
});
