/**
 * lockstep-pr-merge: merges the lock-update PR when its guards hold: CI (green, or at least not
 * failing), a minimum age since the PR was opened, and an unchanged head (the one that was checked
 * is the one merged). Output 1: merged, with the merge commit to deploy. Output 2: not merged yet,
 * with the reason and whether waiting can help (msg.retryable).
 */
import { z } from "zod";
import { CommitSha, PendingUpdate } from "../../protocol/schemas.js";
import { ConfigError } from "../../protocol/errors.js";
import { MergeGuardError, MergeRefusedError, type CiGuard } from "../../github/merge.js";
import type { GitHubConfigNode } from "../lib/github-connection.js";
import { onClose, onInput, optionalNumber, optionalString, parseMessageField, requester } from "../lib/input.js";
import { lockstepSettings } from "../lib/settings.js";
import { status } from "../lib/status.js";
import type { Node, NodeAPI, NodeDef, NodeMessage } from "../lib/red.js";

const PrNumber = z.coerce.number().int().positive();
const RETRYABLE = new Set(["too-young", "mergeability-unknown", "ci-pending"]);

/** The PR number and (when known) the head that was checked, from msg.prNumber or a PendingUpdate payload. */
function target(msg: NodeMessage): { number: number; headSha?: string } {
  const fromPayload = PendingUpdate.safeParse(msg.payload);
  if (msg.prNumber !== undefined) {
    const number = parseMessageField(PrNumber, msg.prNumber, "msg.prNumber");
    const headSha = msg.headSha !== undefined ? parseMessageField(CommitSha, msg.headSha, "msg.headSha") : fromPayload.success && fromPayload.data.number === number ? fromPayload.data.headSha : undefined;
    return { number, ...(headSha ? { headSha } : {}) };
  }
  if (fromPayload.success) return { number: fromPayload.data.number, headSha: fromPayload.data.headSha };
  return { number: parseMessageField(PrNumber, undefined, "msg.prNumber (or a pending update in msg.payload)") };
}

export = function register(RED: NodeAPI): void {
  function LockstepPrMergeNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const githubNode = RED.nodes.getNode(String(def.github ?? "")) as GitHubConfigNode | null;
    githubNode?.register(node);
    const ci = (optionalString(def.ci) ?? "success") as CiGuard;
    // Blank: the hub's automatic.mergeDelayMinutes (the weekly flow's delay); otherwise this many minutes.
    const minAgeMinutes = optionalNumber(def.minAge) ?? lockstepSettings(RED).automatic.mergeDelayMinutes ?? 0;
    if (githubNode?.connection) node.status(status.idle(`CI ${ci}, min age ${minAgeMinutes} min`));

    onInput(node, async (msg, send) => {
      const { number, headSha } = target(msg);
      const connection = githubNode?.connection;
      if (!connection) throw new ConfigError(githubNode?.configError ?? "no GitHub repository selected");
      node.status(status.working(`checking PR #${number}`));
      try {
        const { update, result } = await connection.merge(number, { ci, minAgeMs: minAgeMinutes * 60_000 }, headSha, requester(msg, node));
        msg.prNumber = number;
        msg.commit = result.mergeCommitSha;
        msg.lockDiff = update.lockDiff;
        msg.payload = { ...result, title: update.title, url: update.url, lockDiff: update.lockDiff };
        node.status(status.ok(`merged #${number} as ${result.mergeCommitSha.slice(0, 8)}`));
        send([msg, null]);
      } catch (err) {
        if (err instanceof MergeGuardError) {
          // CI still running counts as "wait"; CI failed or GitHub refusing the merge does not.
          const guards = err.failures.map((f) => ({ ...f, guard: f.guard === "ci-not-green" && err.ciState === "pending" ? "ci-pending" : f.guard }));
          msg.prNumber = number;
          msg.reason = err.message;
          msg.guards = guards;
          msg.retryable = guards.every((g) => RETRYABLE.has(g.guard));
          node.status(status.waiting(guards.map((g) => g.guard).join(", ")));
          send([null, msg]);
          return;
        }
        if (err instanceof MergeRefusedError) {
          msg.prNumber = number;
          msg.reason = err.message;
          msg.guards = [{ guard: err.reason, detail: err.message }];
          msg.retryable = err.reason === "head-moved";
          node.status(status.waiting(err.reason));
          send([null, msg]);
          return;
        }
        throw err;
      }
    });

    onClose(node, () => githubNode?.deregister(node));
  }
  RED.nodes.registerType("lockstep-pr-merge", LockstepPrMergeNode);
};
