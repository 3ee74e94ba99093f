/**
 * The one id generator: "<prefix>-<time36>-<12 hex>", unique, roughly time-ordered and topic-safe.
 * Rollouts ("r"), commands ("c") and audit events ("e") all take their ids from here.
 */
import { randomUUID } from "node:crypto";

export function newId(prefix: string, now: Date = new Date()): string {
  // 12 random hex digits from a v4 UUID (its first 12 are all random). randomUUID takes them from
  // a cached pool of random bytes; randomBytes(6) fills a new buffer per call, about 5x slower,
  // and a rollout makes thousands of ids (a command and several audit events per step).
  const uuid = randomUUID();
  return `${prefix}-${now.getTime().toString(36)}-${uuid.slice(0, 8)}${uuid.slice(9, 13)}`;
}
