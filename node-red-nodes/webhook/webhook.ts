/**
 * lockstep-webhook: receives GitHub's webhook deliveries on a POST route (default
 * /api/github/webhook), verifies their HMAC signature against the GitHub node's webhook secret,
 * and sends one message per relevant event. Wire it to a pr-watch node: the check it triggers is
 * what makes detection instant (polling stays the fallback).
 *
 * The route reads the raw body itself (an http-in node would parse it first and break the
 * signature), and it is exempt from the hub's Basic auth: the signature is the authentication.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { createWebhookHandler, type WebhookEvent } from "../../github/webhooks.js";
import type { GitHubConfigNode } from "../lib/github-connection.js";
import { onClose, optionalString } from "../lib/input.js";
import { nodeRedLogger } from "../lib/logger.js";
import { status } from "../lib/status.js";
import type { Node, NodeAPI, NodeDef } from "../lib/red.js";

const DEFAULT_WEBHOOK_PATH = "/api/github/webhook";

export = function register(RED: NodeAPI): void {
  function LockstepWebhookNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const githubNode = RED.nodes.getNode(String(def.github ?? "")) as GitHubConfigNode | null;
    githubNode?.register(node);
    let path = optionalString(def.path) ?? DEFAULT_WEBHOOK_PATH;
    if (!path.startsWith("/")) path = `/${path}`;
    const connection = githubNode?.connection;
    const secret = connection?.config.webhookSecret;

    let handler: (req: IncomingMessage, res: ServerResponse) => unknown;
    if (!connection || !secret) {
      const why = !connection ? (githubNode?.configError ?? "no GitHub repository selected") : "no webhook secret set in the GitHub node";
      node.status(status.failed(why));
      // Refuse every delivery rather than accept unsigned ones.
      handler = (_req, res) => {
        res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ ok: false, error: `webhook not ready: ${why}` }));
      };
    } else {
      let received = 0;
      node.status(status.idle(`listening on ${path}`));
      handler = createWebhookHandler({
        secret,
        repository: connection.repository,
        logger: nodeRedLogger(RED, `lockstep-webhook:${node.name || node.id}`),
        onEvent: (event: WebhookEvent) => {
          received++;
          node.status(status.ok(`${received} received, last: ${event.summary}`));
          if (event.recheck) node.send({ topic: event.name, payload: event });
        },
      });
    }
    RED.httpNode.post(path, handler);

    onClose(node, () => {
      // Remove our route, as the core http-in node does on redeploy.
      const stack = (RED.httpNode._router ?? RED.httpNode.router)?.stack ?? [];
      for (let i = stack.length - 1; i >= 0; i--) {
        const route = stack[i]?.route;
        if (route && route.path === path && route.methods.post) stack.splice(i, 1);
      }
      githubNode?.deregister(node);
    });
  }
  RED.nodes.registerType("lockstep-webhook", LockstepWebhookNode);
};
