/**
 * `lockstep history`: a failed update, its revert and the rollout that converged the fleet read as
 * one entry, whether the converge rollout's own entry is on the broker or only the failed entry's
 * record of it.
 */
import { describe, expect, it } from "vitest";
import { RolloutHistoryEntry } from "../../protocol/index.js";
import { historyText, updateStories } from "../../hub/terminal/history-commands.js";

const sha = (c: string) => c.repeat(40);

function entry(id: string, finishedAt: string, extra: Partial<RolloutHistoryEntry> = {}): RolloutHistoryEntry {
  return RolloutHistoryEntry.parse({
    rolloutId: id,
    commit: sha("a"),
    state: "completed",
    summary: "",
    requestedBy: "api:alice",
    startedAt: "2026-12-01T10:00:00.000Z",
    finishedAt,
    hosts: [{ host: "alpha", state: "succeeded" }],
    ...extra,
  });
}

const failed = entry("r-failed", "2026-12-01T10:05:00.000Z", {
  state: "rolled-back",
  prNumber: 12,
  commit: sha("b"),
  hosts: [
    { host: "alpha", state: "rolled-back" },
    { host: "gamma", state: "failed", reason: "switch failed" },
  ],
  revertPr: { number: 13, url: "https://github.com/acme/fleet/pull/13" },
});
const converge = entry("r-converge", "2026-12-01T10:20:00.000Z", {
  commit: sha("c"),
  prNumber: 13,
  converges: "r-failed",
  requestedBy: "lockstep automatic (mergeReverts)",
  hosts: [
    { host: "alpha", state: "succeeded", pullOnly: true },
    { host: "gamma", state: "succeeded", pullOnly: true },
  ],
});
const later = entry("r-later", "2026-12-02T10:00:00.000Z", { prNumber: 14 });

describe("the update history as stories", () => {
  it("folds the converge rollout into the failed rollout's entry, newest first", () => {
    const stories = updateStories([converge, failed, later]);
    expect(stories.map((s) => s.entry.rolloutId)).toEqual(["r-later", "r-failed"]);
    expect(stories[1]!.convergence).toEqual({ rolloutId: "r-converge", state: "completed", commit: sha("c"), requestedBy: "lockstep automatic (mergeReverts)", finishedAt: converge.finishedAt, pullOnly: ["alpha", "gamma"] });
    const text = historyText(stories);
    expect(text).not.toMatch(/^\S+ {2}r-converge/m);
    expect(text).toContain("r-failed  rolled-back  PR #12  commit bbbbbbbb  by api:alice  (0 ok, 1 failed, 1 rolled back, 0 skipped)");
    expect(text).toContain("  reverted: PR #13 https://github.com/acme/fleet/pull/13");
    expect(text).toContain("  converged: rollout r-converge completed onto cccccccc (merged by lockstep automatic (mergeReverts), 2026-12-01T10:20:00.000Z); pulled only: alpha, gamma");
  });

  it("tells the convergence from the failed entry's own record when the converge entry is gone", () => {
    const linked = { ...failed, convergedBy: { rolloutId: "r-converge", state: "completed" as const, commit: sha("c"), requestedBy: "api:alice", finishedAt: converge.finishedAt, pullOnly: [] } };
    const [story] = updateStories([linked]);
    expect(story!.convergence?.rolloutId).toBe("r-converge");
    expect(historyText([story!])).toContain("converged: rollout r-converge completed onto cccccccc (merged by api:alice");
  });

  it("lists a converge rollout whose failed rollout is not on the broker on its own", () => {
    expect(updateStories([converge]).map((s) => s.entry.rolloutId)).toEqual(["r-converge"]);
    expect(historyText([])).toBe("no update history on the broker\n");
  });
});
