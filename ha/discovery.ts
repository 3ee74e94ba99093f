/**
 * Home Assistant MQTT discovery for Lockstep hosts: pure functions, no I/O.
 *
 * One device-based discovery message per host (`homeassistant/device/lockstep_<host>/config`)
 * carries every entity of that host under `cmps`. Keys follow Home Assistant's MQTT docs:
 * the documented abbreviations `dev`, `o`, `cmps` and `p` at the places the docs show them,
 * full option names everywhere else (easier to read, equally valid).
 *
 * The derived JSON states (update entity, problem flag, lock age) are built here as well; the
 * bridge (ha/bridge.ts) publishes them retained on Topics.haUpdate / Topics.haState.
 */
import {
  COMPARTMENTS,
  STATUSES,
  combineLockDiffs,
  fitPreviewSummary,
  formatLockDiff,
  lockAgeDays,
  updateParts,
  worstStatus,
  type Compartment,
  type CompartmentName,
  type FleetExpected,
  type HostInfo,
  type LockDiff,
  type PendingUpdate,
  type PreviewSummary,
  type Status,
  type Topics,
} from "../protocol/index.js";

/** The bare op names Home Assistant buttons / the update entity publish on Topics.actions(host). */
export const HA_ACTIONS = ["pull", "switch", "test", "rollback", "install"] as const;
export type HaAction = (typeof HA_ACTIONS)[number];
export const HA_BUTTON_OPS = ["pull", "switch", "test", "rollback"] as const satisfies readonly HaAction[];

export interface HaOrigin {
  name: string;
  sw_version?: string;
  support_url?: string;
}

export interface HaAvailability {
  topic: string;
  payload_available?: string;
  payload_not_available?: string;
}

/** One entry of `cmps`: the platform (`p`) plus that platform's options. */
export type HaComponent = { p: "sensor" | "binary_sensor" | "button" | "update" } & Record<string, unknown>;

export interface HaDeviceDiscovery {
  dev: {
    ids: string[];
    name: string;
    mf?: string;
    mdl?: string;
    sw?: string;
    sa?: string;
    cu?: string;
  };
  o: HaOrigin;
  cmps: Record<string, HaComponent>;
}

export interface DiscoveryOptions {
  topics: Topics;
  origin: HaOrigin;
  /** The fleet page URL, shown in HA as the device's "visit" link. */
  configurationUrl?: string;
}

const OS_LABEL: Record<HostInfo["os"], string> = {
  nixos: "NixOS",
  darwin: "nix-darwin",
  "home-manager": "Home Manager",
  generic: "Nix host",
};

const COMPARTMENT_LABEL: Record<CompartmentName, { name: string; icon: string }> = {
  agent: { name: "Agent", icon: "mdi:robot" },
  git: { name: "Git", icon: "mdi:source-branch" },
  lock: { name: "Lock", icon: "mdi:lock-clock" },
  system: { name: "System", icon: "mdi:nix" },
  tests: { name: "Tests", icon: "mdi:check-decagram" },
};

const BUTTON_LABEL: Record<(typeof HA_BUTTON_OPS)[number], { name: string; icon: string }> = {
  pull: { name: "Pull", icon: "mdi:source-pull" },
  switch: { name: "Switch", icon: "mdi:swap-horizontal" },
  test: { name: "Test", icon: "mdi:test-tube" },
  rollback: { name: "Roll back", icon: "mdi:undo-variant" },
};

export function haDeviceId(host: string): string {
  return `lockstep_${host}`;
}

