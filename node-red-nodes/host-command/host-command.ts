/**
 * lockstep-host-command: send one allow-listed command to one host and wait for its job to finish.
 * Output 1: the job succeeded. Output 2: it failed, was rejected, interrupted or cancelled (msg.job
 * says which). A timeout or a bad message is an error (Catch nodes see it).
 */
import { z } from "zod";
import { CommandArgs, CommandOp, COMMAND_OPS, type JobState } from "../../protocol/schemas.js";
import { ConfigError } from "../../protocol/errors.js";
import { newCommandId } from "../../rollout/fleet-port.js";
import type { FleetConfigNode } from "../lib/fleet-connection.js";
import { onClose, onInput, optionalNumber, optionalString, parseMessageField, HostId, requester } from "../lib/input.js";
import { status } from "../lib/status.js";
import type { Node, NodeAPI, NodeDef } from "../lib/red.js";

const DEFAULT_TIMEOUT_S = 15 * 60;

export = function register(RED: NodeAPI): void {
  function LockstepHostCommandNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const fleetNode = RED.nodes.getNode(String(def.fleet ?? "")) as FleetConfigNode | null;
    const configuredHost = optionalString(def.host);
    const configuredOp = optionalString(def.op);
    const timeoutS = optionalNumber(def.timeout) ?? DEFAULT_TIMEOUT_S;
    const aborts = new Set<AbortController>();

    if (!fleetNode) {
      node.status(status.failed("no fleet selected"));
    } else {
      fleetNode.register(node);
    }

    onInput(node, async (msg, send) => {
      const connection = fleetNode?.connection;
      if (!connection) throw new ConfigError(fleetNode?.configError ?? "no fleet connection", "select a lockstep-fleet node");
      const host = parseMessageField(HostId, msg.host ?? configuredHost, "host (msg.host or the node's Host)");
      const op = parseMessageField(CommandOp, msg.op ?? configuredOp, `op (one of ${COMMAND_OPS.join(", ")})`);
      const argsInput = msg.args ?? {};
      // Validate the arguments for this op here, so a typo fails before anything is sent.
      const args = parseMessageField(CommandArgs[op] as z.ZodType, argsInput, `arguments for ${op} (msg.args)`);
      const timeoutMs = (optionalNumber(msg.timeout) ?? timeoutS) * 1000;
      const requestedBy = requester(msg, node);

      const id = newCommandId();
      node.status(status.working(`${op} on ${host}`));
      await connection.fleet.sendCommand(host, op, args as never, { id, requestedBy, expiresAt: new Date(Date.now() + timeoutMs) });
      const abort = new AbortController();
      aborts.add(abort);
      let job: JobState;
      try {
        job = await connection.fleet.waitForJob(host, id, timeoutMs, abort.signal);
      } finally {
        aborts.delete(abort);
      }
      msg.host = host;
      msg.op = op;
      msg.job = job;
      msg.payload = job.state;
      if (job.state === "succeeded") {
        node.status(status.ok(`${op} on ${host}: succeeded`));
        send([msg, null]);
      } else {
        node.status(status.failed(`${op} on ${host}: ${job.state}`));
        send([null, msg]);
      }
    });

    onClose(node, () => {
      for (const a of aborts) a.abort();
      fleetNode?.deregister(node);
    });
  }
  RED.nodes.registerType("lockstep-host-command", LockstepHostCommandNode);
};

