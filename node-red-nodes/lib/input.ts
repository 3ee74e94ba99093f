/**
 * Input handling shared by our nodes: run an async handler per message, report failures through
 * done(err) (so Catch nodes fire) and a red status, and validate msg fields with zod.
 */
import { z } from "zod";
import { formatZodError } from "../../protocol/payload.js";
import { LockstepError } from "../../protocol/errors.js";
import { HOST_ID_PATTERN } from "../../protocol/topics.js";
import { asError, status } from "./status.js";
import type { Node, NodeMessage, SendFn } from "./red.js";

export class MessageError extends LockstepError {
  override name = "MessageError";
  constructor(message: string, hint?: string) {
    super(message, "message", hint);
  }
}

/** Register an async input handler. The handler returns normally on success, throws on failure. */
export function onInput(node: Node, handler: (msg: NodeMessage, send: SendFn) => Promise<void>): void {
  node.on("input", (msg, send, done) => {
    handler(msg, send).then(
      () => done(),
      (err: unknown) => {
        node.status(status.failed(err));
        done(asError(err));
      },
    );
  });
}

/** Register an async close handler; Node-RED waits for done() before redeploying. */
export function onClose(node: Node, handler: (removed: boolean) => Promise<void> | void): void {
  node.on("close", (removed, done) => {
    Promise.resolve()
      .then(() => handler(removed))
      .catch((err: unknown) => node.error(asError(err)))
      .finally(() => done());
  });
}

/** A host id in a message (msg.host, msg.hosts, ...). */
export const HostId = z.string().regex(HOST_ID_PATTERN, "not a valid host id");

/** Validate a value from a message; the error names the field and the node type. */
export function parseMessageField<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new MessageError(`${what} is invalid: ${formatZodError(r.error)}`);
  return r.data;
}

/** Node-RED config values arrive as strings from the editor: "" means "not set". */
export function optionalNumber(value: unknown): number | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  const n = typeof value === "number" ? value : Number(value);
  return Number.isFinite(n) ? n : undefined;
}

export function optionalString(value: unknown): string | undefined {
  return typeof value === "string" && value.trim() !== "" ? value.trim() : undefined;
}

/** Who asked, for commands and the audit log: msg.requestedBy, the API user, or this node (at most 200 characters, as a Command allows). */
export function requester(msg: NodeMessage, node: Node): string {
  if (typeof msg.requestedBy === "string" && msg.requestedBy) return msg.requestedBy.slice(0, 200);
  const user = (msg.req as { lockstepUser?: { name?: string } } | undefined)?.lockstepUser?.name;
  return user ? `api:${user}` : `node-red:${node.name || node.id}`;
}
