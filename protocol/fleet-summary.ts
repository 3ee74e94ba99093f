/**
 * The compact fleet summary the hub keeps retained on `fleet/summary` (hub/fleet-summary.ts): how
 * many hosts, how many online, each compartment's statuses counted, the attention counts and the
 * first hosts needing attention. A new page shows it at once, before the per-host topics of a large
 * fleet have all arrived. A few kilobytes whatever the fleet's size (the host list is capped).
 */
import { z } from "zod";
import { ATTENTION_REASONS, attentionOf, SUMMARY_MAX_LISTED, type AttentionInput, type AttentionReason } from "./attention.js";
import { COMPARTMENTS, STATUSES, type StatusName } from "./enums.js";
import { HOST_ID_PATTERN } from "./topics.js";

export { SUMMARY_MAX_LISTED };

const Count = z.number().int().nonnegative();
const StatusCounts = z.object(Object.fromEntries(STATUSES.map((s) => [s, Count])) as Record<StatusName, typeof Count>);

export const FleetSummary = z.object({
  /** Hosts that published their info (the page's rows). */
  hosts: Count,
  online: Count,
  compartments: z.object(Object.fromEntries(COMPARTMENTS.map((c) => [c, StatusCounts])) as Record<(typeof COMPARTMENTS)[number], typeof StatusCounts>),
  attention: z.object(Object.fromEntries(ATTENTION_REASONS.map((r) => [r, Count])) as Record<AttentionReason, typeof Count>),
  /** Up to SUMMARY_MAX_LISTED hosts needing attention, most pressing reason first, then by name. */
  needsAttention: z.array(z.object({ host: z.string().regex(HOST_ID_PATTERN), why: z.enum(ATTENTION_REASONS) })).max(SUMMARY_MAX_LISTED),
  updatedAt: z.string().datetime({ offset: true }),
});
export type FleetSummary = z.infer<typeof FleetSummary>;

export interface SummaryHost extends AttentionInput {
  host: string;
  /** Hosts without info are not counted (the page shows no row for them either). */
  info?: unknown;
}

export function summarizeFleet(hosts: Iterable<SummaryHost>, now = new Date()): FleetSummary {
  const zero = () => Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<StatusName, number>;
  const compartments = Object.fromEntries(COMPARTMENTS.map((c) => [c, zero()])) as FleetSummary["compartments"];
  const attention = Object.fromEntries(ATTENTION_REASONS.map((r) => [r, 0])) as FleetSummary["attention"];
  const listed: FleetSummary["needsAttention"] = [];
  let total = 0;
  let online = 0;
  for (const h of hosts) {
    if (!h.info) continue;
    total++;
    if (h.availability === "online") online++;
    for (const c of COMPARTMENTS) compartments[c][h.compartments[c]?.status ?? "unknown"]++;
    const why = attentionOf(h);
    if (why) {
      attention[why]++;
      listed.push({ host: h.host, why });
    }
  }
  const rank = (r: AttentionReason) => ATTENTION_REASONS.indexOf(r);
  listed.sort((a, b) => rank(a.why) - rank(b.why) || (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  return { hosts: total, online, compartments, attention, needsAttention: listed.slice(0, SUMMARY_MAX_LISTED), updatedAt: now.toISOString() };
}
