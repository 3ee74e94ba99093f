/**
 * The one id generator: "<prefix>-<time36>-<12 hex>", unique, roughly time-ordered and topic-safe.
 * Rollouts ("r"), commands ("c") and audit events ("e") all take their ids from here.
 */
import { randomBytes } from "node:crypto";

export function newId(prefix: string, now: Date = new Date()): string {
  return `${prefix}-${now.getTime().toString(36)}-${randomBytes(6).toString("hex")}`;
}
