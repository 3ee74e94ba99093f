/**
 * The hub's Home Assistant bridge: follows the retained host state, keeps one retained discovery
 * message per host (removed when the host is), publishes the derived update/problem/lock-age
 * states, and turns Home Assistant's bare action payloads into protocol Commands.
 *
 * It runs inside the hub on an MQTT client connected with the hub role (the only role allowed to
 * write discovery topics and commands for every host).
 */
import { EventEmitter } from "node:events";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { MqttClient } from "mqtt";
import type { Logger } from "pino";
import {
  Command,
  Compartment,
  FleetExpected,
  HostInfo,
  LockstepError,
  commandSentEvent,
  decodeJson,
  encodeJson,
  type CompartmentName,
  type Topics,
} from "../protocol/index.js";
import {
  buildHostDiscovery,
  buildHostState,
  buildUpdateState,
  parseHaAction,
  type HaOrigin,
  type HostSnapshot,
} from "./discovery.js";

export interface HomeAssistantBridgeOptions {
  /** Connected with the hub role. */
  client: MqttClient;
  topics: Topics;
  logger: Logger;
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

interface HostEntry extends HostSnapshot {
  /** Last payloads we published retained, to skip identical re-publishes. */
  published: Map<string, string>;
}

const DEFAULT_COMMAND_TTL_MS = 15 * 60_000;

export class HomeAssistantBridge extends EventEmitter<{ "install-requested": [InstallRequested] }> {
  private readonly client: MqttClient;
  private readonly topics: Topics;
  private readonly log: Logger;
  private readonly origin: HaOrigin;
  private readonly configurationUrl: string | undefined;
  private readonly commandTtlMs: number;
  private readonly now: () => Date;
  private readonly birthDelayMs: () => number;
  private birthTimer: NodeJS.Timeout | null = null;
  private readonly refreshIntervalMs: number;
  private refreshTimer: NodeJS.Timeout | null = null;
  private readonly hosts = new Map<string, HostEntry>();
  /** Compartments that arrived before their host's info (retained messages come in any order). */
  private readonly orphanCompartments = new Map<string, Partial<Record<CompartmentName, Compartment>>>();
  private expected: FleetExpected | null = null;
  private started = false;
  private readonly onMessage = (topic: string, payload: Buffer) => this.handle(topic, payload);

  constructor(opts: HomeAssistantBridgeOptions) {
    super();
    this.client = opts.client;
    this.topics = opts.topics;
    this.log = opts.logger.child({ component: "ha-bridge" });
    this.origin = opts.origin ?? { name: "Lockstep", sw_version: lockstepVersion() };
    this.configurationUrl = opts.configurationUrl;
    this.commandTtlMs = opts.commandTtlMs ?? DEFAULT_COMMAND_TTL_MS;
    this.now = opts.now ?? (() => new Date());
    this.birthDelayMs = opts.birthDelayMs ?? (() => 200 + Math.random() * 1800);
    this.refreshIntervalMs = opts.refreshIntervalMs ?? 3_600_000;
  }

