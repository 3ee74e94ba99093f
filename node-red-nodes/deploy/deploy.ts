/**
 * lockstep-deploy: runs a staged rollout of one exact commit (canary, soak, waves, pull → switch →
 * test per host, health gate, failure policy). It returns at once: output 1 carries "started" (with
 * the input message, so an HTTP endpoint can answer with the rollout id) and then "progress"
 * events; output 2 carries the outcome when the rollout ends.
 *
 * With `msg.checkOnly` it starts nothing: it builds and checks the spec exactly as it would start it
 * (hosts known and free, a plan exists) and sends the message on output 1 with topic "checked".
 * Merge-and-deploy does this before merging, so a request that cannot be deployed never merges.
 */
import { z } from "zod";
import { CommitSha, LockDiff, type RolloutProgress } from "../../protocol/schemas.js";
import { ConfigError } from "../../protocol/errors.js";
import { mergeSpecLayers, parseRolloutSpec } from "../../rollout/spec.js";
import { carryOverPreview, type PreviewPlanHints } from "../../rollout/previews.js";
import type { PreviewService } from "../../rollout/preview-service.js";
import { specFromNodeConfig } from "../lib/deploy-spec.js";
import { cancelStepRequest, isCancelStep } from "../lib/cancel-step.js";
import type { FleetConfigNode } from "../lib/fleet-connection.js";
import { onClose, onInput, parseMessageField, HostId, requester } from "../lib/input.js";
import { lockstepSettings } from "../lib/settings.js";
import { status } from "../lib/status.js";
import type { Node, NodeAPI, NodeDef, NodeMessage } from "../lib/red.js";

const Hosts = z.array(HostId).min(1);
const Tags = z.array(z.string().min(1)).min(1);
const PartialSpec = z.record(z.string(), z.unknown());
const LockHashField = z.string().regex(/^[0-9a-f]{64}$/, "a sha256 hex digest");
const RolloutIdField = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/, "a rollout id");

/** Stands in for the commit a check runs before the merge that makes it (the plan does not depend on it). */
const NOT_YET_MERGED = "0".repeat(40);

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/);

/**
 * What the previews of the merged PR's head say about this rollout, when they carry over to the
 * merge commit (rollout/previews.ts carryOverPreview: the merged flake.lock is the previewed one).
 */
function previewOfMerge(msg: NodeMessage, previews: PreviewService | undefined): PreviewPlanHints | undefined {
  if (!previews || msg.prNumber === undefined || msg.headSha === undefined) return undefined;
  const pr = parseMessageField(z.coerce.number().int().positive(), msg.prNumber, "msg.prNumber");
  const headSha = parseMessageField(CommitSha, msg.headSha, "msg.headSha");
  const previewed = msg.previewedLockHash === undefined ? undefined : parseMessageField(Sha256, msg.previewedLockHash, "msg.previewedLockHash");
  const merged = msg.mergedLockHash === undefined ? undefined : parseMessageField(Sha256, msg.mergedLockHash, "msg.mergedLockHash");
  return carryOverPreview(previews.planHints(pr, headSha), { previewed, merged });
}

/** The commit to deploy: msg.commit, or the merge commit / commit in msg.payload. */
function commitOf(msg: NodeMessage): string {
  const p = (typeof msg.payload === "object" && msg.payload !== null ? msg.payload : {}) as Record<string, unknown>;
  const value = msg.commit ?? p.mergeCommitSha ?? p.commit;
  return parseMessageField(CommitSha, value, "the commit to deploy (msg.commit)");
}

/** The message's own fields for follow-up messages, without the HTTP request/response. */
function context(msg: NodeMessage): NodeMessage {
  const { req: _req, res: _res, _msgid: _id, payload: _p, topic: _t, ...rest } = msg;
  void _req;
  void _res;
  void _id;
  void _p;
  void _t;
  return rest;
}

function summary(p: RolloutProgress): string {
  return `${p.state}: ${p.counts.succeeded}/${p.counts.total} done${p.counts.failed ? `, ${p.counts.failed} failed` : ""}`;
}

