/**
 * One story per failed update in the history: when a converge rollout (the fleet's way back after
 * Lockstep's revert) ends, the failed rollout's history entry gets `convergedBy`, so the failure,
 * the rollback, the revert and the convergence read as one entry on the page, in `lockstep history`
 * and on `fleet/history/<failed rollout>`.
 */
import type { ConvergedBy, RolloutHistoryEntry } from "../protocol/schemas.js";

/** What the history store offers (rollout/store.ts). */
export interface HistoryStore {
  historyEntry(rolloutId: string): Promise<RolloutHistoryEntry | undefined>;
  saveHistory(entry: RolloutHistoryEntry): Promise<void>;
}

export function convergedBy(converge: RolloutHistoryEntry): ConvergedBy {
  return {
    rolloutId: converge.rolloutId,
    state: converge.state,
    commit: converge.commit,
    requestedBy: converge.requestedBy,
    finishedAt: converge.finishedAt,
    pullOnly: converge.hosts.filter((h) => h.pullOnly).map((h) => h.host),
  };
}

/**
 * Store the link on the failed rollout's entry; returns that entry to publish, or undefined when
 * `converge` converges nothing or the failed rollout's entry is not in the store.
 */
export async function linkConvergence(store: HistoryStore, converge: RolloutHistoryEntry): Promise<RolloutHistoryEntry | undefined> {
  if (!converge.converges) return undefined;
  const failed = await store.historyEntry(converge.converges);
  if (!failed) return undefined;
  const linked: RolloutHistoryEntry = { ...failed, convergedBy: convergedBy(converge) };
  await store.saveHistory(linked);
  return linked;
}
