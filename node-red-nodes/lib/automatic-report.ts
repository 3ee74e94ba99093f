/**
 * How automatic mode tells what its gate decided about an update: the retained fleet/automatic
 * state (the page shows it on the pending update) on every decision, and one audit event per PR
 * head and decision (merge.refused with the reason, merge.waiting), not one per re-check.
 */
import { mergeRefusedEvent, mergeWaitingEvent } from "../../protocol/audit.js";
import type { AutomaticDecision, AutomaticState } from "../../protocol/automatic.js";
import type { AuditEvent } from "../../protocol/schemas.js";

/** The fleet view's calls this needs (rollout/fleet-view.ts). */
export interface AutomaticPublisher {
  publishAutomatic(state: AutomaticState): Promise<void>;
  publishAudit(event: AuditEvent): Promise<void>;
  expected(): { repo: string } | undefined;
}

export interface GateOutcome {
  pr: number;
  headSha: string;
  step: string;
  decision: AutomaticDecision;
  reason: string;
  /** The guard's name for the audit event ("preview-refused", "preview-pending"). */
  code?: string;
  /** Who asked (msg.requestedBy, e.g. "weekly flow"). */
  actor: string;
}

export class AutomaticReporter {
  /** "<pr>:<head>:<step>": the decision last audited for that head and step. */
  private readonly audited = new Map<string, AutomaticDecision>();

  constructor(private readonly fleet: AutomaticPublisher) {}

  async report(o: GateOutcome, now = new Date()): Promise<void> {
    await this.fleet.publishAutomatic({ pr: o.pr, headSha: o.headSha, step: o.step, decision: o.decision, reason: o.reason, at: now.toISOString() });
    const key = `${o.pr}:${o.headSha}:${o.step}`;
    if (o.decision === "passed" || this.audited.get(key) === o.decision) return;
    this.audited.set(key, o.decision);
    if (this.audited.size > 100) this.audited.delete(this.audited.keys().next().value!);
    const repository = this.fleet.expected()?.repo ?? "unknown repository";
    const code = o.code ?? o.step;
    const event =
      o.decision === "refused"
        ? mergeRefusedEvent(repository, o.pr, { code, reason: o.reason }, o.actor, now)
        : mergeWaitingEvent(repository, o.pr, { code, reason: o.reason, headSha: o.headSha }, o.actor, now);
    await this.fleet.publishAudit(event);
  }
}
