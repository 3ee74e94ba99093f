/**
 * lockstep-rollback: undo a deployment. Mode "hosts": each host in msg.hosts goes back to its
 * previous profile generation (or msg.generations[host]) through the agent's rollback command.
 * Mode "revert": the merge commit is reverted on GitHub (flake.lock restored byte for byte, as a
 * PR or a commit), so the whole fleet's next rollout goes back too.
 * Output 1: everything rolled back / reverted. Output 2: some host failed (msg.payload per host).
 */
import { z } from "zod";
import { CommitSha, type JobState } from "../../protocol/schemas.js";
import { ConfigError } from "../../protocol/errors.js";
import { newCommandId } from "../../rollout/fleet-port.js";
import type { FleetConfigNode } from "../lib/fleet-connection.js";
import type { GitHubConfigNode } from "../lib/github-connection.js";
import { onClose, onInput, optionalNumber, optionalString, parseMessageField, HostId, requester } from "../lib/input.js";
import { errorText, status } from "../lib/status.js";
import type { Node, NodeAPI, NodeDef, NodeMessage } from "../lib/red.js";

const Generations = z.record(HostId, z.number().int().positive());

/** msg.hosts, or the failed/succeeded hosts of a rollout outcome in msg.payload. */
function hostsOf(msg: NodeMessage): string[] {
  if (msg.hosts !== undefined) return parseMessageField(z.array(HostId).min(1), msg.hosts, "msg.hosts");
  const p = msg.payload as { hosts?: Record<string, { state?: string }> } | undefined;
  if (p?.hosts && typeof p.hosts === "object") {
    const switched = Object.entries(p.hosts)
      .filter(([, h]) => h.state === "succeeded" || h.state === "failed")
      .map(([host]) => host);
    return parseMessageField(z.array(HostId), switched, "the hosts of the rollout in msg.payload");
  }
  return parseMessageField(z.array(HostId).min(1), undefined, "msg.hosts");
}

export = function register(RED: NodeAPI): void {
  function LockstepRollbackNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const mode = optionalString(def.mode) ?? "hosts";
    const fleetNode = def.fleet ? (RED.nodes.getNode(String(def.fleet)) as FleetConfigNode | null) : null;
    const githubNode = def.github ? (RED.nodes.getNode(String(def.github)) as GitHubConfigNode | null) : null;
    const timeoutS = optionalNumber(def.timeout) ?? 30 * 60;
    const aborts = new Set<AbortController>();
    if (mode === "hosts") fleetNode?.register(node);
    else githubNode?.register(node);
    if (mode === "hosts" && !fleetNode) node.status(status.failed("no fleet selected"));
    if (mode === "revert" && !githubNode) node.status(status.failed("no GitHub repository selected"));

    async function rollbackHosts(msg: NodeMessage, send: (m: (NodeMessage | null)[]) => void): Promise<void> {
      const connection = fleetNode?.connection;
      if (!connection) throw new ConfigError(fleetNode?.configError ?? "no fleet connection", "select a lockstep-fleet node");
      const hosts = hostsOf(msg);
      const generations = msg.generations === undefined ? {} : parseMessageField(Generations, msg.generations, "msg.generations");
      const requestedBy = requester(msg, node);
      const rolloutId = typeof msg.rolloutId === "string" ? msg.rolloutId : undefined;
      node.status(status.working(`rolling back ${hosts.length} host(s)`));
      const abort = new AbortController();
      aborts.add(abort);
      const results: Record<string, { state: string; summary: string; generationAfter?: number }> = {};
      try {
        await Promise.all(
          hosts.map(async (host) => {
            const id = newCommandId();
            const generation = generations[host];
            try {
              await connection.fleet.sendCommand(host, "rollback", generation ? { generation } : {}, {
                id,
                requestedBy,
                expiresAt: new Date(Date.now() + timeoutS * 1000),
                ...(rolloutId ? { rolloutId } : {}),
              });
              const job: JobState = await connection.fleet.waitForJob(host, id, timeoutS * 1000, abort.signal);
              results[host] = { state: job.state, summary: job.summary, ...(job.generationAfter !== undefined ? { generationAfter: job.generationAfter } : {}) };
            } catch (err) {
              results[host] = { state: "failed", summary: errorText(err) };
            }
          }),
        );
      } finally {
        aborts.delete(abort);
      }
      const failed = Object.entries(results).filter(([, r]) => r.state !== "succeeded").map(([h]) => h);
      msg.payload = results;
      msg.hosts = hosts;
      if (failed.length) {
        msg.reason = `rollback failed on ${failed.join(", ")}`;
        node.status(status.failed(msg.reason as string));
        send([null, msg]);
      } else {
        node.status(status.ok(`rolled back ${hosts.length} host(s)`));
        send([msg, null]);
      }
    }

    async function revertMerge(msg: NodeMessage, send: (m: (NodeMessage | null)[]) => void): Promise<void> {
      const connection = githubNode?.connection;
      if (!connection) throw new ConfigError(githubNode?.configError ?? "no GitHub repository selected");
      const p = (typeof msg.payload === "object" && msg.payload !== null ? msg.payload : {}) as Record<string, unknown>;
      // An update merged as several PRs (msg.firstMergeCommit from pr-merge) is reverted to before its first merge.
      const commit = parseMessageField(CommitSha, msg.firstMergeCommit ?? msg.commit ?? p.mergeCommitSha ?? p.commit, "the merge commit to revert (msg.commit)");
      const prNumber = msg.prNumber ?? p.prNumber;
      const reason = typeof msg.reason === "string" && msg.reason ? msg.reason : typeof p.summary === "string" ? `rollout ${p.state ?? "failed"}: ${p.summary}` : "rolled back from Node-RED";
      node.status(status.working(`reverting ${commit.slice(0, 8)}`));
      const result = await connection.revert(commit, reason.slice(0, 500), {
        ...(typeof prNumber === "number" ? { prNumber } : {}),
        requestedBy: requester(msg, node),
      });
      msg.revert = result;
      msg.payload = result;
      node.status(status.ok(result.pullRequest ? `revert PR #${result.pullRequest.number}` : `reverted in ${result.commitSha.slice(0, 8)}`));
      send([msg, null]);
    }

    onInput(node, async (msg, send) => {
      const wanted = optionalString(msg.mode as string | undefined) ?? mode;
      if (wanted === "revert") await revertMerge(msg, send);
      else if (wanted === "hosts") await rollbackHosts(msg, send);
      else throw new ConfigError(`unknown rollback mode "${wanted}"`, 'use "hosts" or "revert"');
    });

    onClose(node, () => {
      for (const a of aborts) a.abort();
      fleetNode?.deregister(node);
      githubNode?.deregister(node);
    });
  }
  RED.nodes.registerType("lockstep-rollback", LockstepRollbackNode);
};
