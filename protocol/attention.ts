/**
 * Which hosts need attention and why, one rule for the page, the hub's fleet summary and anyone
 * else. No zod: the fleet page's browser module (protocol/page.ts) bundles it as it is.
 */
import { COMPARTMENTS, worstStatus, type StatusName } from "./enums.js";

/** Reasons, most pressing first: a host is counted once, under the first that applies. */
export const ATTENTION_REASONS = ["failed", "offline", "outdated", "no report"] as const;
export type AttentionReason = (typeof ATTENTION_REASONS)[number];

/** What the rule needs of a host: its availability and each compartment's status (missing = no report). */
export interface AttentionInput {
  availability: string | null | undefined;
  compartments: Partial<Record<(typeof COMPARTMENTS)[number], { status: StatusName } | undefined>>;
}

/** Why a host needs attention (the most pressing reason), or null when it does not. */
export function attentionOf(h: AttentionInput): AttentionReason | null {
  const worst = worstStatus(COMPARTMENTS.map((name) => h.compartments[name]?.status ?? "unknown"));
  if (worst === "failed") return "failed";
  if (h.availability !== "online") return "offline";
  if (worst === "outdated") return "outdated";
  if (worst === "unknown") return "no report";
  return null;
}

/** Hosts needing attention listed by name in the summary; the counts cover all of them. */
export const SUMMARY_MAX_LISTED = 100;
