/**
 * lockstep-fleet (config node): the connection to the fleet's broker. It owns one FleetConnection
 * (MQTT client, live host state, rollout service with its state under the Node-RED user dir) and
 * shows its state on every node that uses it. Blank fields take the hub's settings, so the shipped
 * flows need no editing when they run inside `lockstep hub`.
 */
import { join } from "node:path";
import { ConfigError } from "../../protocol/errors.js";
import { Topics } from "../../protocol/topics.js";
import { FleetConnection, type ConnectionState, type FleetConfigNode, type RevertProvider } from "../lib/fleet-connection.js";
import { onClose, optionalString } from "../lib/input.js";
import { nodeRedLogger } from "../lib/logger.js";
import { lockstepSettings } from "../lib/settings.js";
import { errorText, status } from "../lib/status.js";
import type { Node, NodeAPI, NodeDef, NodeStatus } from "../lib/red.js";

/** Only one fleet node answers Home Assistant's "install" requests. */
let haClaimedBy: string | undefined;

function statusFor(state: ConnectionState, detail?: string): NodeStatus {
  switch (state) {
    case "connected":
      return status.ok("connected");
    case "connecting":
      return status.connecting();
    case "disconnected":
      return status.failed("disconnected");
    case "failed":
      return status.failed(detail ?? "connection failed");
  }
}

export = function register(RED: NodeAPI): void {
  function LockstepFleetNode(this: FleetConfigNode, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const users = new Set<Node>();
    node.register = (user) => {
      users.add(user);
      if (node.connection) user.status(statusFor(node.connection.state, node.connection.stateDetail));
      else user.status(status.failed(node.configError ?? "fleet not configured"));
    };
    node.deregister = (user) => {
      users.delete(user);
    };
    node.heldHosts = () => node.connection?.heldHosts() ?? [];

    try {
      const settings = lockstepSettings(RED);
      const url = optionalString(def.broker) ?? settings.mqtt?.url;
      if (!url) throw new ConfigError("no broker URL", "set the broker in the lockstep-fleet node, or run inside `lockstep hub`");
      const own = optionalString(def.broker) !== undefined;
      const username = optionalString(node.credentials?.username) ?? (own ? undefined : settings.mqtt?.username);
      const password = optionalString(node.credentials?.password) ?? (own ? undefined : settings.mqtt?.password);
      const prefix = optionalString(def.prefix) ?? settings.prefix;
      if (prefix) new Topics(prefix); // throws on a bad prefix, with the reason
      const stateDir = settings.stateDir ?? join(RED.settings.userDir ?? ".", "lockstep", `fleet-${node.id.replace(/[^A-Za-z0-9_-]/g, "_")}`);
      const githubId = optionalString(def.github);
      const logger = nodeRedLogger(RED, `lockstep-fleet:${node.name || node.id}`);
      const connection = new FleetConnection({
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
      node.connection = connection;
      connection.on("state", (state, detail) => {
        for (const user of users) user.status(statusFor(state, detail));
      });

      const hubEvents = settings.hubEvents;
      const onInstall = (req: { host: string }) => {
        const commit = connection.fleet.expected()?.headCommit;
        if (!commit) {
          node.warn(`Home Assistant asked to install on ${req.host}, but fleet/expected has no head commit yet`);
          return;
        }
        try {
          const id = connection.rollouts.installOnHost(req.host, commit, "home-assistant");
          node.log(`Home Assistant install on ${req.host}: rollout ${id}`);
        } catch (err) {
          node.warn(`Home Assistant install on ${req.host} refused: ${errorText(err)}`);
        }
      };
      if (hubEvents && haClaimedBy === undefined) {
        haClaimedBy = node.id;
        hubEvents.on("install-requested", onInstall);
      }

      onClose(node, async () => {
        if (haClaimedBy === node.id) {
          hubEvents?.off("install-requested", onInstall);
          haClaimedBy = undefined;
        }
        await connection.close();
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
