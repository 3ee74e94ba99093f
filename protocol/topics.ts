/**
 * Every MQTT topic Lockstep uses, built and parsed in one place.
 * Nothing else in the code base writes a topic string by hand.
 */
import { COMPARTMENTS } from "./enums.js";
import type { CompartmentName } from "./schemas.js";

export const DEFAULT_PREFIX = "lockstep";
export const PROTOCOL_VERSION = "v1";
export const DEFAULT_HA_PREFIX = "homeassistant";
/** The broker user Home Assistant connects as by default (its fleet buttons publish on hubActions(user)). */
export const DEFAULT_HA_USER = "home-assistant";

/** Host ids end up in topics and Home Assistant object ids: keep them to a safe alphabet. */
export const HOST_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** Job, rollout and command ids: URL/topic safe. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/;

/**
 * A broker user name in a topic (hubActions): the credential store's user-name alphabet, which has
 * no MQTT wildcard or level separator.
 */
export const USER_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/**
 * Home Assistant's node and device id of the fleet-level device. A dash, where every host's device
 * has an underscore (`lockstep_<host>`), so no host id can ever name the same device.
 */
export const HA_FLEET_NODE_ID = "lockstep-fleet";

/** A pull request number in a topic: positive, no leading zero, so every PR has exactly one topic. */
const PR_NUMBER = /^[1-9][0-9]{0,9}$/;

export function isValidHostId(host: string): boolean {
  return HOST_ID_PATTERN.test(host);
}


export type ParsedTopic =
  | { kind: "availability"; host: string }
  | { kind: "info"; host: string }
  | { kind: "compartment"; host: string; compartment: CompartmentName }
  | { kind: "commands"; host: string }
  | { kind: "actions"; host: string }
  | { kind: "job"; host: string; jobId: string }
  | { kind: "jobOutput"; host: string; jobId: string }
  | { kind: "expected" }
  | { kind: "rollout"; rolloutId: string }
  | { kind: "events" }
  | { kind: "hubAvailability" }
  | { kind: "hubStatus" }
  | { kind: "hubStorage" }
  | { kind: "hubActions"; user: string }
  | { kind: "history"; rolloutId: string }
  | { kind: "preview"; pr: number; host: string }
  | { kind: "hostPreview"; builtOn: string; pr: number; host: string }
  | { kind: "previewSummary"; pr: number }
  | { kind: "automatic" }
  | { kind: "fleetSummary" }
  | { kind: "automaticPause" };

export class Topics {
  /** The single-level wildcard, for use as a host id in the builders to get a filter over all hosts. */
  static readonly ANY_HOST = "+";
  readonly root: string;

  constructor(
    readonly prefix: string = DEFAULT_PREFIX,
    readonly haPrefix: string = DEFAULT_HA_PREFIX,
  ) {
    if (!/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(prefix)) {
      throw new Error(`invalid topic prefix "${prefix}": use letters, digits, "-", "_" and "/" only`);
    }
    this.root = `${prefix}/${PROTOCOL_VERSION}`;
  }

