/**
 * Refused logins and denied publishes/subscribes go to the audit log, rate-limited so that a flood
 * cannot flood the log: each kind of refusal (same channel, user, address / topic, reason) is
 * written once per window, the next entry saying how many were left out (`repeated`), and at most
 * `maxPerWindow` refusal entries are written per window in all (then one "audit.suppressed").
 * Everything is still logged by the component that refused.
 */
import { accessDeniedEvent, auditSuppressedEvent, loginRefusedEvent, type LoginChannel } from "../protocol/audit.js";
import type { AuditEvent } from "../protocol/schemas.js";

export interface RefusalAuditOptions {
  /** Default 10 minutes. */
  windowMs?: number;
  /** Refusal entries per window, all kinds together (default 100). */
  maxPerWindow?: number;
  /** Kinds remembered (default 10,000; the oldest are forgotten first). */
  maxKinds?: number;
  now?: () => number;
}

export interface LoginRefusal {
  channel: LoginChannel;
  user: string;
  address: string;
  reason: string;
  clientId?: string;
}

export interface AccessDenial {
  user: string;
  clientId: string;
  action: "publish" | "subscribe";
  topic: string;
  reason: string;
  address?: string;
}

export class RefusalAudit {
  private readonly windowMs: number;
  private readonly maxPerWindow: number;
  private readonly maxKinds: number;
  private readonly now: () => number;
  /** Per kind: when it was last written and how many were left out since. */
  private readonly kinds = new Map<string, { writtenAt: number; leftOut: number }>();
  private windowStart = -Infinity;
  private writtenInWindow = 0;

  constructor(
    private readonly write: (event: AuditEvent) => void,
    opts: RefusalAuditOptions = {},
  ) {
    this.windowMs = opts.windowMs ?? 10 * 60_000;
    this.maxPerWindow = opts.maxPerWindow ?? 100;
    this.maxKinds = opts.maxKinds ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  loginRefused(r: LoginRefusal): void {
    this.note(["login", r.channel, r.user, r.address, r.reason].join("\u0000"), (repeated, at) => loginRefusedEvent(r, repeated, at));
  }

  accessDenied(d: AccessDenial): void {
    this.note(["access", d.user, d.action, d.topic, d.reason].join("\u0000"), (repeated, at) => accessDeniedEvent(d, repeated, at));
  }

  private note(kind: string, build: (repeated: number, at: Date) => AuditEvent): void {
    const now = this.now();
    const last = this.kinds.get(kind);
    if (last && now - last.writtenAt < this.windowMs) {
      last.leftOut++;
      return;
    }
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.writtenInWindow = 0;
    }
    if (this.writtenInWindow >= this.maxPerWindow) {
      if (last) last.leftOut++;
      return;
    }
    this.writtenInWindow++;
    this.kinds.delete(kind); // re-inserted last: the oldest kinds are forgotten first
    this.kinds.set(kind, { writtenAt: now, leftOut: 0 });
    while (this.kinds.size > this.maxKinds) this.kinds.delete(this.kinds.keys().next().value as string);
    this.write(build(last?.leftOut ?? 0, new Date(now)));
    if (this.writtenInWindow === this.maxPerWindow) this.write(auditSuppressedEvent(this.windowMs, this.maxPerWindow, new Date(now)));
  }
}
