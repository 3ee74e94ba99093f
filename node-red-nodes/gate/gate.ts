/**
 * lockstep-gate: lets a message through only inside the maintenance window and only for hosts not
 * on hold. Output 1: passed (msg.hosts with held hosts removed). Output 2: held back, with
 * msg.reason saying why.
 */
import { z } from "zod";
import { decideGate, gateConfigFromDef, type GateConfig } from "../lib/gate-logic.js";
import { onInput, parseMessageField, HostId } from "../lib/input.js";
import { status } from "../lib/status.js";
import type { FleetConfigNode } from "../lib/fleet-connection.js";
import type { Node, NodeAPI, NodeDef } from "../lib/red.js";


export = function register(RED: NodeAPI): void {
  function LockstepGateNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    let config: GateConfig;
    try {
      config = gateConfigFromDef(def);
    } catch (err) {
      node.status(status.failed(err));
      node.error(err);
      return;
    }
    const fleet = typeof def.fleet === "string" && def.fleet ? (RED.nodes.getNode(def.fleet) as FleetConfigNode | null) : null;
    node.status(status.idle(config.window ? `window ${config.window.start}-${config.window.end}` : "no window"));

    onInput(node, async (msg, send) => {
      const host = msg.host === undefined ? undefined : parseMessageField(HostId, msg.host, "msg.host");
      const hosts = msg.hosts === undefined ? undefined : parseMessageField(z.array(HostId), msg.hosts, "msg.hosts");
      const heldByFleet = new Map<string, string>();
      for (const h of fleet?.heldHosts() ?? []) heldByFleet.set(h.host, h.reason ?? "");
      const decision = decideGate(config, { host, hosts, heldByFleet }, new Date());
      if (decision.pass) {
        if (decision.hosts) msg.hosts = decision.hosts;
        msg.held = decision.held;
        node.status(status.ok(decision.held.length ? `passed, ${decision.held.length} held` : "passed"));
        send([msg, null]);
      } else {
        msg.reason = decision.reason;
        msg.held = decision.held;
        node.status(status.waiting(decision.reason));
        send([null, msg]);
      }
    });
  }
  RED.nodes.registerType("lockstep-gate", LockstepGateNode);
};
