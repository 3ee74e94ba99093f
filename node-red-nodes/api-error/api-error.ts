/**
 * lockstep-api-error: the API's answer to a caught error. Put it between a Catch node and an HTTP
 * Response node: it sets msg.statusCode from the error's code (lib/api-errors.ts: 400 bad request,
 * 409 conflict or not mergeable now, 422 not a lock update or nothing to deploy, 502 GitHub failed,
 * 503 not configured, ...) and msg.payload to {error, code}. Messages without an HTTP request
 * (msg.res) are dropped: there is nobody to answer.
 */
import { apiErrorBody, httpStatusForCode } from "../lib/api-errors.js";
import { onInput } from "../lib/input.js";
import type { Node, NodeAPI, NodeDef } from "../lib/red.js";

export = function register(RED: NodeAPI): void {
  function LockstepApiErrorNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    onInput(node, async (msg, send) => {
      if (!msg.res) return;
      const error = (typeof msg.error === "object" && msg.error !== null ? msg.error : {}) as { message?: unknown; code?: unknown };
      msg.statusCode = httpStatusForCode(error.code);
      msg.payload = apiErrorBody(error.message, error.code);
      send([msg]);
    });
  }
  RED.nodes.registerType("lockstep-api-error", LockstepApiErrorNode);
};
