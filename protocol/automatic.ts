/**
 * What automatic mode (the weekly flow) last decided about the pending update and why, retained on
 * `fleet/automatic` so the page (and anyone else) can say "automatic mode will not merge PR #12:
 * gamma does not build" without reading the audit log. A decision is about one PR head: readers
 * show it only while that head is still the pending update's.
 */
import { z } from "zod";
import { CommitSha } from "./schemas.js";

export const AUTOMATIC_DECISIONS = ["waiting", "refused", "passed"] as const;
export const AutomaticDecision = z.enum(AUTOMATIC_DECISIONS);
export type AutomaticDecision = z.infer<typeof AutomaticDecision>;

export const AutomaticState = z.object({
  pr: z.number().int().positive(),
  headSha: CommitSha,
  /** The gate step that decided ("preview": the update's previews). */
  step: z.string().min(1).max(50),
  decision: AutomaticDecision,
  reason: z.string().max(2000),
  at: z.string().datetime({ offset: true }),
});
export type AutomaticState = z.infer<typeof AutomaticState>;

/**
 * Retained on `fleet/automatic-pause` by the hub: automatic mode pauses after a failed rollout (no
 * further automatic merge) until an operator resumes it, or a later PR's preview builds on every host.
 */
export const AutomaticPauseState = z.object({
  paused: z.boolean(),
  /** While paused: since when, and the failed rollout and update PR that paused it. */
  pausedAt: z.string().datetime({ offset: true }).optional(),
  rolloutId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/).optional(),
  prNumber: z.number().int().positive().optional(),
  reason: z.string().max(2000).optional(),
  /** How the last pause ended: when, and by whom or what. */
  resumedAt: z.string().datetime({ offset: true }).optional(),
  resumedBy: z.string().max(200).optional(),
  updatedAt: z.string().datetime({ offset: true }),
});
export type AutomaticPauseState = z.infer<typeof AutomaticPauseState>;
