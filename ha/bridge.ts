/**
 * The hub's Home Assistant bridge: follows the fleet through the hub's fleet view (the one host-state
 * cache, rollout/fleet-view.ts), keeps one retained discovery message per host (removed when the
 * host is), publishes the derived update/problem/lock-age states, sends Home Assistant's bare
 * action payloads as protocol Commands through the fleet view (the one command path, which also
 * audits them), and starts a one-host rollout for the update entity's Install. It also keeps the
 * fleet device (ha/fleet-device.ts), whose "Resume automatic updates" button resumes automatic mode.
 *
 * It runs inside the hub on an MQTT client connected with the hub role (the only role allowed to
 * write discovery topics and commands for every host).
 */
import { EventEmitter } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { IPublishPacket, MqttClient } from "mqtt";
import type { Logger } from "pino";
import { DEFAULT_HA_USER, LockstepError, PreviewSummary, decodeJson, encodeJson, parseHubAction, type FleetExpected, type Topics } from "../protocol/index.js";
import type { AutomaticPause } from "../rollout/automatic-pause.js";
import { FleetView } from "../rollout/fleet-view.js";
import type { RolloutService } from "../rollout/service.js";
import { buildHostDiscovery, buildHostState, buildUpdateState, parseHaAction, type HaOrigin } from "./discovery.js";
import { buildFleetDiscovery } from "./fleet-device.js";

export interface HomeAssistantBridgeOptions {
  /** Connected with the hub role. */
  client: MqttClient;
  topics: Topics;
  logger: Logger;
  /** The hub's fleet view; without one the bridge builds (and starts, and stops) its own on `client`. */
  fleet?: FleetView;
  /** Install starts a one-host rollout of the fleet head here; without it Install is only the "install-requested" event. */
  rollouts?: Pick<RolloutService, "installOnHost">;
  /** Automatic mode's pause: the fleet device's "Resume automatic updates" button ends it. */
  automatic?: Pick<AutomaticPause, "resume">;
  /** The broker user Home Assistant connects as (its fleet buttons publish on Topics.hubActions(haUser)); default "home-assistant". */
  haUser?: string;
  /** Origin block of the discovery messages; defaults to Lockstep and its package version. */
  origin?: HaOrigin;
  /** The fleet page URL, linked from each HA device. */
  configurationUrl?: string;
  /** How long a command from an HA button stays valid (an offline host must not run it days later). */
  commandTtlMs?: number;
  /**
   * Delay before republishing after HA's birth message. HA's docs ask for a random delay so a
   * restarting HA is not hit by every device at once; default: random 0.2–2 s.
   */
  birthDelayMs?: () => number;
  /** How often derived states are recomputed without any message (the lock age grows by itself). */
  refreshIntervalMs?: number;
  /** Clock, for tests. */
  now?: () => Date;
}

export interface InstallRequested {
  host: string;
}

/** Who Install's rollout and the buttons' commands are requested by. */
const REQUESTED_BY = "home-assistant";
const DEFAULT_COMMAND_TTL_MS = 15 * 60_000;

export class HomeAssistantBridge extends EventEmitter<{ "install-requested": [InstallRequested] }> {
  private readonly client: MqttClient;
  private readonly topics: Topics;
  private readonly log: Logger;
  private readonly fleet: FleetView;
  private readonly ownsFleet: boolean;
  private readonly rollouts: Pick<RolloutService, "installOnHost"> | undefined;
  private readonly automatic: Pick<AutomaticPause, "resume"> | undefined;
  private readonly haUser: string;
  private readonly origin: HaOrigin;
  private readonly configurationUrl: string | undefined;
  private readonly commandTtlMs: number;
  private readonly now: () => Date;
  private readonly birthDelayMs: () => number;
  private birthTimer: NodeJS.Timeout | null = null;
  private readonly refreshIntervalMs: number;
  private refreshTimer: NodeJS.Timeout | null = null;
  /** Hosts with an HA device, and the payloads last published retained for each (to skip identical re-publishes). */
  private readonly devices = new Map<string, Map<string, string>>();
  /** The fleet preview summary per PR (fleet/preview-summaries): the pending update's release summary. */
  private readonly previewSummaries = new Map<number, PreviewSummary>();
  private started = false;
  private unfollow: Array<() => void> = [];
  private readonly onMessage = (topic: string, payload: Buffer, packet: IPublishPacket) => this.handle(topic, payload, packet.retain);

