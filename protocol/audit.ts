/**
 * Audit events that several senders build alike. Every component publishes its events on
 * fleet/events; the hub keeps them (hub/audit-log.ts).
 */
import { randomBytes } from "node:crypto";
import type { AuditEvent, Command } from "./schemas.js";

/** "e-<time36>-<12 hex>": unique and roughly time-ordered, like the rollout engine's ids. */
export function newAuditEventId(now = new Date()): string {
  return `e-${now.getTime().toString(36)}-${randomBytes(6).toString("hex")}`;
}

/**
 * "command.sent" for a command hub-side code sent (FleetClient, the Home Assistant bridge): the
 * actor is whom it was requested by; that code is the hub's own, so the claim is the hub's word.
 */
export function commandSentEvent(host: string, cmd: Command, now = new Date()): AuditEvent {
  const details: Record<string, unknown> = { op: cmd.op, commandId: cmd.id, expiresAt: cmd.expiresAt };
  if (cmd.rolloutId !== undefined) details.rolloutId = cmd.rolloutId;
  return { id: newAuditEventId(now), at: now.toISOString(), actor: cmd.requestedBy, action: "command.sent", target: host, details };
}