/** The device-based discovery payload of one host. */
export function buildHostDiscovery(info: HostInfo, opts: DiscoveryOptions): HaDeviceDiscovery {
  const { topics } = opts;
  const host = info.host;
  const id = haDeviceId(host);
  // Entities go unavailable when either the host's agent or the hub is gone: with the hub down,
  // nobody answers the buttons and the derived states go stale.
  const hostAndHub: HaAvailability[] = [{ topic: topics.availability(host) }, { topic: topics.hubAvailability() }];
  const common = { availability: hostAndHub, availability_mode: "all" };

  const cmps: Record<string, HaComponent> = {};
  for (const name of COMPARTMENTS) {
    const label = COMPARTMENT_LABEL[name];
    cmps[name] = {
      p: "sensor",
      unique_id: `${id}_${name}`,
      name: label.name,
      icon: label.icon,
      device_class: "enum",
      options: [...STATUSES],
      state_topic: topics.compartment(host, name),
      value_template: "{{ value_json.status }}",
      // The whole compartment (summary, detail, checkedAt) becomes the entity's attributes.
      json_attributes_topic: topics.compartment(host, name),
      ...common,
    };
  }
  // Connectivity must stay available while the host is offline, or it could never show "off".
  cmps.online = {
    p: "binary_sensor",
    unique_id: `${id}_online`,
    name: "Online",
    device_class: "connectivity",
    entity_category: "diagnostic",
    state_topic: topics.availability(host),
    payload_on: "online",
    payload_off: "offline",
    availability: [{ topic: topics.hubAvailability() }],
  };
  cmps.problem = {
    p: "binary_sensor",
    unique_id: `${id}_problem`,
    name: "Problem",
    device_class: "problem",
    state_topic: topics.haState(host),
    value_template: "{{ value_json.problem }}",
    payload_on: "ON",
    payload_off: "OFF",
    json_attributes_topic: topics.haState(host),
    json_attributes_template: "{{ {'failed': value_json.failed, 'worst': value_json.worst} | tojson }}",
    ...common,
  };
  cmps.lock_age = {
    p: "sensor",
    unique_id: `${id}_lock_age`,
    name: "Lock age",
    icon: "mdi:calendar-clock",
    device_class: "duration",
    unit_of_measurement: "d",
    state_class: "measurement",
    state_topic: topics.haState(host),
    value_template: "{{ value_json.lock_age_days }}",
    ...common,
  };
  cmps.update = {
    p: "update",
    unique_id: `${id}_update`,
    name: "flake.lock",
    title: "flake.lock",
    state_topic: topics.haUpdate(host),
    command_topic: topics.actions(host),
    payload_install: "install",
    qos: 1,
    ...common,
  };
  for (const op of HA_BUTTON_OPS) {
    // "_button" keeps the test button apart from the tests compartment.
    cmps[`${op}_button`] = {
      p: "button",
      unique_id: `${id}_${op}`,
      name: BUTTON_LABEL[op].name,
      icon: BUTTON_LABEL[op].icon,
      command_topic: topics.actions(host),
      payload_press: op,
      qos: 1,
      ...common,
    };
  }

  const dev: HaDeviceDiscovery["dev"] = {
    ids: [id],
    name: info.hostname || host,
    mf: "Lockstep",
    mdl: OS_LABEL[info.os],
    sw: info.agentVersion,
  };
  if (info.location) dev.sa = info.location;
  if (opts.configurationUrl) dev.cu = opts.configurationUrl;
  return { dev, o: { ...opts.origin }, cmps };
}

// ---------------------------------------------------------------------------------------------
// Derived states

/** JSON on Topics.haUpdate(host), in the update platform's documented state schema. */
export interface HaUpdateState {
  /** Omitted (never null) when unknown: HA validates these as strings. */
  installed_version?: string;
  latest_version?: string;
  title: string;
  release_summary?: string;
  release_url?: string;
  in_progress: boolean;
}

/** A host as the discovery and state builders need it (the fleet view's HostSnapshot has it). */
export interface HaHost {
  info: HostInfo;
  compartments: Partial<Record<CompartmentName, Compartment>>;
}

/** The HA update entity's "release_summary" is limited to 255 characters. */
const RELEASE_SUMMARY_MAX = 255;

