/**
 * The embedded broker's access control: Aedes' authorizePublish / authorizeSubscribe /
 * authorizeForward hooks, applying acl.ts to the user each connection logged in as.
 * - a denied subscription gets the MQTT failure code 0x80;
 * - a denied publish is acknowledged and dropped (MQTT 3.1.1 cannot refuse one; Mosquitto does the same);
 * - a message is delivered only to a client allowed to read its topic.
 */
import type { Aedes, AedesOptions, Client, PublishPacket, Subscription } from "aedes";
import type { Logger } from "pino";
import type { Topics } from "../protocol/index.js";
import { canPublish, canReceive, canSubscribe, type AclUser } from "./acl.js";
import { DeliveryGuard, isSupersededConnection } from "./aedes-fixes.js";
import type { ClientLimits } from "./client-limits.js";
import { INTERNAL_HUB_USER, remoteAddressOf, type ClientIdentities } from "./auth.js";

/** Denied publishes are re-routed here: no client can subscribe to it, so the message goes nowhere. */
const DROPPED_TOPIC = "$lockstep/dropped";

export interface AccessDenial {
  clientId: string;
  user: string;
  address: string;
  action: "publish" | "subscribe";
  topic: string;
  reason: string;
}

export interface AccessContext {
  aedes: () => Aedes | undefined;
  topics: Topics;
  identities: ClientIdentities;
  /** Subscription counts and publish rates (hub-role clients are not limited). */
  limits: ClientLimits;
  logger: Logger;
  onDenied: (info: AccessDenial) => void;
  /** An authorized publish by an operator or hub client (for audit attribution). */
  onOperatorPublish: (client: Client, user: AclUser, packet: PublishPacket) => void;
  /** Cluster: has this client id connected to another broker node since (broker/cluster.ts)? */
  connectedElsewhere?: (clientId: string) => boolean;
  /** Store a retained QoS 1 message before it is acknowledged (aedes-fixes.ts, fix 5). */
  storeBeforeAck?: (packet: PublishPacket) => Promise<void>;
}

type Done = (error?: Error | null) => void;

/** Requests to a host or to the hub: events, never retained. */
function isHostRequest(topics: Topics, topic: string): boolean {
  const kind = topics.parse(topic)?.kind;
  return kind === "commands" || kind === "actions" || kind === "hubActions";
}

function dropPacket(packet: PublishPacket): void {
  packet.topic = DROPPED_TOPIC;
  packet.retain = false;
  packet.payload = Buffer.alloc(0);
}

export class BrokerAccess {
  private readonly delivery = new DeliveryGuard();
  /** Per client: the last of its publishes still waiting to be let through (see inOrder). */
  private readonly waiting = new WeakMap<Client, Promise<void>>();

  constructor(private readonly ctx: AccessContext) {}

  /** Aedes' hooks, ready to pass to Aedes.createBroker. */
  hooks(): Pick<AedesOptions, "authorizePublish" | "authorizeSubscribe" | "authorizeForward"> {
    return {
      authorizePublish: (client: Client | null, packet: PublishPacket, done: (error?: Error | null) => void) => this.authorizePublish(client, packet, done),
      authorizeSubscribe: (client: Client, sub: Subscription, done: (error: Error | null, subscription?: Subscription | null) => void) =>
        this.authorizeSubscribe(client, sub, done),
      authorizeForward: (client, packet) => this.authorizeForward(client, packet) as typeof packet | null,
    };
  }

  /** Call on Aedes' "subscribe" event. */
  subscribed(subs: Subscription[], client: Client): void {
    this.delivery.subscribed(subs, client);
  }

  /** Call on Aedes' "unsubscribe" event. */
  unsubscribed(filters: string[], client: Client): void {
    this.ctx.limits.unsubscribed(client, filters);
  }