  host(host: string): string {
    return `${this.root}/hosts/${host}`;
  }
  availability(host: string): string {
    return `${this.host(host)}/availability`;
  }
  info(host: string): string {
    return `${this.host(host)}/info`;
  }
  compartment(host: string, name: CompartmentName): string {
    return `${this.host(host)}/compartments/${name}`;
  }
  commands(host: string): string {
    return `${this.host(host)}/commands`;
  }
  job(host: string, jobId: string): string {
    return `${this.host(host)}/jobs/${jobId}`;
  }
  jobOutput(host: string, jobId: string): string {
    return `${this.host(host)}/jobs/${jobId}/output`;
  }
  /** Retained: what the fleet should look like (head commit, lock hash, pending PR). */
  expected(): string {
    return `${this.root}/fleet/expected`;
  }
  rollout(rolloutId: string): string {
    return `${this.root}/fleet/rollouts/${rolloutId}`;
  }
  /** Retained per rollout: the update history entry (what was deployed where, with the lock diff). */
  history(rolloutId: string): string {
    return `${this.root}/fleet/history/${rolloutId}`;
  }
  events(): string {
    return `${this.root}/fleet/events`;
  }
  /** Retained per open PR and host: what merging the PR would change there (protocol/preview.ts). */
  preview(pr: number, host: string): string {
    return `${this.root}/fleet/previews/${pr}/${host}`;
  }
  /**
   * Retained: a preview as the agent that evaluated it (`builtOn`) publishes it, for itself or, on a
   * builder, for another host. The hub validates it and republishes it on preview(pr, host).
   */
  hostPreview(builtOn: string, pr: number, host: string): string {
    return `${this.host(builtOn)}/previews/${pr}/${host}`;
  }
  allHostPreviews(): string {
    return `${this.root}/hosts/+/previews/+/+`;
  }
  /** Retained per open PR: the fleet summary of its previews. */
  previewSummary(pr: number): string {
    return `${this.root}/fleet/preview-summaries/${pr}`;
  }
  /** Retained: automatic mode's last decision about the pending update (protocol/automatic.ts). */
  automatic(): string {
    return `${this.root}/fleet/automatic`;
  }
  /** Retained `AutomaticPauseState`: automatic mode paused after a failed rollout (and why), or running. */
  automaticPause(): string {
    return `${this.root}/fleet/automatic-pause`;
  }
  /** Retained `FleetSummary` (protocol/fleet-summary.ts): counts and hosts needing attention, for a fast first paint. */
  fleetSummary(): string {
    return `${this.root}/fleet/summary`;
  }
  /** Retained `online`/`offline` of the hub itself (its last will). */
  hubAvailability(): string {
    return `${this.root}/hub/availability`;
  }
  /** Retained `HubStatus`: what the hub was started with (is GitHub configured, where agents connect). */
  hubStatus(): string {
    return `${this.root}/hub/status`;
  }
  /** Retained `StorageHealthState` (protocol/storage.ts): can the hub write its data dir. */
  hubStorage(): string {
    return `${this.root}/hub/storage`;
  }
  /**
   * Non-retained requests from simple clients (Home Assistant buttons) that cannot build a full
   * Command: payload is a bare op name ("pull", "switch", "test", "rollback", "install").
   * The hub validates it and turns it into a Command with id, expiry and exact commit.
   */
  actions(host: string): string {
    return `${this.host(host)}/actions`;
  }
  /**
   * Non-retained requests to the hub itself, by broker user `user`: a bare word of HUB_ACTIONS
   * (protocol/hub-actions.ts), e.g. Home Assistant's "Resume automatic updates" button. Each
   * operator may publish only on the topic with its own name (both brokers' ACLs), so the user
   * level says who asked.
   */
  hubActions(user: string): string {
    return `${this.root}/hub/actions/${user}`;
  }
  /** HA allows [a-zA-Z0-9_-] in node ids, so host ids are used unchanged (Mosquitto ACL patterns rely on it). */
  haDiscovery(host: string): string {
    return `${this.haPrefix}/device/lockstep_${host}/config`;
  }
  /** The fleet-level Home Assistant device (automatic mode's state and its resume button). */
  haFleetDiscovery(): string {
    return `${this.haPrefix}/device/${HA_FLEET_NODE_ID}/config`;
  }
  haStatus(): string {
    return `${this.haPrefix}/status`;
  }
  /**
   * Retained JSON state of a host's Home Assistant `update` entity (installed/latest lock,
   * release summary = lock diff), written by the hub's HA bridge. Under fleet/ so every reader
   * role (viewer, operator: Home Assistant connects as one) may read it.
   */
  haUpdate(host: string): string {
    return `${this.root}/fleet/ha/${host}/update`;
  }
  /** Retained JSON of values derived for Home Assistant (problem flag, lock age), written by the hub. */
  haState(host: string): string {
    return `${this.root}/fleet/ha/${host}/state`;
  }

