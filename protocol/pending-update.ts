/**
 * The pending update as its readers use it: the PRs it is made of, in merge order. No zod and no
 * Node (the fleet page's browser module is built from this file too).
 */
import type { PendingPart, PendingUpdate } from "./schemas.js";

/** The PRs of an update in merge order (oldest first): its `parts`, or the update's own PR. */
export function updateParts(update: PendingUpdate): PendingPart[] {
  return update.parts?.length ? update.parts : [update];
}
