/**
 * lockstep-fleet (config node): the fleet as the other nodes use it, and the state of its connection
 * on every node that uses it. Inside `lockstep hub` with a blank broker it uses the hub's fleet view
 * and rollout service (settings.lockstep.services); otherwise (a stock Node-RED, or a broker set
 * here) it owns a FleetConnection: MQTT client, fleet view, rollout service with its state under
 * the Node-RED user dir. Blank fields take the hub's settings, so the shipped flows need no editing.
 */
import { join } from "node:path";
import { ConfigError } from "../../protocol/errors.js";
import { Topics } from "../../protocol/topics.js";
import { FleetConnection, type ConnectionState, type FleetConfigNode, type RevertProvider } from "../lib/fleet-connection.js";
import { onClose, optionalString } from "../lib/input.js";
import { nodeRedLogger } from "../lib/logger.js";
import { lockstepSettings } from "../lib/settings.js";
import { errorText, status } from "../lib/status.js";
import { fleetStatus } from "../lib/fleet-status.js";
import type { Node, NodeAPI, NodeDef, NodeStatus } from "../lib/red.js";

/** Host changes can come thousands a second at scale; the status follows at most this often. */
const STATUS_EVERY_MS = 1000;

export = function register(RED: NodeAPI): void {
  function LockstepFleetNode(this: FleetConfigNode, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const users = new Set<Node>();
    let shown: NodeStatus | undefined;
    const current = (): NodeStatus =>
      node.connection
        ? fleetStatus(node.connection.state, node.connection.stateDetail, node.connection.fleet.hosts())
        : status.failed(node.configError ?? "fleet not configured");
    const refresh = () => {
      const next = current();
      if (shown && next.text === shown.text && next.fill === shown.fill) return;
      shown = next;
      for (const user of users) user.status(next);
    };
    node.register = (user) => {
      users.add(user);
      user.status(current());
    };
    node.deregister = (user) => {
      users.delete(user);
    };
    node.heldHosts = () => node.connection?.heldHosts() ?? [];

    try {
      const settings = lockstepSettings(RED);
      const url = optionalString(def.broker) ?? settings.mqtt?.url;
      const own = optionalString(def.broker) !== undefined;
      const prefix = optionalString(def.prefix) ?? settings.prefix;
      if (prefix) new Topics(prefix); // throws on a bad prefix, with the reason
      const hubServices = !own && (prefix === undefined || prefix === settings.prefix) ? settings.services : undefined;
      let connection: FleetConnection;
      if (hubServices) {
        connection = FleetConnection.shared(hubServices);
      } else {
        if (!url) throw new ConfigError("no broker URL", "set the broker in the lockstep-fleet node, or run inside `lockstep hub`");
        const username = optionalString(node.credentials?.username) ?? (own ? undefined : settings.mqtt?.username);
        const password = optionalString(node.credentials?.password) ?? (own ? undefined : settings.mqtt?.password);
        const stateDir = settings.stateDir ?? join(RED.settings.userDir ?? ".", "lockstep", `fleet-${node.id.replace(/[^A-Za-z0-9_-]/g, "_")}`);
        const githubId = optionalString(def.github);
        const logger = nodeRedLogger(RED, `lockstep-fleet:${node.name || node.id}`);
        connection = new FleetConnection({
          url,
          ...(username ? { username } : {}),
          ...(password ? { password } : {}),
          ...(prefix ? { prefix } : {}),
          stateDir,
          logger,
          // Resolved when a rollout asks for it: the GitHub node may start after this one.
          revert: async (ctx) => {
            const github = githubId ? (RED.nodes.getNode(githubId) as RevertProvider | null) : null;
            if (!github?.connection) throw new ConfigError("no GitHub connection for the revert", "select a lockstep-github node in the fleet node");
            return github.connection.revertForRollout(ctx);
          },
        });
      }
      node.connection = connection;
      connection.on("state", refresh);
      let pending: NodeJS.Timeout | undefined;
      const stopFollowing = connection.fleet.onChange((change) => {
        if (change.kind === "job" || pending) return;
        pending = setTimeout(() => {
          pending = undefined;
          refresh();
        }, STATUS_EVERY_MS);
      });

      onClose(node, () => {
        clearTimeout(pending);
        stopFollowing();
        return connection.close();
      });
    } catch (err) {
      node.configError = errorText(err);
      node.error(err);
    }
  }

  RED.nodes.registerType("lockstep-fleet", LockstepFleetNode as unknown as (this: Node, def: NodeDef) => void, {
    credentials: { username: { type: "text" }, password: { type: "password" } },
  });
};
