/**
 * lockstep-pr-watch: watches GitHub for the weekly lock-update PR. Checks on every input message
 * and, when an interval is set, on a timer. Output 1: a change (topic "new", "changed" or "closed"),
 * whoever triggered the check. Output 2: the state after a check this node's input asked for (so an
 * HTTP endpoint can answer with it). In a stock Node-RED, with a fleet selected, it also publishes
 * fleet/expected, the retained topic agents compare their git and lock compartments against; inside
 * `lockstep hub` the hub does that (hub/services.ts) and polls GitHub itself.
 */
import type { FleetExpected, PendingUpdate } from "../../protocol/schemas.js";
import type { PendingClosed } from "../../github/poller.js";
import { ConfigError } from "../../protocol/errors.js";
import type { FleetConfigNode } from "../lib/fleet-connection.js";
import type { GitHubConfigNode } from "../lib/github-connection.js";
import { onClose, onInput, optionalNumber } from "../lib/input.js";
import { lockstepSettings } from "../lib/settings.js";
import { errorText, status } from "../lib/status.js";
import type { Node, NodeAPI, NodeDef } from "../lib/red.js";

/** Which pr-watch node publishes fleet/expected for a GitHub connection (one is enough). */
const expectedPublisher = new Map<string, string>();

function describe(pending: PendingUpdate | null): string {
  return pending ? `PR #${pending.number} pending, CI ${pending.ci.state}` : "no update pending";
}

export = function register(RED: NodeAPI): void {
  function LockstepPrWatchNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const githubNode = RED.nodes.getNode(String(def.github ?? "")) as GitHubConfigNode | null;
    const fleetNode = def.fleet ? (RED.nodes.getNode(String(def.fleet)) as FleetConfigNode | null) : null;
    const connection = githubNode?.connection;
    // Inside the hub, the hub publishes fleet/expected from its own GitHub service.
    const hubOwnsExpected = lockstepSettings(RED).services?.github !== undefined;
    githubNode?.register(node);
    if (!connection) {
      node.status(status.failed(githubNode?.configError ?? "no GitHub repository selected"));
    }

    let lastNumber: number | null = connection?.watcher.state.pending?.number ?? null;
    const onUpdate = (pending: PendingUpdate) => {
      const topic = pending.number === lastNumber ? "changed" : "new";
      lastNumber = pending.number;
      node.status(status.ok(describe(pending)));
      node.send([{ topic, payload: pending, prNumber: pending.number }, null]);
    };
    const onClosed = (closed: PendingClosed) => {
      if (closed.number === lastNumber) lastNumber = null;
      node.status(status.idle(`PR #${closed.number} ${closed.merged ? "merged" : "closed"}`));
      node.send([{ topic: "closed", payload: closed, prNumber: closed.number }, null]);
    };
    // The watcher reports an unchanged expectation only once, so the latest is kept and published
    // once the fleet connection is up (the first check runs as the flows start, often before) and
    // again after each reconnect (a broker without persistence has lost it). In order: newest wins.
    let latestExpected: FleetExpected | undefined;
    const publishExpected = () => {
      const fleet = fleetNode?.connection;
      const expected = latestExpected;
      if (hubOwnsExpected || !fleet || !expected || expectedPublisher.get(connection!.repository) !== node.id) return;
      fleet.ready.then(() => fleet.fleet.publishExpected(expected)).catch((err: unknown) => node.warn(`could not publish fleet/expected: ${errorText(err)}`));
    };
    const onExpected = (expected: FleetExpected) => {
      latestExpected = expected;
      publishExpected();
    };
    const onFleetState = (state: string) => {
      if (state === "connected") publishExpected();
    };
    fleetNode?.connection?.on("state", onFleetState);
    const onError = (err: Error) => node.status(status.failed(err));

    let timer: NodeJS.Timeout | undefined;
    if (connection) {
      connection.watcher.on("update", onUpdate);
      connection.watcher.on("closed", onClosed);
      connection.watcher.on("expected", onExpected);
      connection.watcher.on("error", onError);
      if (fleetNode && !expectedPublisher.has(connection.repository)) expectedPublisher.set(connection.repository, node.id);
      // Blank: the GitHub node's poll interval; 0: only when a message arrives.
      const seconds = optionalNumber(def.interval);
      const intervalMs = seconds === undefined ? connection.config.pollIntervalMs : seconds * 1000;
      // A watcher that polls by itself (the hub's) needs no timer here.
      if (intervalMs > 0 && !connection.watcher.polling) {
        const poll = () => void connection.watcher.checkNow();
        setImmediate(poll);
        timer = setInterval(poll, Math.max(intervalMs, 1000));
      }
      const state = connection.watcher.state;
      node.status(state.lastCheckedAt ? status.ok(describe(state.pending)) : status.idle(intervalMs > 0 ? "waiting for the first check" : "checks on input"));
    }

    onInput(node, async (msg, send) => {
      if (!connection) throw new ConfigError(githubNode?.configError ?? "no GitHub repository selected");
      node.status(status.working("checking GitHub"));
      const state = await connection.watcher.checkNow();
      if (state.lastError) throw state.lastError;
      node.status(status.ok(describe(state.pending)));
      msg.topic = "checked";
      msg.payload = {
        pending: state.pending,
        expected: state.expected,
        checkedAt: state.lastCheckedAt?.toISOString() ?? null,
        ignored: state.detection?.ignored ?? [],
      };
      send([null, msg]);
    });

    onClose(node, () => {
      if (timer) clearInterval(timer);
      if (connection) {
        connection.watcher.off("update", onUpdate);
        connection.watcher.off("closed", onClosed);
        connection.watcher.off("expected", onExpected);
        connection.watcher.off("error", onError);
        if (expectedPublisher.get(connection.repository) === node.id) expectedPublisher.delete(connection.repository);
      }
      fleetNode?.connection?.off("state", onFleetState);
      githubNode?.deregister(node);
    });
  }
  RED.nodes.registerType("lockstep-pr-watch", LockstepPrWatchNode);
};
