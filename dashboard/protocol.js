// The part of protocol/ the fleet page needs, as a plain ES module (the browser cannot import TS).
// test/unit/dashboard-protocol.test.ts compares every export with protocol/*.ts so they cannot drift.

export const PROTOCOL_VERSION = "v1";
export const STATUSES = ["ok", "outdated", "failed", "working", "unknown"];
export const COMPARTMENTS = ["agent", "git", "lock", "system", "tests"];
export const COMMAND_OPS = ["refresh", "pull", "switch", "test", "rollback", "stop", "restart", "update-inputs", "hold", "release"];
export const TERMINAL_JOB_STATES = ["rejected", "succeeded", "failed", "interrupted", "cancelled"];
export const ROLLOUT_STATES = ["planned", "running", "soaking", "completed", "failed", "halted", "rolling-back", "rolled-back", "interrupted", "cancelled"];
/** Rollout states after which nothing more happens. */
export const TERMINAL_ROLLOUT_STATES = ["completed", "failed", "halted", "rolled-back", "interrupted", "cancelled"];

const SEVERITY = { failed: 4, working: 3, outdated: 2, unknown: 1, ok: 0 };
/** The most severe of some compartment statuses ("ok" for none), as protocol/compartments.ts worstStatus. */
export const worstStatus = (statuses) => statuses.reduce((w, s) => (SEVERITY[s] > SEVERITY[w] ? s : w), "ok");

const HOST_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/;
export const isValidHostId = (host) => HOST_ID.test(host);
export const isValidId = (id) => ID.test(id);

/** Topic builders and parser for one prefix, the same layout as protocol/topics.ts. */
export function topicsFor(prefix = "lockstep") {
  const root = `${prefix}/${PROTOCOL_VERSION}`;
  const host = (h) => `${root}/hosts/${h}`;
  const t = {
    root,
    availability: (h) => `${host(h)}/availability`,
    info: (h) => `${host(h)}/info`,
    compartment: (h, name) => `${host(h)}/compartments/${name}`,
    commands: (h) => `${host(h)}/commands`,
    job: (h, id) => `${host(h)}/jobs/${id}`,
    jobOutput: (h, id) => `${host(h)}/jobs/${id}/output`,
    expected: () => `${root}/fleet/expected`,
    rollout: (id) => `${root}/fleet/rollouts/${id}`,
    history: (id) => `${root}/fleet/history/${id}`,
    events: () => `${root}/fleet/events`,
    hubAvailability: () => `${root}/hub/availability`,
    allHostState: () => [`${root}/hosts/+/availability`, `${root}/hosts/+/info`, `${root}/hosts/+/compartments/+`],
    allJobs: () => `${root}/hosts/+/jobs/+`,
    allRollouts: () => `${root}/fleet/rollouts/+`,
    allHistory: () => `${root}/fleet/history/+`,
    /** Parse a topic under this prefix into {kind, host?, compartment?, jobId?, rolloutId?} or null. */
    parse(topic) {
      if (!topic.startsWith(root + "/")) return null;
      const parts = topic.slice(root.length + 1).split("/");
      const [a, b, c, d, e] = parts;
      if (a === "hosts" && b && isValidHostId(b)) {
        if (parts.length === 3 && c === "availability") return { kind: "availability", host: b };
        if (parts.length === 3 && c === "info") return { kind: "info", host: b };
        if (parts.length === 3 && c === "commands") return { kind: "commands", host: b };
        if (parts.length === 3 && c === "actions") return { kind: "actions", host: b };
        if (parts.length === 4 && c === "compartments" && COMPARTMENTS.includes(d ?? "")) {
          return { kind: "compartment", host: b, compartment: d };
        }
        if (c === "jobs" && d && ID.test(d)) {
          if (parts.length === 4) return { kind: "job", host: b, jobId: d };
          if (parts.length === 5 && e === "output") return { kind: "jobOutput", host: b, jobId: d };
        }
        return null;
      }
      if (a === "fleet") {
        if (parts.length === 2 && b === "expected") return { kind: "expected" };
        if (parts.length === 2 && b === "events") return { kind: "events" };
        if (parts.length === 3 && b === "rollouts" && c && ID.test(c)) return { kind: "rollout", rolloutId: c };
        if (parts.length === 3 && b === "history" && c && ID.test(c)) return { kind: "history", rolloutId: c };
      }
      if (a === "hub" && b === "availability" && parts.length === 2) return { kind: "hubAvailability" };
      return null;
    },
  };
  return t;
}

// flake.lock diff text, as protocol/flake-lock.ts writes it ("nixpkgs 2025-12-10 → 2025-12-17").
function describeRef(r) {
  if (!r) return "?";
  if (r.follows !== undefined && r.rev === undefined) return `follows ${r.follows}`;
  const rev = r.rev ? r.rev.slice(0, 7) : "";
  return [r.date, rev].filter(Boolean).join(" ") || (r.follows !== undefined ? `follows ${r.follows}` : r.type);
}

export function describeChange(c) {
  if (!c.old) return `${c.input} added (${describeRef(c.new)})`;
  if (!c.new) return `${c.input} removed`;
  const o = c.old, n = c.new;
  if (o.date && n.date && o.date !== n.date) return `${c.input} ${o.date} → ${n.date}`;
  return `${c.input} ${describeRef(o)} → ${describeRef(n)}`;
}

export function formatLockDiff(d, opts = {}) {
  const all = [...(d.updated ?? []), ...(d.added ?? []), ...(d.removed ?? [])];
  if (all.length === 0) return "no input changes";
  const max = opts.max ?? all.length;
  const parts = all.slice(0, max).map(describeChange);
  if (all.length > max) parts.push(`+${all.length - max} more`);
  return parts.join(opts.separator ?? ", ");
}
