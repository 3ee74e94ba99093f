/**
 * What an operator (Home Assistant's fleet device) may ask of the hub itself on Topics.hubActions(user):
 * a bare word, because a Home Assistant button can only publish a fixed payload.
 *
 *   resume-automatic   automatic mode merges again after a failed rollout paused it
 */
import { z } from "zod";

export const HUB_ACTIONS = ["resume-automatic"] as const;
export const HubAction = z.enum(HUB_ACTIONS);
export type HubAction = z.infer<typeof HubAction>;

/** Longer payloads are not looked at (a bare word is a few bytes). */
const MAX_HUB_ACTION_BYTES = 64;

/** The hub action a payload names (surrounding whitespace ignored), or null. */
export function parseHubAction(payload: Buffer | string): HubAction | null {
  const bytes = typeof payload === "string" ? Buffer.byteLength(payload) : payload.length;
  if (bytes > MAX_HUB_ACTION_BYTES) return null;
  const r = HubAction.safeParse((typeof payload === "string" ? payload : payload.toString("utf8")).trim());
  return r.success ? r.data : null;
}
