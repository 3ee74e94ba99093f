/**
 * `lockstep history`: the update history from the retained fleet/history/<rollout> entries, newest
 * first, each failed update told once with its revert and the rollout that converged the fleet
 * onto it (the converge rollout is not listed on its own when its failed rollout is).
 */
import { decodeJson, RolloutHistoryEntry, type ConvergedBy } from "../../protocol/index.js";
import { convergedBy } from "../../rollout/history-story.js";
import { ExitCode } from "./errors.js";
import { connectionHelp } from "./fleet-commands.js";
import { JSON_OPTION, withSession } from "./run.js";
import type { Subcommand } from "../../broker/commands.js";

/** One entry of the update history as people read it. */
export interface UpdateStory {
  entry: RolloutHistoryEntry;
  /** The convergence after the entry's revert: the converge rollout's own entry when known, else what the failed entry recorded. */
  convergence?: ConvergedBy;
}

/** Entries newest first; a converge rollout whose failed rollout is listed becomes that entry's convergence. */
export function updateStories(entries: readonly RolloutHistoryEntry[]): UpdateStory[] {
  const byId = new Map(entries.map((e) => [e.rolloutId, e]));
  const convergenceOf = new Map<string, ConvergedBy>();
  for (const e of entries) {
    if (!e.converges || !byId.has(e.converges)) continue;
    convergenceOf.set(e.converges, convergedBy(e));
  }
  return entries
    .filter((e) => !(e.converges && byId.has(e.converges)))
    .sort((a, b) => b.finishedAt.localeCompare(a.finishedAt))
    .map((entry) => {
      const convergence = convergenceOf.get(entry.rolloutId) ?? entry.convergedBy;
      return convergence ? { entry, convergence } : { entry };
    });
}

function count(entry: RolloutHistoryEntry, ...states: string[]): number {
  return entry.hosts.filter((h) => states.includes(h.state)).length;
}

/** Two or three lines per story: what happened, then the revert and the convergence. */
export function historyText(stories: readonly UpdateStory[]): string {
  if (stories.length === 0) return "no update history on the broker\n";
  const lines: string[] = [];
  for (const { entry: e, convergence: c } of stories) {
    const what = e.prNumber !== undefined ? `PR #${e.prNumber}` : e.converges ? `converges ${e.converges}` : "no PR";
    const hosts = `${count(e, "succeeded")} ok, ${count(e, "failed")} failed, ${count(e, "rolled-back")} rolled back, ${count(e, "skipped")} skipped`;
    lines.push(`${e.finishedAt}  ${e.rolloutId}  ${e.state}  ${what}  commit ${e.commit.slice(0, 8)}  by ${e.requestedBy}  (${hosts})`);
    if (e.revertPr) lines.push(`  reverted: ${e.revertPr.number > 0 ? `PR #${e.revertPr.number} ${e.revertPr.url}` : `commit ${(e.revertPr.commit ?? "").slice(0, 8)}`}`);
    if (c) {
      const only = c.pullOnly.length ? `; pulled only: ${c.pullOnly.join(", ")}` : "";
      lines.push(`  converged: rollout ${c.rolloutId} ${c.state} onto ${c.commit.slice(0, 8)} (merged by ${c.requestedBy}, ${c.finishedAt})${only}`);
    }
  }
  return lines.join("\n") + "\n";
}

export const historyCommand: Subcommand = {
  name: "history",
  summary: "the update history, newest first: a failed update with its revert and convergence as one entry",
  usage: connectionHelp("lockstep history [--json]"),
  options: { ...JSON_OPTION },
  run: (ctx) =>
    withSession(ctx, async (t) => {
      const topics = t.session.topics;
      const entries = await t.session.retainedAll(topics.allHistory(), (topic) => topics.parse(topic)?.kind === "history", (p) => decodeJson(RolloutHistoryEntry, p));
      const stories = updateStories([...entries.values()]);
      if (t.json) t.printJson({ history: stories });
      else t.print(historyText(stories));
      return ExitCode.ok;
    }),
};
