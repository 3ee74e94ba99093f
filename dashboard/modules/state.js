// The page's state: what MQTT told us about hosts, the fleet, rollouts and activity, and the
// small host-model helpers every view uses.
import { COMPARTMENTS, worstStatus } from "../generated/protocol.js";

export const COMPARTMENT_LABEL = { agent: "Agent", git: "Git", lock: "Lock", system: "System", tests: "Tests" };
export const OS_LABEL = { nixos: "NixOS", darwin: "macOS", "home-manager": "Home Manager", generic: "Nix" };

/** Shown in a compartment cell where its word does not fit: never colour alone. */
export const STATUS_ICON = { ok: "✓", outdated: "↑", failed: "✕", working: "⟳", unknown: "?" };

export const COMMAND_TTL_MS = 15 * 60_000;
export const MAX_OUTPUT_LINES = 2000;
export const SESSION_KEY = "lockstep.session";
export const MAX_ACTIVITY = 100;

export const app = {
  config: null,
  topics: null,
  client: null,
  user: null,
  password: null,
  role: "viewer",
  hosts: new Map(),
  expected: null,
  rollouts: new Map(),
  history: new Map(),
  /** Previews of pending PRs: PR number → host → HostPreview (fleet/previews/<pr>/<host>). */
  previews: new Map(),
  /** PR number → PreviewSummary (fleet/preview-summaries/<pr>). */
  previewSummaries: new Map(),
  /** Hosts whose preview row the user opened (kept open across re-renders). */
  openPreviews: new Set(),
  /** Audit events by id (GET /api/audit, then fleet/events live), at most MAX_ACTIVITY after a render. */
  activity: new Map(),
  hubOnline: null,
  /** Automatic mode's last decision about the pending update (retained fleet/automatic), null until seen. */
  automatic: null,
  /** Automatic mode paused after a failed rollout (retained fleet/automatic-pause), null until seen. */
  automaticPause: null,
  /** Retained hub/storage (protocol/storage.ts): can the hub write its data dir. */
  storage: null,
  /** The hub's retained hub/status (GitHub configured? the MQTT port agents use), null until seen. */
  hubStatus: null,
  /** The hub's retained fleet/summary (counts, hosts needing attention): the first paint of a large fleet. */
  summary: null,
  /** The fleet stream's first snapshot is in: the page holds every host (first-paint.js stops). */
  fleetLoaded: false,
  openHost: null,
  followRolloutId: null,
  filter: "",
  problemsOnly: false,
  invalidPayloads: 0,
};

// Exposed for the browser tests and the benchmark (read-only numbers, no credentials).
// rows: hosts in the table (filtered or not); rendered: row elements in the DOM (only those on screen).
// hostStates: host states applied from the fleet stream; fleetLoaded: its first snapshot is in.
export const stats = { hostStates: 0, fleetLoaded: false, renders: 0, lastRenderMs: 0, maxRenderMs: 0, totalRenderMs: 0, messages: 0, handleMs: 0, invalid: 0, rows: 0, rendered: 0 };
window.lockstepStats = stats;

export function hostRecord(id) {
  let h = app.hosts.get(id);
  if (!h) {
    h = { id, info: null, availability: null, compartments: {}, jobs: new Map(), output: new Map(), lastSeen: 0, row: null, detail: null, pendingCommand: null };
    app.hosts.set(id, h);
  }
  return h;
}

export function touch(h, iso) {
  const t = Date.parse(iso ?? "");
  if (Number.isFinite(t) && t > h.lastSeen) h.lastSeen = t;
}

export function worstOf(h) {
  return worstStatus(COMPARTMENTS.map((name) => h.compartments[name]?.status ?? "unknown"));
}

export function runningJob(h) {
  let latest = null;
  for (const j of h.jobs.values()) if (!latest || j.acceptedAt > latest.acceptedAt) latest = j;
  return latest;
}

/** Host states in a rollout whose reason says what went wrong. */
const FAILED_IN_ROLLOUT = ["failed", "rolled-back", "rolling-back", "interrupted"];

/**
 * The host's newest rollout outcome if it went wrong: { rolloutId, state, reason }, else null
 * (a later rollout that succeeded on the host clears an older failure).
 */
export function rolloutFailure(h) {
  const seen = [];
  for (const r of app.rollouts.values()) {
    const hs = r.hosts?.[h.id];
    if (hs) seen.push({ at: String(r.updatedAt ?? ""), rolloutId: r.id, state: hs.state, reason: hs.reason });
  }
  for (const e of app.history.values()) {
    const hs = e.hosts.find((x) => x?.host === h.id);
    if (hs && !app.rollouts.has(e.rolloutId)) seen.push({ at: String(e.finishedAt ?? ""), rolloutId: e.rolloutId, state: hs.state, reason: hs.reason });
  }
  const newest = seen.sort((a, b) => b.at.localeCompare(a.at))[0];
  return newest && FAILED_IN_ROLLOUT.includes(newest.state) && typeof newest.reason === "string" ? newest : null;
}

/** The last `n` non-empty lines of a reason (build errors end with what matters). */
export function lastLines(text, n = 3) {
  const lines = String(text).split("\n").map((l) => l.trim()).filter(Boolean);
  return (lines.length > n ? ["…", ...lines.slice(-n)] : lines).join("\n");
}

/** One line saying why a failed host is red: its rollout's reason, else its first failed compartment. */
export function hostProblem(h) {
  if (worstOf(h) !== "failed") return "";
  const r = rolloutFailure(h);
  // The last line of the reason, without Nix's "> " build-log prefix.
  if (r) return `${r.state === "rolled-back" ? "rolled back" : r.state}: ${lastLines(r.reason, 1).replace(/^…\n/, "").replace(/^>\s*/, "")}`;
  const name = COMPARTMENTS.find((c) => h.compartments[c]?.status === "failed");
  return name ? `${COMPARTMENT_LABEL[name]}: ${h.compartments[name].summary}` : "";
}
