/**
 * What the terminal commands print: plain tables, status words in colour when stdout is a terminal.
 * Pure functions of protocol values, so tests compare their text directly.
 */
import { styleText } from "node:util";
import {
  COMPARTMENTS,
  formatLockDiff,
  PREVIEW_OUTCOME_LABEL,
  previewProgress,
  previewRow,
  type AuditEvent,
  type FleetExpected,
  type HostPreview,
  type JobState,
  type PreviewSummary,
  type RolloutProgress,
} from "../../protocol/index.js";
import type { StatusName } from "../../protocol/enums.js";
import type { HostSnapshot } from "../../rollout/fleet-port.js";

const COLOURS: Record<StatusName, Parameters<typeof styleText>[0]> = { ok: "green", outdated: "yellow", failed: "red", working: "cyan", unknown: "gray" };

export function table(header: string[], rows: string[][], colour?: (cell: string, column: number) => string): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[], paint: boolean) =>
    cells
      .map((c, i) => {
        const padded = i === cells.length - 1 ? c : c.padEnd(widths[i]!);
        return paint && colour ? colour(padded, i) : padded;
      })
      .join("  ")
      .trimEnd();
  return [line(header, false), ...rows.map((r) => line(r, true))].join("\n") + "\n";
}

/** The row of one host: every compartment's status word, online (and held), generation, last rollout. */
export interface StatusRow {
  host: string;
  online: boolean;
  /** Held by an operator (`lockstep host HOST hold`): rollouts leave it alone until it is released. */
  held?: { reason?: string };
  compartments: Record<string, StatusName | "-">;
  generation?: number;
  lastRollout?: { id: string; state: string; hostState?: string };
}

export function statusRows(hosts: HostSnapshot[], rollouts: RolloutProgress[]): StatusRow[] {
  return [...hosts]
    .sort((a, b) => a.host.localeCompare(b.host))
    .map((h) => {
      const last = rollouts.find((r) => r.hosts[h.host] !== undefined);
      const generation = h.info?.generation ?? h.compartments.system?.generation;
      return {
        host: h.host,
        online: h.availability === "online",
        ...(h.info?.hold ? { held: h.info.holdReason !== undefined ? { reason: h.info.holdReason } : {} } : {}),
        compartments: Object.fromEntries(COMPARTMENTS.map((c) => [c, h.compartments[c]?.status ?? "-"])),
        ...(generation !== undefined ? { generation } : {}),
        ...(last ? { lastRollout: { id: last.id, state: last.state, ...(last.hosts[h.host] ? { hostState: last.hosts[h.host]!.state } : {}) } } : {}),
      };
    });
}

/** Red: a host with a failed compartment (exit code 1 for `lockstep status`). */
export const rowIsRed = (row: StatusRow) => Object.values(row.compartments).includes("failed");

export function statusTable(rows: StatusRow[], colour: boolean): string {
  if (rows.length === 0) return "no hosts have reported yet\n";
  const header = ["HOST", ...COMPARTMENTS.map((c) => c.toUpperCase()), "ONLINE", "GEN", "LAST ROLLOUT"];
  const body = rows.map((r) => [
    r.host,
    ...COMPARTMENTS.map((c) => r.compartments[c] ?? "-"),
    (r.online ? "online" : "offline") + (r.held ? " (held)" : ""),
    r.generation !== undefined ? String(r.generation) : "-",
    r.lastRollout ? `${r.lastRollout.id} ${r.lastRollout.hostState ?? r.lastRollout.state}` : "-",
  ]);
  return table(header, body, colour ? paintStatus : undefined);
}

function paintStatus(cell: string, column: number): string {
  const word = cell.trim() as StatusName;
  if (column >= 1 && column <= COMPARTMENTS.length && word in COLOURS) return styleText(COLOURS[word], cell);
  if (column === COMPARTMENTS.length + 1) return styleText(word.startsWith("offline") ? "red" : word.endsWith("(held)") ? "yellow" : "green", cell);
  return cell;
}

export function rolloutsTable(rollouts: RolloutProgress[]): string {
  if (rollouts.length === 0) return "no rollouts on the broker\n";
  return table(
    ["ROLLOUT", "STATE", "COMMIT", "PR", "HOSTS", "OK", "FAILED", "SKIPPED", "BY", "CREATED"],
    rollouts.map((r) => [r.id, r.state, r.commit.slice(0, 8), r.prNumber !== undefined ? `#${r.prNumber}` : "-", String(r.counts.total), String(r.counts.succeeded), String(r.counts.failed), String(r.counts.skipped), r.requestedBy, r.createdAt]),
  );
}

