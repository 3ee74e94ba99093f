/**
 * What the lockstep-pr-merge node reads from and writes to a message, without Node-RED: which PR
 * (or update of several PRs) to merge with what the caller checked, and the fields output 1
 * carries for the deploy and rollback nodes (`msg.commit`: the last merge; `msg.firstMergeCommit`
 * when there were several).
 */
import { z } from "zod";
import { CommitSha, PendingUpdate } from "../../protocol/schemas.js";
import { combineLockDiffs } from "../../protocol/lock-diff.js";
import { updateParts } from "../../protocol/pending-update.js";
import type { MergeResult } from "../../github/merge.js";
import type { MergeExpectation } from "../../github/service.js";
import { parseMessageField } from "./input.js";
import type { NodeMessage } from "./red.js";

const PrNumber = z.coerce.number().int().positive();
/** msg.parts: the PR numbers of the update the caller saw, in merge order (the API's `parts`). */
const PartNumbers = z.array(PrNumber).min(1).max(100);
/**
 * The PR number and what the caller checked: the head and the update's parts, from msg.prNumber /
 * msg.headSha / msg.parts or a PendingUpdate in msg.payload or msg.pending (whose parts and heads
 * pin what is merged).
 */
export function mergeTarget(msg: NodeMessage): { number: number; expected: MergeExpectation } {
  // The update that was checked: msg.payload from pr-watch, or msg.pending after a preview node.
  const fromPayload = [msg.payload, msg.pending].map((v) => PendingUpdate.safeParse(v)).find((r) => r.success) ?? PendingUpdate.safeParse(msg.payload);
  const number = msg.prNumber !== undefined || !fromPayload.success ? parseMessageField(PrNumber, msg.prNumber, "msg.prNumber (or a pending update in msg.payload)") : fromPayload.data.number;
  const checked = fromPayload.success && fromPayload.data.number === number ? fromPayload.data : undefined;
  const headSha = msg.headSha !== undefined ? parseMessageField(CommitSha, msg.headSha, "msg.headSha") : checked?.headSha;
  const expected: MergeExpectation = headSha ? { headSha } : {};
  if (msg.parts !== undefined) expected.parts = parseMessageField(PartNumbers, msg.parts, "msg.parts").map((n) => ({ number: n }));
  else if (checked) expected.parts = updateParts(checked).map((p) => ({ number: p.number, headSha: p.headSha }));
  return { number, expected };
}

/** The fields output 1 carries for what was merged (all parts, or those that landed before a refusal). */
export function mergedMessage(msg: NodeMessage, number: number, merged: MergeResult[], update: PendingUpdate | undefined, notMerged: { number: number; reason: string }[]): void {
  const last = merged.at(-1)!;
  const diffs = update ? updateParts(update).filter((p) => merged.some((m) => m.number === p.number)).map((p) => p.lockDiff) : [];
  msg.prNumber = number;
  msg.commit = last.mergeCommitSha;
  msg.lockDiff = combineLockDiffs(diffs);
  msg.merged = merged.map((m) => ({ number: m.number, mergeCommitSha: m.mergeCommitSha }));
  // Several merges: deploy and rollback revert to before the first one (undoing every part).
  if (merged.length > 1) msg.firstMergeCommit = merged[0]!.mergeCommitSha;
  else delete msg.firstMergeCommit;
  msg.notMerged = notMerged;
  msg.payload = { ...last, number, title: update?.title, url: update?.url, lockDiff: msg.lockDiff, merged: msg.merged, notMerged };
}
