/**
 * Every workaround for Aedes 1.x (and aedes-persistence-level) in one place, so an Aedes upgrade
 * reviews this file: each fix says what it works around, how it was measured, and whether it
 * reaches into Aedes internals (marked INTERNAL: re-check those names on an upgrade).
 *
 * Written against aedes 1.2.0 and aedes-persistence-level 9.2.0.
 */
import type { Socket } from "node:net";
import type { Aedes, Client, PublishPacket, Subscription } from "aedes";
import { topicMatches } from "./acl.js";

/** Aedes' CONNACK return codes (a const enum in its typings, so spelled out here). */
export const ConnackCode = {
  unacceptableProtocol: 1,
  identifierRejected: 2,
  serverUnavailable: 3,
  badUsernameOrPassword: 4,
  notAuthorized: 5,
} as const;

/** A published message as Aedes hands it to authorizeForward (brokerId is null on retained replays). */
type ForwardedPacket = PublishPacket & { brokerId?: string | null; brokerCounter?: number };

/** Aedes never disables Nagle's algorithm: without this a QoS 1 round trip takes ~40 ms instead of µs. */
export function prepareSocket(socket: Socket): void {
  socket.setNoDelay?.(true);
}

/** The last will a connecting client sent (INTERNAL: Aedes keeps it in `_will` until CONNACK). */
export function pendingWill(client: Client): { topic?: string } | null | undefined {
  return (client as unknown as { _will?: { topic?: string } | null })._will;
}

/** INTERNAL: Aedes' registry of connected clients by id; a new connection is in it from its CONNECT on. */
function registeredClients(aedes: Aedes): Record<string, Client | undefined> {
  return (aedes as unknown as { clients: Record<string, Client | undefined> }).clients;
}

/**
 * A closing client whose id already belongs to a newer live connection (agent restart or takeover).
 * Its last will must not go out: it would overwrite the new connection's fresh "online" (Aedes
 * publishes the old connection's will only after its asynchronous unsubscribe/persistence work,
 * measured ~10 ms behind the new "online").
 */
export function isSupersededConnection(aedes: Aedes | undefined, client: Client): boolean {
  const current = aedes ? registeredClients(aedes)[client.id] : undefined;
  return (client as unknown as { closed?: boolean }).closed === true && current !== undefined && current !== client;
}

/**
 * Close Aedes without publishing its clients' wills. The broker going away is not its clients
 * dying: publishing every agent's "offline" would leave the whole fleet reading offline across a
 * hub restart. The wills stay persisted: a client that reconnects replaces its own, and the next
 * start publishes the will of one that never comes back (Aedes' dead-broker will check).
 */
export async function closeKeepingWills(aedes: Aedes): Promise<void> {
  for (const client of Object.values(registeredClients(aedes))) {
    if (client) (client as unknown as { will: unknown }).will = null; // INTERNAL: `will`
  }
  await new Promise<void>((resolve) => aedes.close(() => resolve()));
}

/**
 * Aedes acknowledges a QoS 1 PUBLISH before processing it and handles the packets of one socket read
 * concurrently, and each publish waits on LevelDB (retained store, offline queue), so two messages
 * from one client could reach subscribers in the opposite order (measured: command 178 after 179).
 * MQTT wants each publisher's messages delivered in order, so publishes from one client (and those
 * of the broker itself) run one after another. Publishes of different clients still overlap.
 */
export function publishInOrder(aedes: Aedes): void {
  type Done = (err?: Error) => void;
  const publish = aedes.publish.bind(aedes) as unknown as (packet: PublishPacket, client: Client | null, done: Done) => void;
  const chains = new WeakMap<Client, Promise<void>>();
  let ownChain: Promise<void> = Promise.resolve();
  (aedes as unknown as { publish: (packet: PublishPacket, client?: Client | null | Done, done?: Done) => void }).publish = (packet, client, done) => {
    if (typeof client === "function") [done, client] = [client, null];
    const from = client ?? null;
    const previous = from ? (chains.get(from) ?? Promise.resolve()) : ownChain;
    const next = previous.then(
      () =>
        new Promise<void>((resolve) =>
          publish(packet, from, (err?: Error) => {
            resolve();
            done?.(err);
          }),
        ),
    );
    if (from) chains.set(from, next);
    else ownChain = next;
  };
}