  constructor(opts: HomeAssistantBridgeOptions) {
    super();
    this.client = opts.client;
    this.topics = opts.topics;
    this.log = opts.logger.child({ component: "ha-bridge" });
    this.fleet = opts.fleet ?? new FleetView({ client: opts.client, topics: opts.topics, logger: this.log });
    this.ownsFleet = opts.fleet === undefined;
    this.rollouts = opts.rollouts;
    this.automatic = opts.automatic;
    this.haUser = opts.haUser ?? DEFAULT_HA_USER;
    this.origin = opts.origin ?? { name: "Lockstep", sw_version: lockstepVersion() };
    this.configurationUrl = opts.configurationUrl;
    this.commandTtlMs = opts.commandTtlMs ?? DEFAULT_COMMAND_TTL_MS;
    this.now = opts.now ?? (() => new Date());
    this.birthDelayMs = opts.birthDelayMs ?? (() => 200 + Math.random() * 1800);
    this.refreshIntervalMs = opts.refreshIntervalMs ?? 3_600_000;
  }

  /** Only what the fleet view does not follow: HA's birth message, its buttons (host and fleet), the preview summaries. */
  private subscriptions(): string[] {
    // "+" in place of the host id or user: the wildcard of Topics.actions(host) and Topics.hubActions(user).
    return [this.topics.haStatus(), this.topics.actions("+"), this.topics.hubActions("+"), this.topics.allPreviewSummaries()];
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.unfollow = [
      this.fleet.onChange((change) => {
        if (change.kind === "info" || change.kind === "compartment") this.onHostChanged(change.host);
      }),
      this.fleet.onExpected(() => {
        for (const host of this.devices.keys()) this.publishStates(host);
      }),
    ];
    if (this.ownsFleet) await this.fleet.start();
    this.publishFleetDevice();
    for (const h of this.fleet.hosts()) this.onHostChanged(h.host);
    this.client.on("message", this.onMessage);
    // Unchanged states are not re-sent (publishIfChanged), so this only costs a message when a day passed.
    this.refreshTimer = setInterval(() => {
      for (const host of this.devices.keys()) this.publishStates(host);
    }, this.refreshIntervalMs);
    this.refreshTimer.unref();
    await this.client.subscribeAsync(this.subscriptions(), { qos: 1 });
    this.log.info({ subscriptions: this.subscriptions() }, "home assistant bridge started");
  }

  /** Stops following the fleet. Discovery stays retained: HA marks entities unavailable via the hub's will. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    if (this.birthTimer) clearTimeout(this.birthTimer);
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.birthTimer = this.refreshTimer = null;
    for (const off of this.unfollow) off();
    this.unfollow = [];
    this.client.off("message", this.onMessage);
    if (this.client.connected) await this.client.unsubscribeAsync(this.subscriptions()).catch(() => undefined);
    if (this.ownsFleet) await this.fleet.stop();
  }

  /** Hosts that currently have an HA device. */
  knownHosts(): string[] {
    return [...this.devices.keys()].sort();
  }

  // -------------------------------------------------------------------------------------------