export function rolloutDetail(r: RolloutProgress): string {
  const head = [
    `rollout ${r.id}: ${r.state} (${r.summary})`,
    `commit ${r.commit}${r.prNumber !== undefined ? ` from PR #${r.prNumber}` : ""}, requested by ${r.requestedBy}`,
    `hosts ${r.counts.total}: ${r.counts.succeeded} succeeded, ${r.counts.failed} failed, ${r.counts.skipped} skipped${r.currentPhase ? `; phase ${r.currentPhase}` : ""}`,
    ...(r.lockDiff ? [`lock: ${formatLockDiff(r.lockDiff, { max: 10 })}`] : []),
    ...(r.revertPr ? [`reverted by PR #${r.revertPr.number} ${r.revertPr.url}`] : []),
    "",
  ].join("\n");
  const rows = r.phases.flatMap((p) =>
    p.hosts.map((h) => {
      const s = r.hosts[h];
      const gens = s?.generationBefore !== undefined ? `${s.generationBefore}→${s.generationAfter ?? "?"}` : "-";
      return [h, p.name, s?.state ?? "pending", gens, s?.reason ?? ""];
    }),
  );
  return head + table(["HOST", "PHASE", "STATE", "GEN", "REASON"], rows);
}

export function auditTable(events: AuditEvent[]): string {
  if (events.length === 0) return "no audit events\n";
  return table(["AT", "ACTOR", "ACTION", "TARGET", "DETAILS"], events.map((e) => [e.at, e.actor, e.action, e.target ?? "-", e.details ? JSON.stringify(e.details).slice(0, 100) : ""]));
}

/** The preview of the pending PR's head: its summary and one line per host (what changes, whether it builds, reboot, size). */
export function previewText(preview: { summary: PreviewSummary; hosts: HostPreview[] }): string {
  const progress = previewProgress(preview.summary);
  const state = progress.notPreviewed ? "not previewed" : progress.complete ? "done" : `${progress.done} of ${progress.requested} hosts so far`;
  const rows = preview.hosts.map((h) => previewRow(h)).map((r) => [
    r.builtElsewhere ? `${r.host} (${r.builtElsewhere})` : r.host,
    PREVIEW_OUTCOME_LABEL[r.outcome],
    r.outcome === "affected" ? r.builds : "-",
    r.outcome === "affected" ? r.reboot : "-",
    r.size || "-",
    r.reason ? r.reason.split("\n").at(-1)! : r.packages.join(", ") || "-",
  ]);
  const lines = table(["HOST", "PREVIEW", "BUILDS", "REBOOT", "SIZE", "CHANGES"], rows).trimEnd().split("\n").map((l) => `    ${l}`);
  return [`  preview (${state}): ${preview.summary.text}`, ...(rows.length ? lines : [])].join("\n");
}

export function pendingUpdateText(expected: FleetExpected | undefined, preview?: { summary: PreviewSummary; hosts: HostPreview[] }): string {
  if (!expected) return "the hub has not published fleet/expected yet (no repository configured, or not checked yet)\n";
  const head = `fleet: ${expected.repo} ${expected.branch} at ${expected.headCommit.slice(0, 8)}\n`;
  const p = expected.pendingUpdate;
  if (!p) return head + "no pending lock update\n";
  return [
    head.trimEnd(),
    `pending: PR #${p.number} ${p.title}`,
    `  ${p.url}`,
    `  head ${p.headSha.slice(0, 8)} on ${p.headBranch}, opened ${p.openedAt}`,
    `  CI: ${p.ci.state}${p.ci.summary ? ` (${p.ci.summary})` : ""}; mergeable: ${p.mergeable === null || p.mergeable === undefined ? "unknown" : p.mergeable ? "yes" : "no"}`,
    `  lock: ${formatLockDiff(p.lockDiff, { separator: "\n        " })}`,
    preview ? previewText(preview) : "  preview: none for this head yet (the fleet has not reported, or previews are off)",
    "",
  ].join("\n");
}

export function jobLine(j: JobState): string {
  return `${j.id}  ${j.op}  ${j.state}  ${j.summary}${j.error ? ` (${j.error})` : ""}`;
}