  // Wildcard filters. Host-level builders above also take ANY_HOST ("+") as the host.
  /** Everything under one host (`+` for every host). */
  hostTree(host: string): string {
    return `${this.host(host)}/#`;
  }
  /** Every compartment topic of a host. */
  compartments(host: string): string {
    return `${this.host(host)}/compartments/+`;
  }
  /** Every preview a host published (as the host that evaluated them). */
  hostPreviews(builtOn: string): string {
    return `${this.host(builtOn)}/previews/+/+`;
  }
  /** Every job record and job output topic of a host. */
  jobs(host: string): string {
    return `${this.host(host)}/jobs/#`;
  }
  /** Everything under this prefix and protocol version. */
  namespace(): string {
    return `${this.root}/#`;
  }
  fleetTree(): string {
    return `${this.root}/fleet/#`;
  }
  hubTree(): string {
    return `${this.root}/hub/#`;
  }
  /** Everything under Home Assistant's discovery prefix. */
  haTree(): string {
    return `${this.haPrefix}/#`;
  }

  allHosts(): string {
    return `${this.root}/hosts/#`;
  }
  allHostState(): string[] {
    return [
      `${this.root}/hosts/+/availability`,
      `${this.root}/hosts/+/info`,
      `${this.root}/hosts/+/compartments/+`,
    ];
  }
  allJobs(): string {
    return `${this.root}/hosts/+/jobs/+`;
  }
  allRollouts(): string {
    return `${this.root}/fleet/rollouts/+`;
  }
  allHistory(): string {
    return `${this.root}/fleet/history/+`;
  }
  allPreviews(): string {
    return `${this.root}/fleet/previews/+/+`;
  }
  allPreviewSummaries(): string {
    return `${this.root}/fleet/preview-summaries/+`;
  }

  /** Parse a topic under this prefix, or return null for anything else. */
  parse(topic: string): ParsedTopic | null {
    if (!topic.startsWith(this.root + "/")) return null;
    const parts = topic.slice(this.root.length + 1).split("/");
    const [a, b, c, d, e] = parts;
    if (a === "hosts" && b && isValidHostId(b)) {
      if (parts.length === 3 && c === "availability") return { kind: "availability", host: b };
      if (parts.length === 3 && c === "info") return { kind: "info", host: b };
      if (parts.length === 3 && c === "commands") return { kind: "commands", host: b };
      if (parts.length === 3 && c === "actions") return { kind: "actions", host: b };
      if (parts.length === 4 && c === "compartments" && (COMPARTMENTS as readonly string[]).includes(d ?? "")) {
        return { kind: "compartment", host: b, compartment: d as CompartmentName };
      }
      if (parts.length === 5 && c === "previews" && d && PR_NUMBER.test(d) && e && isValidHostId(e)) return { kind: "hostPreview", builtOn: b, pr: Number(d), host: e };
      if (c === "jobs" && d && ID_PATTERN.test(d)) {
        if (parts.length === 4) return { kind: "job", host: b, jobId: d };
        if (parts.length === 5 && e === "output") return { kind: "jobOutput", host: b, jobId: d };
      }
      return null;
    }
    if (a === "fleet") {
      if (parts.length === 2 && b === "expected") return { kind: "expected" };
      if (parts.length === 2 && b === "events") return { kind: "events" };
      if (parts.length === 2 && b === "automatic") return { kind: "automatic" };
      if (parts.length === 2 && b === "automatic-pause") return { kind: "automaticPause" };
      if (parts.length === 2 && b === "summary") return { kind: "fleetSummary" };
      if (parts.length === 3 && b === "rollouts" && c && ID_PATTERN.test(c)) return { kind: "rollout", rolloutId: c };
      if (parts.length === 3 && b === "history" && c && ID_PATTERN.test(c)) return { kind: "history", rolloutId: c };
      if (parts.length === 4 && b === "previews" && c && PR_NUMBER.test(c) && d && isValidHostId(d)) return { kind: "preview", pr: Number(c), host: d };
      if (parts.length === 3 && b === "preview-summaries" && c && PR_NUMBER.test(c)) return { kind: "previewSummary", pr: Number(c) };
    }
    if (a === "hub" && b === "availability" && parts.length === 2) return { kind: "hubAvailability" };
    if (a === "hub" && b === "status" && parts.length === 2) return { kind: "hubStatus" };
    if (a === "hub" && b === "storage" && parts.length === 2) return { kind: "hubStorage" };
    if (a === "hub" && b === "actions" && parts.length === 3 && c && USER_NAME_PATTERN.test(c)) return { kind: "hubActions", user: c };
    return null;
  }
}
