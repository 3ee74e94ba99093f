// The page's state: what MQTT told us about hosts, the fleet, rollouts and activity, and the
// small host-model helpers every view uses.
import { COMPARTMENTS, worstStatus } from "../generated/protocol.js";

export const COMPARTMENT_LABEL = { agent: "Agent", git: "Git", lock: "Lock", system: "System", tests: "Tests" };
export const OS_LABEL = { nixos: "NixOS", darwin: "macOS", "home-manager": "Home Manager", generic: "Nix" };

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
  /** Audit events by id (GET /api/audit, then fleet/events live), at most MAX_ACTIVITY after a render. */
  activity: new Map(),
  hubOnline: null,
  openHost: null,
  followRolloutId: null,
  filter: "",
  problemsOnly: false,
  invalidPayloads: 0,
};

// Exposed for the browser tests and the benchmark (read-only numbers, no credentials).
export const stats = { renders: 0, lastRenderMs: 0, maxRenderMs: 0, totalRenderMs: 0, messages: 0, handleMs: 0, invalid: 0, rows: 0 };
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