/**
 * Two fixes to how Aedes 1.x hands messages to one client, both measured with LevelDB persistence
 * (apply to every client right after `aedes.handle()`):
 *
 * 1. Aedes numbers each message (brokerCounter) when its publish starts, and each client drops any
 *    message numbered below the last one it got ("dedupe"). Storing a retained (or queued QoS 1)
 *    message is asynchronous, so a later message can overtake an earlier one, which was then
 *    silently dropped: 1,501 of 3,000 delivered in a burst mixing retained compartments and job
 *    output (aedes issues #955, #994). Renumbering in delivery order breaks persistent sessions
 *    (queued packets are stored under their first number, so PUBACK lookups fail and Aedes drops
 *    the connection). So the "lower number" rule is switched off, and exact duplicates are
 *    suppressed by DeliveryGuard.firstDelivery instead.
 * 2. For a persistent session each QoS 1 delivery first updates the stored packet, and those
 *    writes finish in any order, so a client could get command 123 after 126 (MQTT wants each
 *    topic ordered). Deliveries to such a client are therefore made one after another.
 */
export function adaptDelivery(client: Client): void {
  const c = client as unknown as {
    clean: boolean;
    duplicates: Record<string, number>; // INTERNAL
    deliverQoS: (packet: unknown, cb: () => void) => void; // INTERNAL
  };
  c.duplicates = new Proxy(Object.create(null) as Record<string, number>, { get: () => 0, set: () => true });
  const deliver = c.deliverQoS;
  let tail: Promise<void> = Promise.resolve();
  c.deliverQoS = (packet, cb) => {
    if (c.clean) return deliver(packet, cb); // clean sessions write in emit order already
    tail = tail.then(
      () =>
        new Promise<void>((resolve) =>
          deliver(packet, () => {
            resolve();
            cb();
          }),
        ),
    );
  };
}

/** How many recent message ids / topics per client are remembered by DeliveryGuard. */
const RECENT_FORWARDS = 4096;

/**
 * Per-client delivery checks that stand in for what Aedes gets wrong (called from authorizeForward):
 * - firstDelivery: the one job of Aedes' dedupe that we keep (see adaptDelivery): a message matching
 *   two of a client's subscriptions (an agent's `hosts/<h>/commands` and `hosts/<h>/#`) goes out once.
 *   A fresh client object per connection means re-deliveries after a reconnect are not suppressed.
 * - notStaleReplay: Aedes reads the retained value for a new subscription while live publishes go
 *   on; a live message forwarded meanwhile can reach the client before the (older) retained copy,
 *   which then overwrites it: measured 15 of 200 subscriptions to a busy topic ending on a stale
 *   value, 0 of 200 on Mosquitto. A retained replay (no broker id) of a topic this client already
 *   got live since subscribing is at most as new as that message, so it is dropped.
 */
export class DeliveryGuard {
  private forwarded = new WeakMap<Client, Set<string>>();
  /** Per client: topics delivered live since the client last subscribed to them. */
  private liveSinceSubscribe = new WeakMap<Client, Set<string>>();

  /** Should this message go to this client (after the ACL said it may)? */
  admit(client: Client, packet: ForwardedPacket): boolean {
    return this.firstDelivery(client, packet) && this.notStaleReplay(client, packet);
  }

  /** Call on Aedes' "subscribe" event: a new subscription starts its retained replay now. */
  subscribed(subs: Subscription[], client: Client): void {
    const live = this.liveSinceSubscribe.get(client);
    if (!live) return;
    for (const topic of live) if (subs.some((s) => topicMatches(s.topic, topic))) live.delete(topic);
  }

  private firstDelivery(client: Client, packet: ForwardedPacket): boolean {
    if (!packet.brokerId || !packet.brokerCounter) return true; // retained replays carry no id
    let seen = this.forwarded.get(client);
    if (!seen) this.forwarded.set(client, (seen = new Set()));
    const key = `${packet.brokerId}:${packet.brokerCounter}`;
    if (seen.has(key)) return false;
    seen.add(key);
    if (seen.size > RECENT_FORWARDS) seen.delete(seen.values().next().value as string);
    return true;
  }

  private notStaleReplay(client: Client, packet: ForwardedPacket): boolean {
    let live = this.liveSinceSubscribe.get(client);
    if (packet.brokerId) {
      if (!live) this.liveSinceSubscribe.set(client, (live = new Set()));
      live.delete(packet.topic); // re-added last: busy topics are the last to be forgotten
      live.add(packet.topic);
      // Bounded (job topics are new every time); a forgotten mark only matters during a replay.
      if (live.size > RECENT_FORWARDS) live.delete(live.values().next().value as string);
      return true;
    }
    return !(packet.retain && live?.has(packet.topic));
  }
}