export = function register(RED: NodeAPI): void {
  function LockstepDeployNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const fleetNode = RED.nodes.getNode(String(def.fleet ?? "")) as FleetConfigNode | null;
    if (fleetNode) fleetNode.register(node);
    else node.status(status.failed("no fleet selected"));
    let nodeSpec: Record<string, unknown> = {};
    try {
      nodeSpec = specFromNodeConfig(def);
    } catch (err) {
      node.status(status.failed(err));
      node.error(err);
    }

    // Rollouts this node started, with the message context their events carry; after a restart,
    // the ones still unfinished (they resume) are picked up again from the fleet's state dir.
    const mine = new Map<string, NodeMessage>();
    const connection0 = fleetNode?.connection;
    for (const { rolloutId, context: ctx } of connection0?.startersFor(node.id) ?? []) mine.set(rolloutId, ctx);
    const events = connection0?.rollouts.events;
    // Entries for rollouts that ended while nobody listened (e.g. a crash right at the end) are dropped.
    void connection0?.ready.then(async () => {
      for (const id of [...mine.keys()]) {
        const p = await connection0.rollouts.get(id).catch(() => undefined);
        if (!connection0.rollouts.isRunning(id) && (!p || p.finishedAt)) {
          mine.delete(id);
          connection0.forgetStarter(id);
        }
      }
    });
    const onProgress = (p: RolloutProgress) => {
      const ctx = mine.get(p.id);
      if (!ctx) return;
      node.status(status.working(p.summary || summary(p)));
      node.send([{ ...ctx, topic: "progress", rolloutId: p.id, payload: p }, null]);
    };
    const onDone = (p: RolloutProgress) => {
      const ctx = mine.get(p.id);
      if (!ctx) return;
      mine.delete(p.id);
      connection0?.forgetStarter(p.id);
      node.status(p.state === "completed" ? status.ok(summary(p)) : status.failed(summary(p)));
      node.send([null, { ...ctx, topic: p.state, rolloutId: p.id, payload: p }]);
    };
    events?.on("progress", onProgress);
    events?.on("done", onDone);

    onInput(node, async (msg, send) => {
      const connection = fleetNode?.connection;
      if (!connection) throw new ConfigError(fleetNode?.configError ?? "no fleet connection", "select a lockstep-fleet node");
      if (isCancelStep(msg)) {
        const { rolloutId, host } = cancelStepRequest(msg);
        await connection.rollouts.cancelStep(rolloutId, host, requester(msg, node));
        msg.topic = "step-cancelled";
        send([msg, null]);
        return;
      }
      const checkOnly = msg.checkOnly === true;
      const commit = checkOnly && msg.commit === undefined ? NOT_YET_MERGED : commitOf(msg);
      const layers = [
        lockstepSettings(RED).rollout ?? {},
        nodeSpec,
        msg.spec === undefined ? {} : parseMessageField(PartialSpec, msg.spec, "msg.spec"),
      ];
      const fixed: Record<string, unknown> = { commit };
      if (msg.hosts !== undefined) fixed.selection = { hosts: parseMessageField(Hosts, msg.hosts, "msg.hosts") };
      else if (msg.tags !== undefined) fixed.selection = { tags: parseMessageField(Tags, msg.tags, "msg.tags") };
      if (msg.prNumber !== undefined) fixed.prNumber = parseMessageField(z.coerce.number().int().positive(), msg.prNumber, "msg.prNumber");
      if (msg.lockDiff !== undefined) fixed.lockDiff = parseMessageField(LockDiff, msg.lockDiff, "msg.lockDiff");
      if (msg.lockHash !== undefined) fixed.lockHash = parseMessageField(LockHashField, msg.lockHash, "msg.lockHash");
      if (msg.converges !== undefined) {
        // Converging onto Lockstep's revert of a failed rollout: a failure here never reverts the revert.
        fixed.converges = parseMessageField(RolloutIdField, msg.converges, "msg.converges");
        fixed.revertOnFailure = false;
      }
      // Set by pr-merge when the update was merged as several PRs: a revert on failure undoes them all.
      if (msg.firstMergeCommit !== undefined) fixed.firstMergeCommit = parseMessageField(CommitSha, msg.firstMergeCommit, "msg.firstMergeCommit");
      // The merged PR head's previews (from the merge node's message): hosts not affected pull only, reboots marked.
      const preview = previewOfMerge(msg, connection.previews);
      if (preview) fixed.preview = preview;
      const spec = parseRolloutSpec(mergeSpecLayers(...layers, fixed));
      if (checkOnly) {
        connection.rollouts.check(spec);
        msg.topic = "checked";
        send([msg, null]);
        return;
      }

      const id = connection.rollouts.start(spec, requester(msg, node));
      mine.set(id, context(msg));
      connection.rememberStarter(id, node.id, context(msg));
      msg.rolloutId = id;
      msg.topic = "started";
      msg.payload = { rolloutId: id, commit, selection: spec.selection };
      node.status(status.working(`rollout ${id} started`));
      send([msg, null]);
    });

    onClose(node, () => {
      events?.off("progress", onProgress);
      events?.off("done", onDone);
      fleetNode?.deregister(node);
    });
  }
  RED.nodes.registerType("lockstep-deploy", LockstepDeployNode);
};
