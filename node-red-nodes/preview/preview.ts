/**
 * lockstep-preview: PR in → preview out. Asks the fleet to preview the pending lock-update PR's
 * head (what merging it would change on each host, whether it builds, reboots) and sends the
 * preview on once every host that could be asked has reported, or when its timeout is up. The
 * status dot follows it: requested → n of m hosts → done / does not build. The work is
 * lib/preview-logic.ts, on the fleet's PreviewService (inside the hub, the hub's own).
 */
import { PendingUpdate } from "../../protocol/schemas.js";
import { ConfigError } from "../../protocol/errors.js";
import type { FleetConfigNode } from "../lib/fleet-connection.js";
import { onClose, onInput, optionalNumber, parseMessageField } from "../lib/input.js";
import { awaitPreview, resultStatus } from "../lib/preview-logic.js";
import { status } from "../lib/status.js";
import type { Node, NodeAPI, NodeDef } from "../lib/red.js";

/** How long to wait for every host by default: a canary's build of a big update takes a while. */
const DEFAULT_TIMEOUT_MINUTES = 60;

export = function register(RED: NodeAPI): void {
  function LockstepPreviewNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const fleetNode = RED.nodes.getNode(String(def.fleet ?? "")) as FleetConfigNode | null;
    if (fleetNode) fleetNode.register(node);
    else node.status(status.failed("no fleet selected"));
    const timeoutMinutes = optionalNumber(def.timeout) ?? DEFAULT_TIMEOUT_MINUTES;
    const closing = new AbortController();

    onInput(node, async (msg, send) => {
      const pending = parseMessageField(PendingUpdate, msg.payload, "msg.payload (a pending update from pr watch)");
      const connection = fleetNode?.connection;
      if (!connection) throw new ConfigError(fleetNode?.configError ?? "no fleet selected", "select a lockstep-fleet node");
      if (!connection.previews) throw new ConfigError("previews are off in the hub", "set previews.enabled in the hub config (LOCKSTEP_PREVIEWS_ENABLED), or take this node out of the flow");
      await connection.ready;
      const preview = await awaitPreview(connection.previews, pending, {
        timeoutMs: timeoutMinutes * 60_000,
        onStatus: (s) => node.status(s),
        signal: closing.signal,
      });
      node.status(resultStatus(preview));
      msg.pending = pending;
      msg.prNumber = pending.number;
      msg.headSha = pending.headSha;
      msg.payload = preview;
      send(msg);
    });

    onClose(node, () => {
      closing.abort();
      fleetNode?.deregister(node);
    });
  }
  RED.nodes.registerType("lockstep-preview", LockstepPreviewNode);
};