  private handle(topic: string, payload: Buffer, retained = false): void {
    try {
      if (topic === this.topics.haStatus()) {
        if (payload.toString("utf8").trim() === "online" && !this.birthTimer) {
          this.birthTimer = setTimeout(() => {
            this.birthTimer = null;
            if (this.started) this.republishAll();
          }, this.birthDelayMs());
        }
        return;
      }
      const parsed = this.topics.parse(topic);
      if (parsed?.kind === "actions") this.onAction(parsed.host, payload);
      if (parsed?.kind === "previewSummary") this.onPreviewSummary(parsed.pr, payload);
      if (parsed?.kind === "hubActions") this.onHubAction(parsed.user, payload, retained);
    } catch (err) {
      this.log.error({ err, topic }, "home assistant bridge failed to handle a message");
    }
  }

  /** A PR's preview summary changed (or was cleared): the update entities' release summary follows. */
  private onPreviewSummary(pr: number, payload: Buffer): void {
    if (payload.length === 0) this.previewSummaries.delete(pr);
    else {
      const d = decodeJson(PreviewSummary, payload);
      if (!d.ok || d.value.pr !== pr) return void this.log.warn({ pr, error: d.ok ? "PR number differs from the topic" : d.error }, "ignoring an invalid preview summary");
      this.previewSummaries.set(pr, d.value);
    }
    if (this.expected()?.pendingUpdate?.number !== pr) return;
    for (const host of this.devices.keys()) this.publishStates(host);
  }

  /** A host's info or compartments changed in the fleet view: add, update or remove its device. */
  private onHostChanged(host: string): void {
    const info = this.fleet.host(host)?.info;
    if (!info) return this.removeHost(host);
    if (!this.devices.has(host)) {
      this.devices.set(host, new Map());
      this.log.info({ host }, "home assistant device added");
    }
    this.publishDiscovery(host);
    this.publishStates(host);
  }

  private removeHost(host: string): void {
    if (!this.devices.delete(host)) return;
    // Empty retained payloads: HA deletes the device, the broker forgets the retained messages.
    for (const topic of [this.topics.haDiscovery(host), this.topics.haUpdate(host), this.topics.haState(host)]) {
      this.publishRetained(topic, "");
    }
    this.log.info({ host }, "home assistant device removed");
  }

  private republishAll(): void {
    this.log.info({ hosts: this.devices.size }, "home assistant came online: republishing discovery");
    this.publishFleetDevice();
    for (const [host, published] of this.devices) {
      published.clear();
      this.publishDiscovery(host);
      this.publishStates(host);
    }
  }

  /** The fleet device: its discovery only, since its entities read the hub's own retained topics. */
  private publishFleetDevice(): void {
    const opts = { topics: this.topics, haUser: this.haUser, origin: this.origin, ...(this.configurationUrl ? { configurationUrl: this.configurationUrl } : {}) };
    this.publishRetained(this.topics.haFleetDiscovery(), encodeJson(buildFleetDiscovery(opts)));
  }

  private publishDiscovery(host: string): void {
    const info = this.fleet.host(host)?.info;
    if (!info) return;
    const opts = { topics: this.topics, origin: this.origin, ...(this.configurationUrl ? { configurationUrl: this.configurationUrl } : {}) };
    this.publishIfChanged(host, this.topics.haDiscovery(host), encodeJson(buildHostDiscovery(info, opts)));
  }

  private publishStates(host: string): void {
    const snapshot = this.fleet.host(host);
    if (!snapshot?.info) return;
    const device = { info: snapshot.info, compartments: snapshot.compartments };
    const expected = this.expected() ?? null;
    const preview = expected?.pendingUpdate ? this.previewSummaries.get(expected.pendingUpdate.number) : undefined;
    this.publishIfChanged(host, this.topics.haUpdate(host), encodeJson(buildUpdateState(device, expected, preview)));
    this.publishIfChanged(host, this.topics.haState(host), encodeJson(buildHostState(device, this.now())));
  }

  private expected(): FleetExpected | undefined {
    return this.fleet.expected();
  }

  private publishIfChanged(host: string, topic: string, payload: string): void {
    const published = this.devices.get(host);
    if (!published || published.get(topic) === payload) return;
    published.set(topic, payload);
    this.publishRetained(topic, payload);
  }

