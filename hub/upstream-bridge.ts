/**
 * A bridge from the hub's embedded broker (Aedes, MQTT 3.1.1) to an upstream broker, usually Home
 * Assistant's Mosquitto add-on (MQTT 5), so HA users keep the zero-setup embedded broker and Home
 * Assistant still sees the fleet. Two MQTT.js clients: one on the embedded broker as a hub user,
 * one on the upstream broker.
 *
 * Out (local → upstream): host state (availability, info, compartments, job states), everything
 * under fleet/, the hub's availability, and Lockstep's HA discovery topics (every host's device and
 * the fleet device). Never commands, actions or job output.
 * In (upstream → local): only hosts/<h>/actions and hub/actions/<user> (HA buttons; the hub
 * validates them, and trusts the upstream broker's ACL that <user> is who published) and HA's
 * birth message. Never commands: only the hub creates those.
 *
 * Loop prevention: the out and in topic sets are disjoint (checked by a unit test with the same
 * filter-overlap function the ACLs use), so a message that came in is never subscribed on the way
 * out and vice versa; no payload tracking is needed.
 *
 * Retain: a 3.1.1 broker clears the retain flag on live deliveries (only replays on subscribe
 * carry it, and Aedes 1.x has no retain-as-published), so an out message is retained upstream
 * when its flag is set or its topic is retained by the protocol (every out topic except
 * fleet/events). Empty retained payloads (deletions) go out like any other.
 *
 * Either side reconnects with exponential backoff. While the upstream is away, out messages are
 * dropped, not queued; each upstream (re)connect re-subscribes locally, and the embedded broker's
 * replay of the retained messages republishes the whole state. The local fleet never waits for
 * the upstream. The upstream password is never logged; URLs are logged without credentials.
 */
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from "mqtt";
import type { Logger } from "pino";
import { isValidHostId, type Topics } from "../protocol/index.js";
import { topicMatches } from "../broker/acl.js";

export interface MqttBridgeOptions {
  /** The embedded broker, with a hub user's credentials. */
  local: { url: string; username: string; password: string; clientId?: string };
  upstream: { url: string; username?: string; password?: string; clientId?: string };
  topics: Topics;
  logger: Logger;
  /** Reconnect delays (each failed attempt doubles, up to maxMs; ±25 % jitter). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Inbound payloads larger than this are dropped (an action or HA status is a few bytes). */
  maxInboundBytes?: number;
}

export interface BridgeStats {
  out: number;
  in: number;
  /** Out messages dropped because the upstream was not connected (retained ones return on reconnect). */
  droppedOut: number;
  /** In messages dropped (local not connected, retained action, too large). */
  droppedIn: number;
}

// ---------------------------------------------------------------------------------------------
// Topic rules (pure)

/** Subscription filters on each side. Disjoint: no topic matches a filter of both lists. */
export function bridgeFilters(topics: Topics): { out: string[]; in: string[] } {
  return {
    out: [
      ...topics.allHostState(),
      topics.allJobs(),
      `${topics.root}/fleet/#`,
      topics.hubAvailability(),
      // MQTT has no "lockstep_+" level wildcard: subscribe to all devices, forward only ours.
      `${topics.haPrefix}/device/+/config`,
    ],
    in: [topics.actions("+"), topics.hubActions("+"), topics.haStatus()],
  };
}

/** Is this local topic forwarded to the upstream broker? `out`: bridgeFilters(topics).out, if already built. */
export function forwardsOut(topics: Topics, topic: string, out = bridgeFilters(topics).out): boolean {
  if (!out.some((filter) => topicMatches(filter, topic))) return false;
  if (topic.startsWith(`${topics.haPrefix}/`)) {
    if (topic === topics.haFleetDiscovery()) return true;
    const node = topic.split("/")[2] ?? "";
    const host = node.slice("lockstep_".length);
    return node.startsWith("lockstep_") && isValidHostId(host) && topics.haDiscovery(host) === topic;
  }
  const parsed = topics.parse(topic);
  // Host topics must name a valid host (the filters already leave commands, actions and job output
  // out); fleet/ha/<host>/... is not in parse() but is under fleet/#.
  if (topic.startsWith(`${topics.root}/hosts/`)) return parsed !== null;
  return true;
}

