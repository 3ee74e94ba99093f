/**
 * Audit events that several senders build alike. Every component publishes its events on
 * fleet/events; the hub keeps them (hub/audit-log.ts).
 */
import { newId } from "./ids.js";
import type { AuditEvent, Command } from "./schemas.js";

/** "e-<time36>-<12 hex>" (protocol/ids.ts, like every other id). */
export function newAuditEventId(now = new Date()): string {
  return newId("e", now);
}

/**
 * "command.sent" for a command hub-side code sent (FleetView, the Home Assistant bridge): the
 * actor is whom it was requested by; that code is the hub's own, so the claim is the hub's word.
 */
export function commandSentEvent(host: string, cmd: Command, now = new Date()): AuditEvent {
  const details: Record<string, unknown> = { op: cmd.op, commandId: cmd.id, expiresAt: cmd.expiresAt };
  if (cmd.rolloutId !== undefined) details.rolloutId = cmd.rolloutId;
  return { id: newAuditEventId(now), at: now.toISOString(), actor: cmd.requestedBy, action: "command.sent", target: host, details };
}

/** "pr.merged": Lockstep merged a lock-update PR (the merge node, the API, the weekly flow). */
export function prMergedEvent(repository: string, pr: { number: number; headSha: string; mergeCommitSha: string }, actor: string, now = new Date()): AuditEvent {
  return {
    id: newAuditEventId(now),
    at: now.toISOString(),
    actor,
    action: "pr.merged",
    target: `${repository}#${pr.number}`,
    details: { prNumber: pr.number, headSha: pr.headSha, mergeCommitSha: pr.mergeCommitSha },
  };
}

/**
 * "revert.merged": Lockstep merged its own revert of a failed rollout's update (the fleet's way
 * back). `rolloutId` is the failed rollout, `revertedPr` the update PR it had deployed.
 */
export function revertMergedEvent(
  repository: string,
  pr: { number: number; headSha: string; mergeCommitSha: string; revertedCommit: string; rolloutId?: string | undefined; revertedPr?: number | undefined },
  actor: string,
  now = new Date(),
): AuditEvent {
  const details: Record<string, unknown> = { prNumber: pr.number, headSha: pr.headSha, mergeCommitSha: pr.mergeCommitSha, revertedCommit: pr.revertedCommit };
  if (pr.rolloutId !== undefined) details.rolloutId = pr.rolloutId;
  if (pr.revertedPr !== undefined) details.revertedPr = pr.revertedPr;
  return { id: newAuditEventId(now), at: now.toISOString(), actor, action: "revert.merged", target: `${repository}#${pr.number}`, details };
}

/** "merge.refused": a merge was asked for and not done; `reason` says why, `code` which guard or refusal. */
export function mergeRefusedEvent(repository: string, prNumber: number, refusal: { code: string; reason: string }, actor: string, now = new Date()): AuditEvent {
  return {
    id: newAuditEventId(now),
    at: now.toISOString(),
    actor,
    action: "merge.refused",
    target: `${repository}#${prNumber}`,
    details: { prNumber, code: refusal.code, reason: refusal.reason },
  };
}

/**
 * "merge.waiting": automatic mode holds a merge back until something it waits for has happened
 * (the update's previews are still running); sent once per PR head, not on every re-check.
 */
export function mergeWaitingEvent(repository: string, prNumber: number, wait: { code: string; reason: string; headSha: string }, actor: string, now = new Date()): AuditEvent {
  return {
    id: newAuditEventId(now),
    at: now.toISOString(),
    actor,
    action: "merge.waiting",
    target: `${repository}#${prNumber}`,
    details: { prNumber, headSha: wait.headSha, code: wait.code, reason: wait.reason },
  };
}

/** "github.failed": a GitHub call that failed after its retries (code, HTTP status, which call). */
export function gitHubFailedEvent(repository: string, failure: { code: string; status?: number | undefined; route: string; message: string }, now = new Date()): AuditEvent {
  const details: Record<string, unknown> = { code: failure.code, route: failure.route, message: failure.message.slice(0, 500) };
  if (failure.status !== undefined) details.status = failure.status;
  return { id: newAuditEventId(now), at: now.toISOString(), actor: "hub", action: "github.failed", target: repository, details };
}

/** Where a login was refused: the broker's CONNECT, the API's Basic auth, the Node-RED editor's login. */
export type LoginChannel = "mqtt" | "api" | "editor";

/** Attacker-chosen text (user names, topics) is cut before it reaches the audit log. */
function clip(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/**
 * "login.refused": a wrong password, an unknown user, a login while backing off, or a client id
 * that is not this user's. `repeated` is how many more refusals of the same kind (same user, address
 * and channel) were left out of the log since the last such entry.
 */
export function loginRefusedEvent(
  refusal: { channel: LoginChannel; user: string; address: string; reason: string; clientId?: string },
  repeated: number,
  now = new Date(),
): AuditEvent {
  const details: Record<string, unknown> = { channel: refusal.channel, address: refusal.address, reason: clip(refusal.reason, 500), repeated };
  if (refusal.clientId !== undefined) details.clientId = clip(refusal.clientId);
  return { id: newAuditEventId(now), at: now.toISOString(), actor: clip(refusal.user) || "(no user name)", action: "login.refused", target: refusal.channel, details };
}

/** "access.denied": a publish or subscription the ACL refused (topic or filter as the client sent it). */
export function accessDeniedEvent(
  denial: { user: string; clientId: string; action: "publish" | "subscribe"; topic: string; reason: string; address?: string },
  repeated: number,
  now = new Date(),
): AuditEvent {
  const details: Record<string, unknown> = { action: denial.action, clientId: clip(denial.clientId), reason: clip(denial.reason, 500), repeated };
  if (denial.address !== undefined) details.address = denial.address;
  return { id: newAuditEventId(now), at: now.toISOString(), actor: clip(denial.user) || "(no user name)", action: "access.denied", target: clip(denial.topic), details };
}

/** "audit.suppressed": more refusals in one window than the log takes; the rest of the window is left out. */
export function auditSuppressedEvent(windowMs: number, max: number, now = new Date()): AuditEvent {
  return {
    id: newAuditEventId(now),
    at: now.toISOString(),
    actor: "hub",
    action: "audit.suppressed",
    details: { reason: `more than ${max} refused logins and denied requests within ${Math.round(windowMs / 60_000)} minutes; the rest of this window is only logged` },
  };
}