  private publishRetained(topic: string, payload: string): void {
    this.client.publish(topic, payload, { qos: 1, retain: true }, (err) => {
      if (err) this.log.error({ err, topic }, "home assistant bridge publish failed");
    });
  }

  // -------------------------------------------------------------------------------------------
  // Actions from Home Assistant → Commands (through the fleet view) and Install → a rollout

  private onAction(host: string, payload: Buffer): void {
    const text = payload.toString("utf8");
    const op = parseHaAction(text);
    if (!op) {
      this.log.warn({ host, payload: text.slice(0, 40) }, "ignoring unknown home assistant action");
      return;
    }
    if (!this.devices.has(host)) {
      this.log.warn({ host, op }, "ignoring home assistant action for an unknown host");
      return;
    }
    if (op === "install") return this.install(host);
    this.sendCommand(host, op).catch((err: unknown) =>
      this.log.warn({ host, op, err: err instanceof LockstepError ? err.message : err }, "home assistant action not sent"),
    );
  }

  /**
   * A fleet button: `user` pressed it (the broker lets each operator publish only on its own
   * hub-actions topic). A retained press is ignored: it would act again on every hub restart.
   */
  private onHubAction(user: string, payload: Buffer, retained: boolean): void {
    const action = parseHubAction(payload);
    if (!action || retained) {
      this.log.warn({ user, retained, payload: payload.subarray(0, 40).toString("utf8") }, "ignoring a hub action that is retained or not one of resume-automatic");
      return;
    }
    if (!this.automatic) return void this.log.warn({ user, action }, "ignoring resume-automatic: this hub has no automatic mode");
    // The same owner as POST /api/automatic/resume and the gate's "resume": it audits automatic.resumed.
    const resumed = this.automatic.resume(`mqtt:${user}`, "Home Assistant's button \"Resume automatic updates\"");
    this.log.info({ user, resumed }, resumed ? "automatic updates resumed from home assistant" : "home assistant asked to resume automatic updates, which were not paused");
  }

  private install(host: string): void {
    this.log.info({ host }, "home assistant requested an install");
    this.emit("install-requested", { host });
    if (!this.rollouts) return;
    const commit = this.expected()?.headCommit;
    if (!commit) {
      this.log.warn({ host }, "home assistant asked to install, but fleet/expected has no head commit yet");
      return;
    }
    try {
      const rolloutId = this.rollouts.installOnHost(host, commit, REQUESTED_BY);
      this.log.info({ host, rolloutId }, "home assistant install started a rollout");
    } catch (err) {
      this.log.warn({ host, err: err instanceof LockstepError ? err.message : err }, "home assistant install refused");
    }
  }

  private async sendCommand(host: string, op: "pull" | "switch" | "test" | "rollback"): Promise<void> {
    const meta = { requestedBy: REQUESTED_BY, expiresAt: new Date(this.now().getTime() + this.commandTtlMs) };
    let id: string;
    if (op === "pull") {
      // A pull always names the exact commit: the fleet's head, never "whatever main is now".
      const head = this.expected()?.headCommit;
      if (!head) throw new LockstepError("cannot pull: the fleet's head commit is not known yet", "ha-no-head", "wait for the hub to publish fleet/expected");
      id = await this.fleet.sendCommand(host, op, { commit: head }, meta);
    } else {
      id = await this.fleet.sendCommand(host, op, {}, meta);
    }
    this.log.info({ host, op, commandId: id }, "home assistant action sent as command");
  }
}

/** The version in Lockstep's package.json, found from this file in the source tree or in dist/. */
export function lockstepVersion(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string };
        if (pkg.name === "lockstep" && pkg.version) return pkg.version;
      } catch {
        // unreadable: keep looking upwards
      }
    }
    dir = dirname(dir);
  }
  return "unknown";
}