  private subscriptions(): string[] {
    return [
      this.topics.haStatus(),
      this.topics.expected(),
      ...this.topics.allHostState(),
      // "+" in place of the host id: the wildcard of Topics.actions(host).
      this.topics.actions("+"),
    ];
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.client.on("message", this.onMessage);
    // Unchanged states are not re-sent (publishIfChanged), so this only costs a message when a day passed.
    this.refreshTimer = setInterval(() => {
      for (const host of this.hosts.keys()) this.publishStates(host);
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
    this.client.off("message", this.onMessage);
    if (this.client.connected) await this.client.unsubscribeAsync(this.subscriptions()).catch(() => undefined);
  }

  /** Hosts that currently have an HA device. */
  knownHosts(): string[] {
    return [...this.hosts.keys()].sort();
  }

  // -------------------------------------------------------------------------------------------

  private handle(topic: string, payload: Buffer): void {
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
      if (!parsed) return;
      switch (parsed.kind) {
        case "expected":
          return this.onExpected(payload);
        case "info":
          return this.onInfo(parsed.host, payload);
        case "compartment":
          return this.onCompartment(parsed.host, parsed.compartment, payload);
        case "actions":
          return this.onAction(parsed.host, payload);
        default:
          return;
      }
    } catch (err) {
      this.log.error({ err, topic }, "home assistant bridge failed to handle a message");
    }
  }

  private onExpected(payload: Buffer): void {
    if (payload.length === 0) {
      this.expected = null;
    } else {
      const d = decodeJson(FleetExpected, payload);
      if (!d.ok) {
        this.log.warn({ topic: this.topics.expected(), error: d.error }, "ignoring invalid fleet/expected payload");
        return;
      }
      this.expected = d.value;
    }
    for (const host of this.hosts.keys()) this.publishStates(host);
  }

  private onInfo(host: string, payload: Buffer): void {
    if (payload.length === 0) return this.removeHost(host);
    const d = decodeJson(HostInfo, payload);
    if (!d.ok) {
      this.log.warn({ host, error: d.error }, "ignoring invalid host info payload");
      return;
    }
    if (d.value.host !== host) {
      this.log.warn({ host, infoHost: d.value.host }, "ignoring host info whose host id differs from its topic");
      return;
    }
    let entry = this.hosts.get(host);
    if (!entry) {
      entry = { info: d.value, compartments: this.orphanCompartments.get(host) ?? {}, published: new Map() };
      this.orphanCompartments.delete(host);
      this.hosts.set(host, entry);
      this.log.info({ host }, "home assistant device added");
    } else {
      entry.info = d.value;
    }
    this.publishDiscovery(host);
    this.publishStates(host);
  }

  private onCompartment(host: string, name: CompartmentName, payload: Buffer): void {
    const entry = this.hosts.get(host);
    const target = entry?.compartments ?? this.orphanCompartments.get(host) ?? {};
    if (payload.length === 0) {
      delete target[name];
    } else {
      const d = decodeJson(Compartment, payload);
      if (!d.ok) {
        this.log.warn({ host, compartment: name, error: d.error }, "ignoring invalid compartment payload");
        return;
      }
      target[name] = d.value;
    }
    if (entry) this.publishStates(host);
    else this.orphanCompartments.set(host, target);
  }

  private removeHost(host: string): void {
    this.orphanCompartments.delete(host);
    if (!this.hosts.delete(host)) return;
    // Empty retained payloads: HA deletes the device, the broker forgets the retained messages.
    for (const topic of [this.topics.haDiscovery(host), this.topics.haUpdate(host), this.topics.haState(host)]) {
      this.publishRetained(topic, "");
    }
    this.log.info({ host }, "home assistant device removed");
  }

  private republishAll(): void {
    this.log.info({ hosts: this.hosts.size }, "home assistant came online: republishing discovery");
    for (const [host, entry] of this.hosts) {
      entry.published.clear();
      this.publishDiscovery(host);
      this.publishStates(host);
    }
  }

  private publishDiscovery(host: string): void {
    const entry = this.hosts.get(host);
    if (!entry) return;
    const opts = { topics: this.topics, origin: this.origin, ...(this.configurationUrl ? { configurationUrl: this.configurationUrl } : {}) };
    this.publishIfChanged(entry, this.topics.haDiscovery(host), encodeJson(buildHostDiscovery(entry.info, opts)));
  }

  private publishStates(host: string): void {
    const entry = this.hosts.get(host);
    if (!entry) return;
    this.publishIfChanged(entry, this.topics.haUpdate(host), encodeJson(buildUpdateState(entry, this.expected)));
    this.publishIfChanged(entry, this.topics.haState(host), encodeJson(buildHostState(entry, this.now())));
  }

  private publishIfChanged(entry: HostEntry, topic: string, payload: string): void {
    if (entry.published.get(topic) === payload) return;
    entry.published.set(topic, payload);
    this.publishRetained(topic, payload);
  }

  private publishRetained(topic: string, payload: string): void {
    this.client.publish(topic, payload, { qos: 1, retain: true }, (err) => {
      if (err) this.log.error({ err, topic }, "home assistant bridge publish failed");
    });
  }

  // -------------------------------------------------------------------------------------------
  // Actions from Home Assistant → Commands

  private onAction(host: string, payload: Buffer): void {
    const text = payload.toString("utf8");
    const op = parseHaAction(text);
    if (!op) {
      this.log.warn({ host, payload: text.slice(0, 40) }, "ignoring unknown home assistant action");
      return;
    }
    if (!this.hosts.has(host)) {
      this.log.warn({ host, op }, "ignoring home assistant action for an unknown host");
      return;
    }
    if (op === "install") {
      this.log.info({ host }, "home assistant requested an install");
      this.emit("install-requested", { host });
      return;
    }
    try {
      const command = this.buildCommand(op);
      this.client.publish(this.topics.commands(host), encodeJson(command), { qos: 1 }, (err) => {
        if (err) return this.log.error({ err, host, op }, "publishing a command for home assistant failed");
        // Hub-side senders record their own commands in the audit log (the broker skips the hub's).
        this.client.publish(this.topics.events(), encodeJson(commandSentEvent(host, command)), { qos: 1 }, (e) => {
          if (e) this.log.error({ err: e, host, op }, "cannot publish the audit event of a home assistant command");
        });
      });
      this.log.info({ host, op, commandId: command.id }, "home assistant action sent as command");
    } catch (err) {
      this.log.warn({ host, op, err: err instanceof LockstepError ? err.message : err }, "home assistant action not sent");
    }
  }

  private buildCommand(op: "pull" | "switch" | "test" | "rollback"): Command {
    const issued = this.now();
    const base = {
      id: `ha-${op}-${issued.getTime().toString(36)}-${randomBytes(4).toString("hex")}`,
      issuedAt: issued.toISOString(),
      expiresAt: new Date(issued.getTime() + this.commandTtlMs).toISOString(),
      requestedBy: "home-assistant",
    };
    let candidate: unknown;
    if (op === "pull") {
      // A pull always names the exact commit: the fleet's head, never "whatever main is now".
      if (!this.expected) {
        throw new LockstepError("cannot pull: the fleet's head commit is not known yet", "ha-no-head", "wait for the hub to publish fleet/expected");
      }
      candidate = { ...base, op, args: { commit: this.expected.headCommit } };
    } else {
      candidate = { ...base, op, args: {} };
    }
    return Command.parse(candidate);
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
