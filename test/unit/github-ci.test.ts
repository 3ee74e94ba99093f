import { describe, it, expect } from "vitest";
import { ciStateFrom, matchRules, branchPatternMatches } from "../../github/detect.js";
import { checkMergeGuards } from "../../github/merge.js";
import { DetectionRules } from "../../github/config.js";
import type { PendingUpdate } from "../../protocol/index.js";

const statuses = (...s: [string, "error" | "failure" | "pending" | "success"][]) => ({
  state: "ignored",
  total_count: s.length,
  statuses: s.map(([context, state]) => ({ context, state })),
});
const runs = (...r: [string, string, string | null][]) => ({ total_count: r.length, check_runs: r.map(([name, status, conclusion]) => ({ name, status, conclusion })) });

describe("CI state from statuses and check runs", () => {
  it("nothing reported is pending, not success (GitHub's combined state is misleading here)", () => {
    expect(ciStateFrom(statuses(), runs())).toEqual({ state: "pending", summary: "no CI has reported yet" });
  });
  it("statuses alone: pending / failure / error / success", () => {
    expect(ciStateFrom(statuses(["ci", "pending"]), runs()).state).toBe("pending");
    expect(ciStateFrom(statuses(["ci", "failure"], ["lint", "success"]), runs())).toEqual({ state: "failure", summary: "failing: ci" });
    expect(ciStateFrom(statuses(["ci", "error"]), runs()).state).toBe("failure");
    expect(ciStateFrom(statuses(["ci", "success"], ["lint", "success"]), runs())).toEqual({ state: "success", summary: "2 checks passed" });
  });
  it("check runs alone: running / failed / cancelled / timed out / success, neutral, skipped", () => {
    expect(ciStateFrom(statuses(), runs(["build", "queued", null])).state).toBe("pending");
    expect(ciStateFrom(statuses(), runs(["build", "in_progress", null]))).toEqual({ state: "pending", summary: "waiting for: build" });
    for (const c of ["failure", "cancelled", "timed_out"]) expect(ciStateFrom(statuses(), runs(["build", "completed", c])).state).toBe("failure");
    expect(ciStateFrom(statuses(), runs(["a", "completed", "success"], ["b", "completed", "neutral"], ["c", "completed", "skipped"])).state).toBe("success");
    expect(ciStateFrom(statuses(), runs(["deploy", "completed", "action_required"])).state).toBe("pending");
  });
  it("both: a failure anywhere wins; green needs everything finished", () => {
    expect(ciStateFrom(statuses(["ci", "success"]), runs(["build", "completed", "failure"])).state).toBe("failure");
    expect(ciStateFrom(statuses(["ci", "success"]), runs(["build", "in_progress", null])).state).toBe("pending");
    expect(ciStateFrom(statuses(["ci", "pending"]), runs(["build", "completed", "failure"])).state).toBe("failure");
    expect(ciStateFrom(statuses(["ci", "success"]), runs(["build", "completed", "success"])).state).toBe("success");
  });
});

describe("detection rules", () => {
  const rules = DetectionRules.parse({});
  const pr = (title: string, labels: string[], branch: string) => ({ title, labels: labels.map((name) => ({ name })), head: { ref: branch, sha: "0".repeat(40) } });
  it("labels rule needs all configured labels (case-insensitive)", () => {
    expect(matchRules(pr("x", ["Automated", "dependencies"], "b"), rules)).toEqual(["labels"]);
    expect(matchRules(pr("x", ["dependencies"], "b"), rules)).toEqual([]);
  });
  it("title patterns are case-insensitive substrings; branch patterns are globs", () => {
    expect(matchRules(pr("chore: update FLAKE inputs", [], "b"), rules)).toEqual(["title"]);
    expect(matchRules(pr("x", [], "update-nixfleet-tools"), rules)).toEqual(["headBranch"]);
    expect(matchRules(pr("x", [], "update-nixfleet"), rules)).toEqual([]);
    expect(branchPatternMatches("update.*", "updateX")).toBe(false); // "." is literal
    expect(matchRules(pr("Revert flake.lock", [], "lockstep/revert-abc"), rules)).toEqual([]);
  });
});

describe("merge guards", () => {
  const update = (over: Partial<PendingUpdate>): PendingUpdate => ({
    number: 7,
    title: "flake.lock: Update",
    url: "u",
    headSha: "a".repeat(40),
    headBranch: "update_flake_lock_action",
    openedAt: "2026-11-20T00:00:00.000Z",
    lockDiff: { added: [], removed: [], updated: [] },
    ci: { state: "success" },
    mergeable: true,
    superseded: [],
    ...over,
  });
  const now = new Date("2026-11-20T06:00:00Z");
  it("green, old enough and mergeable passes", () => {
    expect(checkMergeGuards(update({}), { minAgeMs: 3_600_000, now })).toEqual([]);
  });
  it("each guard reports in words", () => {
    expect(checkMergeGuards(update({ ci: { state: "pending", summary: "waiting for: build" } }), { now })).toEqual([{ guard: "ci-not-green", detail: "CI is pending (waiting for: build)" }]);
    expect(checkMergeGuards(update({}), { minAgeMs: 8 * 3_600_000, now })[0]).toEqual({ guard: "too-young", detail: "opened 360 min ago, minimum is 480 min" });
    expect(checkMergeGuards(update({ mergeable: false, mergeableState: "dirty" }), { now })[0]!.guard).toBe("not-mergeable");
    expect(checkMergeGuards(update({ ci: { state: "failure" } }), { ci: "ignore", now })).toEqual([]);
  });
});