function lockLastModified(c: Compartment | undefined): number | undefined {
  const v = c?.detail?.lastModified;
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/** The newest input date a lock diff moves to (unix seconds at that day), for pending updates stored without lockLastModified. */
function newestDate(diff: LockDiff): number | undefined {
  const dates = [...diff.updated, ...diff.added].map((c) => c.new?.date).filter((d): d is string => !!d);
  const day = dates.sort().at(-1);
  const t = day ? Date.parse(`${day}T00:00:00Z`) : NaN;
  return Number.isFinite(t) ? t / 1000 : undefined;
}

/**
 * A flake.lock's version for Home Assistant: the UTC date and time of its newest input, then the
 * lock hash as build metadata: "2026.12.4.1630+e679bb6". Home Assistant compares update versions
 * with AwesomeVersion: this form is PEP 440 there, its four number sections compare as numbers
 * (date, then hour*100+minute, no leading zeros) and the part after "+" is ignored, so "update
 * available" means exactly "newer lock" and a host ahead of the fleet sees no downgrade. (A
 * zero-padded "2026.12.04-e679bb6" is an unknown strategy to AwesomeVersion: HA would then offer
 * any different version, older ones included; a bare hash likewise.) A lock without dated inputs
 * gets its short hash: comparable only for equality.
 */
export function lockVersion(lastModified: number | undefined, hash: string | undefined): string | undefined {
  const short = hash && /^[0-9a-f]+$/i.test(hash) ? hash.slice(0, 7).toLowerCase() : undefined;
  if (lastModified === undefined || !Number.isFinite(lastModified)) return hash ? hash.slice(0, 12) : undefined;
  const d = new Date(lastModified * 1000);
  const version = `${d.getUTCFullYear()}.${d.getUTCMonth() + 1}.${d.getUTCDate()}.${d.getUTCHours() * 100 + d.getUTCMinutes()}`;
  return short ? `${version}+${short}` : version;
}

/** Newest input date of what merging the pending update gives: the newest of its parts. */
function pendingLastModified(pending: PendingUpdate): number | undefined {
  const times = updateParts(pending).map((p) => p.lockLastModified ?? newestDate(p.lockDiff)).filter((t): t is number => t !== undefined);
  return times.length ? Math.max(...times) : undefined;
}

/**
 * Home Assistant's update entity for a host's flake.lock: installed = the host's lock, latest =
 * the pending update's lock, else the fleet head's (versions: lockVersion above). HA offers an
 * update exactly when latest is newer. The release summary of a pending update is its fleet
 * preview summary once any host previewed the PR's current head (what it changes, package by
 * package: "affects 2 of 3 hosts · builds everywhere · hello 2.12 → 2.13"), else its lock diff;
 * the release URL is the PR.
 */
export function buildUpdateState(host: HaHost, expected: FleetExpected | null, preview?: PreviewSummary): HaUpdateState {
  const lastModified = lockLastModified(host.compartments.lock);
  const installedHash = host.info.lockHash;
  const installed = lockVersion(lastModified, installedHash);
  const state: HaUpdateState = {
    title: "flake.lock",
    in_progress: COMPARTMENTS.some((n) => host.compartments[n]?.status === "working"),
  };
  if (installed) state.installed_version = state.latest_version = installed;
  if (!expected) return state;

  const pending = expected.pendingUpdate;
  if (pending) {
    const last = pending.parts?.at(-1) ?? pending;
    const numbers = updateParts(pending).map((p) => `#${p.number}`).join(", ");
    state.latest_version = lockVersion(pendingLastModified(pending), last.lockHash ?? last.headSha) ?? `PR #${pending.number}`;
    const all = combineLockDiffs(updateParts(pending).map((p) => p.lockDiff));
    const prefix = `PR ${numbers}: `;
    const previewed = preview && preview.pr === pending.number && preview.headSha === pending.headSha && (preview.hosts.previewed > 0 || preview.notPreviewed !== undefined);
    state.release_summary = previewed ? prefix + fitPreviewSummary(preview, RELEASE_SUMMARY_MAX - prefix.length) : truncate(prefix + formatLockDiff(all), RELEASE_SUMMARY_MAX);
    state.release_url = pending.url;
    return state;
  }
  if (installedHash && installedHash !== expected.lockHash) {
    const latest = lockVersion(expected.lockLastModified, expected.lockHash);
    if (latest) state.latest_version = latest;
    state.release_summary = truncate(`the fleet head ${expected.headCommit.slice(0, 8)} has another flake.lock`, RELEASE_SUMMARY_MAX);
  }
  return state;
}

/** JSON on Topics.haState(host): values Home Assistant cannot derive from one compartment. */
export interface HaHostState {
  problem: "ON" | "OFF";
  worst: Status;
  failed: CompartmentName[];
  lock_age_days: number | null;
}

export function buildHostState(host: HaHost, now: Date = new Date()): HaHostState {
  const statuses = COMPARTMENTS.map((n) => host.compartments[n]?.status ?? "unknown");
  const failed = COMPARTMENTS.filter((n) => host.compartments[n]?.status === "failed");
  const lastModified = lockLastModified(host.compartments.lock);
  return {
    problem: failed.length > 0 ? "ON" : "OFF",
    worst: worstStatus(statuses),
    failed,
    lock_age_days: lastModified !== undefined ? Math.max(0, lockAgeDays(lastModified, now)) : null,
  };
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : text.slice(0, max - 1) + "…";
}

/** Narrow an MQTT payload on Topics.actions(host) to a known action, or null. */
export function parseHaAction(payload: string): HaAction | null {
  const op = payload.trim();
  return (HA_ACTIONS as readonly string[]).includes(op) ? (op as HaAction) : null;
}