  private authorizeForward(client: Client, packet: PublishPacket): PublishPacket | null {
    const user = this.ctx.identities.userOf(client);
    if (!user || !canReceive(user, packet.topic, this.ctx.topics)) return null;
    return this.delivery.admit(client, packet) ? packet : null;
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, done: (error?: Error | null) => void): void {
    const { topics, logger } = this.ctx;
    if (!client) {
      // A will kept from an earlier broker run whose client never came back. Wills are checked at
      // CONNECT, but one stored by an older version was not: only an "offline" availability goes out.
      const parsed = topics.parse(packet.topic);
      const availability = (parsed?.kind === "availability" || packet.topic === topics.hubAvailability()) && packet.payload.toString() === "offline";
      if (!availability) {
        logger.warn({ topic: packet.topic }, "dropped a stored last will that is not an availability");
        dropPacket(packet);
      }
      return done(null);
    }
    const closing = (client as unknown as { closed?: boolean }).closed === true; // its will: not rate-limited
    if (isSupersededConnection(this.ctx.aedes(), client) || (closing && this.ctx.connectedElsewhere?.(client.id) === true)) {
      // The host is already back: its old connection's "offline" would overwrite the fresh "online".
      logger.debug({ clientId: client.id, topic: packet.topic }, "dropped the last will of a superseded connection");
      return done(new Error("superseded connection"));
    }
    const user = this.ctx.identities.userOf(client);
    if (user && user.role !== "hub" && !closing && !this.ctx.limits.takePublish(client)) {
      const { perSecond, burst } = this.ctx.limits.limits.publishRate;
      const reason = `over the publish rate (${perSecond}/s, bursts of ${burst}): disconnected`;
      logger.warn({ clientId: client.id, user: user.name, topic: packet.topic }, "mqtt client over its publish rate: disconnected");
      this.ctx.onDenied({ clientId: client.id, user: user.name, address: remoteAddressOf(client), action: "publish", topic: packet.topic, reason });
      return done(new Error(reason)); // Aedes closes the connection; nothing was acknowledged
    }
    if (packet.retain && isHostRequest(topics, packet.topic)) {
      // A retained command would be re-delivered on every reconnect of the host: a command is an event.
      this.deny(client, user, packet, "retained commands and actions are not allowed");
      return this.inOrder(client, done);
    }
    if (user && canPublish(user, packet.topic, topics)) {
      if ((user.role === "operator" || user.role === "hub") && user.name !== INTERNAL_HUB_USER) this.ctx.onOperatorPublish(client, user, packet);
      const stored = packet.retain && packet.qos === 1 && !closing ? this.ctx.storeBeforeAck?.(packet) : undefined;
      return this.inOrder(client, done, stored);
    }
    this.deny(client, user, packet, "not allowed for this role");
    this.inOrder(client, done);
  }

  /**
   * Let a client's publishes on (to their PUBACK and delivery) in the order they came, each after
   * `before` (its store, when it waits for one): MQTT wants PUBACKs and deliveries in order, and
   * one publish waiting for its write must not be overtaken by the next.
   */
  private inOrder(client: Client, done: Done, before?: Promise<void>): void {
    const previous = this.waiting.get(client);
    if (!previous && !before) return done(null);
    const next: Promise<void> = Promise.all([previous, before]).then(
      () => {
        if (this.waiting.get(client) === next) this.waiting.delete(client);
        done(null);
      },
      (err: Error) => {
        if (this.waiting.get(client) === next) this.waiting.delete(client);
        done(err);
      },
    );
    this.waiting.set(client, next);
  }

  /** Acknowledged and sent nowhere, so the client is not disconnected and nothing is delivered or retained. */
  private deny(client: Client, user: AclUser | undefined, packet: PublishPacket, reason: string): void {
    this.ctx.logger.warn({ clientId: client.id, user: user?.name, role: user?.role, topic: packet.topic, reason }, "mqtt publish denied");
    this.ctx.onDenied({ clientId: client.id, user: user?.name ?? "", address: remoteAddressOf(client), action: "publish", topic: packet.topic, reason });
    dropPacket(packet);
  }

  private authorizeSubscribe(client: Client, sub: Subscription, done: (error: Error | null, subscription?: Subscription | null) => void): void {
    const { limits } = this.ctx;
    if (limits.inRefusedSubscribe(sub)) return done(null, null); // reported once per SUBSCRIBE by the broker
    const user = this.ctx.identities.userOf(client);
    if (user && canSubscribe(user, sub.topic, this.ctx.topics)) {
      if (user.role === "hub" || limits.takeSubscription(client, sub.topic)) {
        this.delivery.subscribing(client);
        return done(null, sub);
      }
      const reason = `over the limit of ${limits.limits.maxSubscriptionsPerClient} subscriptions per client`;
      this.ctx.logger.warn({ clientId: client.id, user: user.name, filter: sub.topic }, "mqtt subscription refused: too many");
      this.ctx.onDenied({ clientId: client.id, user: user.name, address: remoteAddressOf(client), action: "subscribe", topic: sub.topic, reason });
      return done(null, null);
    }
    this.ctx.logger.warn({ clientId: client.id, user: user?.name, role: user?.role, filter: sub.topic }, "mqtt subscription denied");
    this.ctx.onDenied({ clientId: client.id, user: user?.name ?? "", address: remoteAddressOf(client), action: "subscribe", topic: sub.topic, reason: "not allowed for this role" });
    done(null, null); // SUBACK 0x80
  }
}
