/**
 * Audit attribution: who (as authenticated) asked a host to do something. The embedded broker
 * reports every authorized publish by an operator to hosts/<h>/commands or hosts/<h>/actions as a
 * HostRequestInfo; the hub writes it to the audit log. The user comes from the login, never from
 * the payload (`requestedBy` is only what the payload claims).
 */
import { Command, decodeJson, type Topics } from "../protocol/index.js";

export interface HostRequestInfo {
  clientId: string;
  user: string;
  role: string;
  kind: "command" | "action";
  host: string;
  valid: boolean;
  op?: string;
  id?: string;
  requestedBy?: string;
  rolloutId?: string;
}

const ACTION_TEXT = /^[a-z][a-z-]{0,39}$/;

/** What a hosts/<h>/commands or .../actions payload says, for the hostRequest event. */
export function describeHostRequest(kind: "command" | "action", payload: Buffer | string): Pick<HostRequestInfo, "valid" | "op" | "id" | "requestedBy" | "rolloutId"> {
  if (kind === "action") {
    const op = (typeof payload === "string" ? payload : payload.toString("utf8")).trim();
    return ACTION_TEXT.test(op) ? { valid: true, op } : { valid: false };
  }
  const r = decodeJson(Command, payload);
  if (!r.ok) return { valid: false };
  const c = r.value;
  return { valid: true, op: c.op, id: c.id, requestedBy: c.requestedBy, ...(c.rolloutId !== undefined ? { rolloutId: c.rolloutId } : {}) };
}

/** The request a publish to `topic` makes of a host, or undefined when the topic is no host request. */
export function hostRequestOf(
  topics: Topics,
  sender: { clientId: string; user: string; role: string },
  topic: string,
  payload: Buffer | string,
): HostRequestInfo | undefined {
  const parsed = topics.parse(topic);
  if (!parsed || (parsed.kind !== "commands" && parsed.kind !== "actions")) return undefined;
  const kind = parsed.kind === "commands" ? "command" : "action";
  return { ...sender, kind, host: parsed.host, ...describeHostRequest(kind, payload) };
}