/** Is this upstream topic forwarded into the embedded broker? Only HA buttons (host and fleet) and HA's birth. */
export function forwardsIn(topics: Topics, topic: string): boolean {
  if (topic === topics.haStatus()) return true;
  const parsed = topics.parse(topic);
  return parsed !== null && (parsed.kind === "actions" || parsed.kind === "hubActions");
}

/** The retain flag an out message gets upstream (see the file comment: 3.1.1 clears it on live delivery). */
export function retainOut(topics: Topics, topic: string, retainFlag: boolean): boolean {
  return retainFlag || topic !== topics.events();
}

/** The URL without user and password, for logs and the startup summary. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (!u.username && !u.password) return url;
    u.username = "";
    u.password = "";
    return u.toString();
  } catch {
    return "(invalid URL)";
  }
}

// ---------------------------------------------------------------------------------------------
// One side: an MQTT.js client with our own exponential backoff (MQTT.js retries at a fixed period).

class Side {
  readonly client: MqttClient;
  private timer: NodeJS.Timeout | undefined;
  private attempts = 0;
  private stopped = false;
  private wasConnected = false;

  constructor(
    readonly name: "local" | "upstream",
    url: string,
    options: IClientOptions,
    private readonly backoff: { initialMs: number; maxMs: number },
    private readonly log: Logger,
    onConnect: () => void,
  ) {
    this.client = mqtt.connect(url, {
      ...options,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      queueQoSZero: false,
    });
    this.client.on("connect", () => {
      this.attempts = 0;
      this.wasConnected = true;
      this.log.info({ side: name, url: redactUrl(url) }, "bridge connected");
      onConnect();
    });
    this.client.on("error", (err) => this.log.warn({ side: name, error: err.message }, "bridge connection error"));
    this.client.on("close", () => {
      if (this.stopped) return;
      if (this.wasConnected) this.log.warn({ side: name }, "bridge connection lost; reconnecting");
      this.wasConnected = false;
      this.scheduleReconnect();
    });
  }

  get connected(): boolean {
    return this.client.connected;
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.timer) return;
    const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(this.attempts, 20));
    this.attempts++;
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.stopped) this.client.reconnect();
    }, delay);
    this.timer.unref();
  }

  async stop(before?: () => Promise<void>): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (before && this.client.connected) await before().catch(() => undefined);
    await this.client.endAsync(!this.client.connected).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------

export class MqttBridge {
  private readonly topics: Topics;
  private readonly log: Logger;
  private readonly filters: { out: string[]; in: string[] };
  private readonly maxInboundBytes: number;
  private local?: Side;
  private upstream?: Side;
  readonly stats: BridgeStats = { out: 0, in: 0, droppedOut: 0, droppedIn: 0 };

  constructor(private readonly options: MqttBridgeOptions) {
    this.topics = options.topics;
    this.log = options.logger.child({ component: "bridge" });
    this.filters = bridgeFilters(options.topics);
    this.maxInboundBytes = options.maxInboundBytes ?? 4096;
  }

  /** Connected to the upstream broker right now? */
  get upstreamConnected(): boolean {
    return this.upstream?.connected ?? false;
  }

  /**
   * Connects both sides. Resolves once the local side is connected (it is in this process); the
   * upstream connects (and reconnects) in the background, so a missing upstream never delays the hub.
   */
  async start(): Promise<void> {
    if (this.local) throw new Error("bridge already started");
    const backoff = { initialMs: this.options.backoff?.initialMs ?? 1000, maxMs: this.options.backoff?.maxMs ?? 30_000 };
    const suffix = `${process.pid}-${Date.now().toString(36)}`;
    const { local, upstream } = this.options;

    this.local = new Side(
      "local",
      local.url,
      { username: local.username, password: local.password, clientId: local.clientId ?? `lockstep-bridge-${suffix}` },
      backoff,
      this.log,
      () => this.subscribeLocal(false),
    );
    this.local.client.on("message", (topic, payload, packet) => this.onLocalMessage(topic, payload, packet));

    this.upstream = new Side(
      "upstream",
      upstream.url,
      {
        ...(upstream.username !== undefined ? { username: upstream.username } : {}),
        ...(upstream.password !== undefined ? { password: upstream.password } : {}),
        clientId: upstream.clientId ?? `lockstep-bridge-${suffix}`,
        // Home Assistant must not show a dead bridge's fleet as reachable.
        will: { topic: this.topics.hubAvailability(), payload: Buffer.from("offline"), retain: true, qos: 1 },
      },
      backoff,
      this.log,
      () => this.onUpstreamConnect(),
    );
    this.upstream.client.on("message", (topic, payload, packet) => this.onUpstreamMessage(topic, payload, packet));

    const client = this.local.client;
    await new Promise<void>((resolve, reject) => {
      if (client.connected) return resolve();
      const timer = setTimeout(() => reject(new Error("bridge: the embedded broker did not accept the bridge's connection within 10 s")), 10_000);
      client.once("connect", () => {
        clearTimeout(timer);
        resolve();
      });
    }).catch(async (err: unknown) => {
      await this.stop();
      throw err;
    });
  }

  async stop(): Promise<void> {
    const { local, upstream } = this;
    // The clean DISCONNECT skips the will: say "offline" upstream ourselves.
    await upstream?.stop(async () => {
      await upstream.client.publishAsync(this.topics.hubAvailability(), "offline", { qos: 1, retain: true });
    });
    await local?.stop();
  }

  /** Subscribe the out filters locally; with `replay`, drop the subscription first so retained messages come again. */
  private subscribeLocal(replay: boolean): void {
    const local = this.local;
    if (!local?.connected) return;
    const subscribe = () =>
      local.client.subscribeAsync(this.filters.out, { qos: 1 }).catch((err: unknown) => this.log.error({ error: (err as Error).message }, "bridge: cannot subscribe on the embedded broker"));
    if (replay) void local.client.unsubscribeAsync(this.filters.out).then(subscribe, subscribe);
    else void subscribe();
  }

  private onUpstreamConnect(): void {
    const upstream = this.upstream;
    if (!upstream) return;
    upstream.client.subscribeAsync(this.filters.in, { qos: 1 }).catch((err: unknown) => this.log.error({ error: (err as Error).message }, "bridge: cannot subscribe on the upstream broker"));
    // Republish the retained state: the upstream may have restarted without it, and whatever
    // changed while it was away was dropped.
    this.subscribeLocal(true);
  }

  private onLocalMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (!forwardsOut(this.topics, topic, this.filters.out)) return;
    const upstream = this.upstream;
    if (!upstream?.connected) {
      this.stats.droppedOut++;
      return;
    }
    this.stats.out++;
    upstream.client.publish(topic, payload, { qos: 1, retain: retainOut(this.topics, topic, packet.retain) }, (err) => {
      if (err) this.log.warn({ topic, error: err.message }, "bridge: upstream publish failed");
    });
  }

  private onUpstreamMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (!forwardsIn(this.topics, topic)) return;
    const local = this.local;
    const reason =
      payload.length > this.maxInboundBytes
        ? "payload too large"
        : packet.retain && topic !== this.topics.haStatus()
          ? "retained action (a stale button press must not run again)"
          : !local?.connected
            ? "embedded broker not connected"
            : undefined;
    if (reason || !local) {
      this.stats.droppedIn++;
      this.log.warn({ topic, reason }, "bridge: not forwarding an upstream message");
      return;
    }
    this.stats.in++;
    // Never retained locally: an action is a one-off request, HA's birth an event.
    local.client.publish(topic, payload, { qos: 1, retain: false }, (err) => {
      if (err) this.log.warn({ topic, error: err.message }, "bridge: local publish failed");
    });
  }
}
