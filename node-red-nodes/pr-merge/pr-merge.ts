/**
 * lockstep-pr-merge: merges the lock-update PR when its guards hold: CI (green, or at least not
 * failing), a minimum age since the PR was opened, and an unchanged head (the one that was checked
 * is the one merged). An update made of several PRs (per-input updaters) is merged whole, oldest
 * first, after every part passed its guards. Output 1: merged, with the commit to deploy (the last
 * merge); also when a later part was refused after earlier ones landed (msg.notMerged lists it:
 * what landed is on the base branch and is deployed). Output 2: nothing merged, with the reason
 * and whether waiting can help (msg.retryable).
 */
import { ConfigError } from "../../protocol/errors.js";
import { MergeGuardError, MergeRefusedError, PartialMergeError, type CiGuard } from "../../github/merge.js";
import type { GitHubConfigNode } from "../lib/github-connection.js";
import { onClose, onInput, optionalNumber, optionalString, requester } from "../lib/input.js";
import { mergedMessage, mergeTarget } from "../lib/pr-merge-logic.js";
import { lockstepSettings } from "../lib/settings.js";
import { status } from "../lib/status.js";
import type { Node, NodeAPI, NodeDef, NodeMessage } from "../lib/red.js";

const RETRYABLE = new Set(["too-young", "mergeability-unknown", "ci-pending"]);
/** Refusals that a fresh look can clear: a moved head, a base GitHub was still taking in, a part that joined. */
const RETRYABLE_REFUSALS = new Set(["head-moved", "base-modified", "parts-changed"]);

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
      const { number, expected } = mergeTarget(msg);
      const connection = githubNode?.connection;
      if (!connection) throw new ConfigError(githubNode?.configError ?? "no GitHub repository selected");
      node.status(status.working(`checking PR #${number}`));
      try {
        const { update, result, merged, revert, mergedLockHash } = await connection.merge(number, { ci, minAgeMs: minAgeMinutes * 60_000 }, expected, requester(msg, node));
        mergedMessage(msg, number, merged, update, []);
        // Hosts already on this lock may need no switch (the deploy node's spec.lockHash).
        if (merged.length === 1) msg.lockHash = update.lockHash;
        // What the deploy node needs to carry the PR head's preview over to the merge commit (one PR merged).
        if (merged.length === 1) {
          msg.headSha = update.headSha;
          if (update.lockHash) msg.previewedLockHash = update.lockHash;
          if (mergedLockHash) msg.mergedLockHash = mergedLockHash;
        }
        // Lockstep's revert of a failed rollout: the deploy converges the fleet onto it.
        if (revert?.rollout) msg.converges = revert.rollout;
        node.status(status.ok(`merged ${merged.map((m) => `#${m.number}`).join(", ")} as ${result.mergeCommitSha.slice(0, 8)}`));
        send([msg, null]);
      } catch (err) {
        if (err instanceof PartialMergeError) {
          // What landed is on the base branch: the fleet follows it (deploy), the rest stays open.
          mergedMessage(msg, number, err.merged, err.update, err.notMerged);
          msg.reason = err.message;
          node.status(status.waiting(`merged ${err.merged.map((m) => `#${m.number}`).join(", ")}; not ${err.notMerged.map((p) => `#${p.number}`).join(", ")}`));
          send([msg, null]);
          return;
        }
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
          msg.retryable = RETRYABLE_REFUSALS.has(err.reason);
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
