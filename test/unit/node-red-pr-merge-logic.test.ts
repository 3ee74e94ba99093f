/**
 * What the pr-merge node reads and sends, without Node-RED: an update of several PRs pins its parts
 * and heads from the pending update it came with (pr-watch's payload, or msg.pending after the
 * preview node); output 1 deploys the last merge, carries every merge and the combined lock diff,
 * and names the first merge for a revert; after a partial merge it deploys what landed.
 */
import { describe, expect, it } from "vitest";
import { mergedMessage, mergeTarget } from "../../node-red-nodes/lib/pr-merge-logic.js";
import type { MergeResult } from "../../github/merge.js";
import type { NodeMessage } from "../../node-red-nodes/lib/red.js";
import type { PendingPart, PendingUpdate } from "../../protocol/schemas.js";

const sha = (c: string) => c.repeat(40);
const part = (number: number, input: string, head: string): PendingPart => ({
  number,
  title: `Update flake input: ${input}`,
  url: `https://github.com/acme/fleet/pull/${number}`,
  headSha: sha(head),
  headBranch: `update-${input}`,
  openedAt: "2026-11-21T14:00:00.000Z",
  lockDiff: { added: [], removed: [], updated: [{ input, old: { type: "github", rev: "1111111" }, new: { type: "github", rev: "2222222" } }] },
  ci: { state: "success" },
  mergeable: true,
});
const parts = [part(11, "nixpkgs", "a"), part(12, "tools", "b")];
const update: PendingUpdate = { ...parts[0]!, superseded: [], parts };
const merge = (number: number, head: string, commit: string): MergeResult => ({ number, method: "merge", headSha: sha(head), mergeCommitSha: sha(commit) });

describe("pr-merge: what to merge", () => {
  it("takes the parts and heads of the pending update in msg.payload, or in msg.pending after a preview", () => {
    const want = { number: 11, expected: { headSha: sha("a"), parts: [{ number: 11, headSha: sha("a") }, { number: 12, headSha: sha("b") }] } };
    expect(mergeTarget({ payload: update } as NodeMessage)).toEqual(want);
    expect(mergeTarget({ payload: { pr: 11 }, pending: update, prNumber: 11, headSha: sha("a") } as NodeMessage)).toEqual(want);
  });

  it("takes the API's parts (numbers only), and checks them", () => {
    expect(mergeTarget({ prNumber: 11, parts: [11, 12] } as NodeMessage)).toEqual({ number: 11, expected: { parts: [{ number: 11 }, { number: 12 }] } });
    expect(() => mergeTarget({ prNumber: 11, parts: ["x"] } as NodeMessage)).toThrow(/msg\.parts/);
    expect(() => mergeTarget({ prNumber: 11, parts: [] } as NodeMessage)).toThrow(/msg\.parts/);
  });
});

describe("pr-merge: what output 1 carries", () => {
  it("deploys the last merge, lists every merge and the combined diff, and names the first merge for a revert", () => {
    const msg = {} as NodeMessage;
    mergedMessage(msg, 11, [merge(11, "a", "c"), merge(12, "b", "d")], update, []);
    expect(msg.commit).toBe(sha("d"));
    expect(msg.firstMergeCommit).toBe(sha("c"));
    expect(msg.merged).toEqual([{ number: 11, mergeCommitSha: sha("c") }, { number: 12, mergeCommitSha: sha("d") }]);
    expect((msg.lockDiff as PendingPart["lockDiff"]).updated.map((u) => u.input)).toEqual(["nixpkgs", "tools"]);
    expect(msg.notMerged).toEqual([]);
  });

  it("after a partial merge deploys what landed, with only the merged parts' diff and no revert base of its own", () => {
    const msg = { firstMergeCommit: sha("e") } as NodeMessage;
    mergedMessage(msg, 11, [merge(11, "a", "c")], update, [{ number: 12, reason: "PR #12 is not mergeable (405)" }]);
    expect(msg.commit).toBe(sha("c"));
    expect(msg).not.toHaveProperty("firstMergeCommit");
    expect((msg.lockDiff as PendingPart["lockDiff"]).updated.map((u) => u.input)).toEqual(["nixpkgs"]);
    expect(msg.notMerged).toEqual([{ number: 12, reason: "PR #12 is not mergeable (405)" }]);
  });
});
