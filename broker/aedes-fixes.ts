/**
 * Every workaround for Aedes 1.x (and aedes-persistence-level) in one place, so an Aedes upgrade
 * reviews this file (and session-cache.ts, which hard-codes aedes-persistence-level 9.2's key layout): each fix says what it works around, how it was measured, and whether it
 * reaches into Aedes internals (marked INTERNAL: re-check those names on an upgrade).
 *
 * Written against aedes 1.2.0, aedes-persistence-level 9.2.0 and aedes-persistence-redis 11.2.2 (cluster).
 */
import type { Socket } from "node:net";
import { Readable, type Duplex } from "node:stream";
import type { Aedes, Client, PublishPacket, Subscription } from "aedes";
import { IGNORE_STORAGE, storageErrorCode, type StorageReporter } from "../protocol/storage.js";
import { topicMatches } from "./acl.js";
import { RetainedIndex } from "./retained-index.js";

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
 * MQTT 3.1.1 (3.1.3-8): a zero-length client id with a persistent session gets CONNACK 2. Aedes
 * accepts it and invents an id ("aedes_<uuid>"), so by authenticate time the empty id is gone:
 * its preConnect hook notes such clients for the CONNECT check to refuse.
 */
export class EmptyClientIds {
  private persistentWithoutId = new WeakSet<Client>();

  /** Aedes' preConnect hook. */
  readonly preConnect = (client: Client, packet: { clientId?: string; clean?: boolean }, done: (err: Error | null, ok: boolean) => void): void => {
    if ((packet.clientId ?? "") === "" && packet.clean === false) this.persistentWithoutId.add(client);
    done(null, true);
  };

  /** Did this client ask for a persistent session without a client id? */
  persistentWithoutClientId(client: Client): boolean {
    return this.persistentWithoutId.has(client);
  }
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

function remember(seen: Set<string>, key: string): void {
  seen.add(key);
  if (seen.size > RECENT_FORWARDS) seen.delete(seen.values().next().value as string);
}

/**
 * The publish each retained index entry came from: its payload Buffer (Aedes hands the same Buffer
 * to every live delivery of that publish), by the entry's own payload (a replay carries that one).
 */
const retainedOrigins = new WeakMap<Buffer, Buffer>();

/**
 * Per-client delivery checks that stand in for what Aedes gets wrong (called from authorizeForward):
 * - firstDelivery: the one job of Aedes' dedupe that we keep (see adaptDelivery): a message matching
 *   two of a client's subscriptions (an agent's `hosts/<h>/commands` and `hosts/<h>/#`) goes out once.
 *   A fresh client object per connection means re-deliveries after a reconnect are not suppressed.
 *   A retained replay counts as a delivery of the publish that stored it, in either order: a
 *   subscription made while that publish is still being stored and forwarded gets it once. Replay
 *   first: the live copy is dropped. Live first (mqemitter registers the subscription at once, Aedes'
 *   "subscribe" event and the replay come later, so subscribed() has already forgotten the live
 *   topic for notStaleReplay): the replay of that same publish is dropped. Only live copies sent
 *   while a subscription is being made count (subscribing() to subscribed()): a later SUBSCRIBE of
 *   the same topic gets its retained replay as MQTT wants, though the client once got it live.
 * - notStaleReplay: Aedes reads the retained value for a new subscription while live publishes go
 *   on; a live message forwarded meanwhile can reach the client before the (older) retained copy,
 *   which then overwrites it: measured 15 of 200 subscriptions to a busy topic ending on a stale
 *   value, 0 of 200 on Mosquitto. A retained replay (no broker id) of a topic this client already
 *   got live since subscribing is at most as new as that message, so it is dropped.
 */
export class DeliveryGuard {
  private forwarded = new WeakMap<Client, Set<string>>();
  /** Per client: the payloads (publishes, see retainedOrigins) it already got as a retained replay. */
  private replayedOrigins = new WeakMap<Client, WeakSet<Buffer>>();
  /** Per client: payloads of publishes it got live while its last subscription was being made. */
  private liveOrigins = new WeakMap<Client, WeakSet<Buffer>>();
  /** Clients between a granted subscription (authorizeSubscribe) and Aedes' "subscribe" event. */
  private makingSubscription = new WeakSet<Client>();
  /** Per client: topics delivered live since the client last subscribed to them. */
  private liveSinceSubscribe = new WeakMap<Client, Set<string>>();

  /** Should this message go to this client (after the ACL said it may)? */
  admit(client: Client, packet: ForwardedPacket): boolean {
    return this.firstDelivery(client, packet) && this.notStaleReplay(client, packet);
  }

  /** Call when a subscription is granted (authorizeSubscribe): Aedes delivers live on it from now on. */
  subscribing(client: Client): void {
    if (this.makingSubscription.has(client)) return;
    this.makingSubscription.add(client);
    this.liveOrigins.set(client, new WeakSet()); // earlier subscriptions' marks are done with
  }

  /** Call on Aedes' "subscribe" event: a new subscription starts its retained replay now. */
  subscribed(subs: Subscription[], client: Client): void {
    this.makingSubscription.delete(client);
    const live = this.liveSinceSubscribe.get(client);
    if (!live) return;
    for (const topic of live) if (subs.some((s) => topicMatches(s.topic, topic))) live.delete(topic);
  }

  private firstDelivery(client: Client, packet: ForwardedPacket): boolean {
    // Origins are marked by their payload Buffer (a weak key); a payload of another type has none.
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : undefined;
    if (!packet.brokerId || !packet.brokerCounter) {
      // A retained replay carries no id, but the publish it came from may still be on its way to
      // this client's new subscription (Aedes acknowledges and stores before it delivers): that
      // live copy would be a second delivery of one message.
      const origin = payload && retainedOrigins.get(payload);
      if (origin) {
        if (this.liveOrigins.get(client)?.has(origin)) return false; // got that publish live already
        let replayed = this.replayedOrigins.get(client);
        if (!replayed) this.replayedOrigins.set(client, (replayed = new WeakSet()));
        replayed.add(origin);
      }
      return true;
    }
    if (payload && this.replayedOrigins.get(client)?.delete(payload)) return false;
    let seen = this.forwarded.get(client);
    if (!seen) this.forwarded.set(client, (seen = new Set()));
    const key = `${packet.brokerId}:${packet.brokerCounter}`;
    if (seen.has(key)) return false;
    remember(seen, key);
    if (payload && this.makingSubscription.has(client)) this.liveOrigins.get(client)?.add(payload);
    return true;
  }

  private notStaleReplay(client: Client, packet: ForwardedPacket): boolean {
    let live = this.liveSinceSubscribe.get(client);
    if (packet.brokerId) {
      if (!live) this.liveSinceSubscribe.set(client, (live = new Set()));
      // Re-added last: busy topics are the last to be forgotten. Bounded (job topics are new every
      // time); a forgotten mark only matters during a replay.
      live.delete(packet.topic);
      remember(live, packet.topic);
      return true;
    }
    return !(packet.retain && live?.has(packet.topic));
  }
}

// -------------------------------------------------------------------------------------------------
// The persistence (aedes-persistence-level, or aedes-persistence-redis for a cluster: both keep the
// same API and the same scans). Aedes 1.2 calls it promise-style (no callbacks).

/** What Aedes hands the persistence and gets back from a retained stream (only the fields it reads). */
interface StoredPacket {
  cmd: "publish";
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: true;
}

/** The client fields the persistence looks at (Aedes passes its Client, or `{ id }` for a stored session). */
interface PersistenceClient {
  id: string;
  clean?: boolean;
}

/** A QoS 1 delivery as Aedes hands it to the outgoing store (a PUBACK has the message id only). */
interface QueuedPacket {
  messageId?: number;
  brokerId?: string;
  brokerCounter?: number;
}

/** The methods of aedes-persistence-level's CallBackPersistence that these fixes wrap. */
export interface FixablePersistence {
  setup(broker: unknown): Promise<void>;
  storeRetained(packet: { topic: string; payload: Buffer; qos: 0 | 1 | 2 }): Promise<void>;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
  outgoingUpdate(client: PersistenceClient, packet: QueuedPacket): Promise<void>;
  outgoingClearMessageId(client: PersistenceClient, packet: QueuedPacket): Promise<unknown>;
  addSubscriptions(client: PersistenceClient, subs: unknown[]): Promise<void>;
  removeSubscriptions(client: PersistenceClient, topics: string[]): Promise<unknown>;
  putWill(client: PersistenceClient, packet: unknown): Promise<unknown>;
  outgoingEnqueueCombi(subs: unknown[], packet: unknown): Promise<unknown>;
  delWill(client: { id: string; brokerId?: string }): Promise<unknown>;
}

/** What fixPersistence gives the broker: the retained index and the retry of a storage fault. */
export interface FixedPersistence {
  retained: RetainedIndex<StoredPacket>;
  /**
   * Store again what a failed write left only in memory (retained messages), or, with nothing
   * left, write and delete a probe key; reports the outcome. The hub's storage health calls it
   * while faulted.
   */
  retryStorage(probe: () => Promise<void>): Promise<void>;
  /**
   * A retained message another broker node stored (cluster: broker/cluster.ts): the index learns it
   * as if stored here (an empty payload deletes).
   */
  learnRetained(packet: { topic: string; payload: Buffer; qos: 0 | 1 | 2 }): void;
  /** Read every retained message from the store again (after missing other nodes' news); changes meanwhile are kept. */
  reloadRetained(): Promise<void>;
  /**
   * Store a retained QoS 1 publish now, from authorizePublish, so that its PUBACK (which Aedes sends
   * before it publishes, fix 5) follows the write; Aedes' own store of that packet is then skipped.
   */
  storeBeforeAck(packet: { topic: string; payload: Buffer; qos: 0 | 1 | 2 }): Promise<void>;
}

/**
 * Mosquitto's `max_queued_messages` for one persistent session (fix 6 of fixPersistence). Without it
 * a session that never comes back (any logged-in user can make one: a viewer subscribed to
 * lockstep/v1/# at QoS 1) grew the queue on disk, and the SessionCache's copy in the heap, by every
 * host change, and every start read it all back in.
 */
export interface QueueCap {
  /** Messages one session may have queued (not yet acknowledged); past it a new message is not queued for it. */
  max: number;
  /** Messages queued now for this client id (SessionCache.queuedCount). */
  queued(clientId: string): number;
  /** A message was not queued for these client ids (over the cap): count and report it. */
  dropped(clientIds: string[], topic: string): void;
}

/**
 * Fix aedes-persistence-level where profiles of 1,000-10,000 simulated hosts put the broker's time:
 *
 * 1. Retained messages are found by topic, not by scan: upstream walks and msgpack-decodes every
 *    retained message once per filter of every SUBSCRIBE (one agent's subscribe: 190 ms at 1,000
 *    hosts, 2 s at 10,000; connecting N hosts O(N²)). An in-memory RetainedIndex, loaded once at
 *    start and updated in the order Aedes stores, answers the retained replay; LevelDB (or Redis)
 *    stays the durable copy. In a cluster each node's index also learns what the other nodes store
 *    (learnRetained, fed by broker/cluster.ts).
 * 2. No LevelDB lookup per PUBACK of a clean session: upstream looks the message id up in the
 *    outgoing store although a clean session's QoS 1 deliveries are never stored (2 s of 7 s
 *    main-thread time at 10,000 changes). Only ids this process stored for a clean client (its
 *    left-over queue, sent once after CONNECT) are looked up.
 * 3. A SUBSCRIBE's filters are stored once: Aedes' subscribe handler calls addSubscriptions with the
 *    packet's whole filter list once per filter (1,000 filters: 2.7 GB; 10,000: 11.6 GB and the hub
 *    died). The first call stores the list; the others of the same packet share its promise.
 * 4. A failed write (full or read-only data dir: LEVEL_IO_ERROR … No space left on device) is a
 *    storage fault, reported to `storage`, not a crash: Aedes' CONNECT handler deletes a reconnecting
 *    client's stored will with `delWill(client).finally(…)`, so a failed delete was an unhandled
 *    rejection; a failed will write refused the connection. Both now report and go on (the will
 *    is kept in memory by Aedes for this connection). A retained message that cannot be stored is
 *    still delivered and kept in the index, and stored by retryStorage() once the disk can be
 *    written: live state must keep flowing while the disk is full (the hub says why on hub/storage).
 *    Likewise a QoS 1 message Aedes cannot queue for the persistent sessions subscribed to it is
 *    still delivered to those connected (Aedes dropped it and disconnected its publisher: on a full
 *    disk the hub could send no command at all); an offline one misses it (reported). Delivering it
 *    to a connected persistent session first updates the queued copy with its message id, which
 *    then found "no such packet" (or could not write): Aedes dropped the message and disconnected
 *    the subscriber (measured on a full tmpfs: the agent never got its `test` command). Such an
 *    update, and a PUBACK's delete that cannot be written, are reported and the delivery goes on
 *    live (a copy that stays queued is sent again after a reconnect: QoS 1 allows a duplicate).
 *    Other failed writes are reported and passed on to Aedes as before.
 * 5. A retained QoS 1 message is on disk before it is acknowledged: Aedes writes the PUBACK first
 *    and stores afterwards, so a broker stopped in between lost a message its publisher had been
 *    told was safe (the window grew with write batching, broker/session-cache.ts). The broker's
 *    authorizePublish stores it (storeBeforeAck) and lets Aedes go on once written; Aedes' own
 *    store of that packet is skipped. A write that fails is fix 4's case (kept in the index, retried).
 * 6. With `queueCap`, a session's queue of QoS 1 messages is capped (Mosquitto's max_queued_messages):
 *    a message is not queued for a session that already holds `max`; the queued ones are kept. Like
 *    Mosquitto the new message is the one dropped: the kept ones are the start of what the session
 *    missed, in order, and dropping old ones would delete stored packets a delivery may be updating.
 *    A connected session over the cap (it acknowledges nothing) still gets the message live, as in
 *    fix 4. Not applied in a cluster (aedes-persistence-redis keeps the queues in Redis, outside the
 *    hub's heap, and counting them would cost a Redis round trip per message): left out there.
 */
export function fixPersistence(persistence: FixablePersistence, storage: StorageReporter = IGNORE_STORAGE, queueCap?: QueueCap): FixedPersistence {
  const index = new RetainedIndex<StoredPacket>();
  const p = persistence;
  const original = {
    setup: p.setup.bind(p),
    storeRetained: p.storeRetained.bind(p),
    createRetainedStream: p.createRetainedStream.bind(p),
    outgoingUpdate: p.outgoingUpdate.bind(p),
    outgoingClearMessageId: p.outgoingClearMessageId.bind(p),
    addSubscriptions: p.addSubscriptions.bind(p),
    removeSubscriptions: p.removeSubscriptions.bind(p),
    outgoingEnqueueCombi: p.outgoingEnqueueCombi.bind(p),
    putWill: p.putWill.bind(p),
    delWill: p.delWill.bind(p),
  };
  /** Topics whose retained value (or deletion) is in the index but not in LevelDB. */
  const unstored = new Set<string>();
  const where = (what: string) => `broker persistence (${what})`;
  /**
   * A write went through: the broker's storage is ok again only once no retained message waits for
   * retryStorage() (else a subscribe that succeeds would clear the fault, the hub would stop retrying,
   * and those retained messages would live in memory only).
   */
  const settled = () => {
    if (unstored.size === 0) storage.ok();
  };
  /** The write's outcome goes to `storage`; a failure is passed on to Aedes. */
  const reported = async <T>(what: string, write: () => Promise<T>): Promise<T> => {
    try {
      const r = await write();
      settled();
      return r;
    } catch (err) {
      storage.failed(err, where(what));
      throw err;
    }
  };
  /** Like reported(), but a failure ends here (with `fallback`): for writes Aedes must not fail on. */
  const tolerated = async <T>(what: string, write: () => Promise<T>, fallback: T): Promise<T> => {
    try {
      return await reported(what, write);
    } catch {
      return fallback;
    }
  };

  /** While a reload reads the store: every change to the index, applied again on the reloaded one. */
  let changesDuringReload: Array<{ topic: string; entry: StoredPacket | undefined }> | undefined;
  const put = (topic: string, entry: StoredPacket | undefined) => {
    if (entry) index.set(entry);
    else index.delete(topic);
    changesDuringReload?.push({ topic, entry });
  };
  const load = async (into: RetainedIndex<StoredPacket>) => {
    for await (const stored of original.createRetainedStream("#") as AsyncIterable<StoredPacket>) into.set(retainedCopy(stored));
  };

  // Aedes insists on an AsyncFunction here (it checks constructor.name).
  p.setup = async function setup(broker: unknown): Promise<void> {
    await original.setup(broker);
    await load(index);
  };

  /** Retained publishes stored before their PUBACK (storeBeforeAck): Aedes' own store of them is skipped. */
  const storedBeforeAck = new WeakMap<Buffer, string>();
  p.storeRetained = async (packet) => {
    if (storedBeforeAck.get(packet.payload) === packet.topic) {
      storedBeforeAck.delete(packet.payload);
      return;
    }
    const entry = packet.payload.length === 0 ? undefined : retainedCopy(packet);
    put(packet.topic, entry);
    try {
      await original.storeRetained(packet);
    } catch (err) {
      // Delivered and kept in the index all the same; stored by retryStorage() (fix 4).
      unstored.add(packet.topic);
      storage.failed(err, where("retained messages"));
      return;
    }
    unstored.delete(packet.topic);
    settled();
  };
  p.putWill = (client, packet) => tolerated("last wills", () => original.putWill(client, packet), undefined);
  p.delWill = (client) => tolerated("last wills", () => original.delWill(client), undefined);
  /** Messages (brokerId:brokerCounter) that could not be queued for persistent sessions: delivered live only. */
  const unqueued = new Set<string>();
  const queueKey = (packet: QueuedPacket) => `${packet.brokerId}:${packet.brokerCounter}`;
  const markUnqueued = (packet: QueuedPacket) => remember(unqueued, queueKey(packet));
  /** The subscriptions whose session has room for one more queued message (fix 6). */
  const withRoom = (subs: unknown[], packet: unknown): unknown[] => {
    if (!queueCap) return subs;
    const full: string[] = [];
    const kept = subs.filter((sub) => {
      const clientId = (sub as { clientId: string }).clientId;
      if (queueCap.queued(clientId) < queueCap.max) return true;
      full.push(clientId);
      return false;
    });
    if (full.length > 0) {
      markUnqueued(packet as QueuedPacket); // a connected one's delivery finds no queued copy: live only
      queueCap.dropped(full, (packet as { topic: string }).topic);
    }
    return kept;
  };
  p.outgoingEnqueueCombi = async (subs, packet) => {
    if (subs.length === 0) return original.outgoingEnqueueCombi(subs, packet);
    const kept = withRoom(subs, packet);
    if (kept.length === 0) return undefined;
    try {
      return await reported("queued messages", () => original.outgoingEnqueueCombi(kept, packet));
    } catch {
      markUnqueued(packet as QueuedPacket);
      return undefined;
    }
  };
  /** A write of a live delivery to a persistent session (message id update, PUBACK delete) that must not stop it. */
  const deliveryWrite = async <T>(packet: QueuedPacket, write: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await write();
    } catch (err) {
      if (packet.brokerId !== undefined && unqueued.has(queueKey(packet))) return undefined; // never queued (reported then)
      if (storageErrorCode(err) === "unknown") throw err; // not a write failure: Aedes handles it as before
      storage.failed(err, where("queued messages"));
      return undefined;
    }
  };
  p.removeSubscriptions = (client, topics) => reported("subscriptions", () => original.removeSubscriptions(client, topics));

  const matching = function* (patterns: string[]): Generator<StoredPacket> {
    for (const pattern of patterns) yield* index.match(pattern);
  };
  p.createRetainedStream = (pattern) => Readable.from(matching([pattern]));
  p.createRetainedStreamCombi = (patterns) => Readable.from(matching(patterns));

  const storedForClean = new WeakMap<PersistenceClient, Set<number>>();
  p.outgoingUpdate = async (client, packet) => {
    if (client.clean === true && packet.messageId !== undefined) {
      let ids = storedForClean.get(client);
      if (!ids) storedForClean.set(client, (ids = new Set()));
      ids.add(packet.messageId);
    }
    if (client.clean === true) return original.outgoingUpdate(client, packet);
    await deliveryWrite(packet, () => original.outgoingUpdate(client, packet));
  };
  p.outgoingClearMessageId = async (client, packet) => {
    if (client.clean === true && (packet.messageId === undefined || !storedForClean.get(client)?.delete(packet.messageId))) return undefined;
    return deliveryWrite(packet, () => original.outgoingClearMessageId(client, packet));
  };

  const storing = new WeakMap<unknown[], Promise<void>>();
  p.addSubscriptions = (client, subs) => {
    let stored = storing.get(subs);
    if (!stored) storing.set(subs, (stored = reported("subscriptions", () => original.addSubscriptions(client, subs))));
    return stored;
  };

  const retryStorage = async (probe: () => Promise<void>): Promise<void> => {
    try {
      for (const topic of [...unstored]) {
        const entry = index.get(topic);
        await original.storeRetained(entry ?? { topic, payload: Buffer.alloc(0), qos: 0 });
        // Only when no newer write of the topic failed meanwhile (that one is retried next time).
        if (index.get(topic) === entry) unstored.delete(topic);
      }
      if (unstored.size === 0) await probe();
    } catch (err) {
      storage.failed(err, where("retry"));
      return;
    }
    settled();
  };
  return {
    retained: index,
    storeBeforeAck: async (packet) => {
      await p.storeRetained(packet);
      storedBeforeAck.set(packet.payload, packet.topic);
    },
    retryStorage,
    learnRetained: (packet) => put(packet.topic, packet.payload.length === 0 ? undefined : retainedCopy(packet)),
    reloadRetained: async () => {
      if (changesDuringReload) return; // one reload at a time: the running one keeps what changes meanwhile
      changesDuringReload = [];
      try {
        const fresh = new RetainedIndex<StoredPacket>();
        await load(fresh);
        for (const { topic, entry } of changesDuringReload) {
          if (entry) fresh.set(entry);
          else fresh.delete(topic);
        }
        index.replaceWith(fresh);
      } finally {
        changesDuringReload = undefined;
      }
    },
  };
}

/** A compact copy of a retained packet: the payload copied so it pins no larger socket buffer. */
function retainedCopy(packet: { topic: string; payload: Buffer | string; qos: 0 | 1 | 2 }): StoredPacket {
  const payload = Buffer.from(packet.payload);
  if (Buffer.isBuffer(packet.payload)) retainedOrigins.set(payload, packet.payload);
  return { cmd: "publish", topic: packet.topic, payload, qos: packet.qos, retain: true };
}

/**
 * One WebSocket frame per MQTT packet. mqtt-packet corks the stream while it writes a packet's
 * pieces (fixed header, length, topic, payload ...), but the stream `ws` makes has no `_writev`,
 * so each piece went out as its own frame (~6 per packet; Mosquitto sends 1). With `_writev` the
 * corked pieces leave as one frame.
 */
export function oneFramePerPacket(stream: Duplex): Duplex {
  const s = stream as Duplex & {
    _write(chunk: Buffer, encoding: BufferEncoding, cb: (err?: Error | null) => void): void;
    _writev?(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void;
  };
  s._writev = (chunks, cb) => s._write(Buffer.concat(chunks.map((c) => c.chunk)), "buffer" as BufferEncoding, cb);
  return stream;
}

/** The mqtt-packet parser Aedes gives each client (INTERNAL: `client._parser`, mqtt-packet 9). */
interface ClientParser {
  packet: { cmd?: string; length: number };
  _parseLength(): boolean;
  _emitError(err: Error): void;
  prependListener(event: "packet", listener: (packet: { cmd: string; subscriptions?: Array<{ topic: string }> }) => void): void;
}

export interface PacketLimits {
  maxPacketBytes: number;
  maxFiltersPerSubscribe: number;
  /** A packet's announced length is over the limit: the connection is closed before its body is read. */
  onTooLarge(length: number, cmd: string): void;
  /** A SUBSCRIBE carries too many filters: these subscriptions are to be refused (SUBACK 0x80). */
  onTooManyFilters(subscriptions: ReadonlyArray<{ topic: string }>): void;
}

/**
 * Limits Aedes 1.x does not have (apply right after `aedes.handle()`, before any byte is parsed):
 * - packet size: mqtt-packet buffers a whole packet before parsing it, so one 256 MiB PUBLISH cost
 *   the hub over 1 GB, before or after CONNECT. The length in the fixed header is checked as soon
 *   as it is read; a larger packet is a parser error, which makes Aedes close the connection.
 * - filters per SUBSCRIBE: seen when the packet is parsed, before Aedes handles it.
 */
export function limitPackets(client: Client, limits: PacketLimits): void {
  const parser = (client as unknown as { _parser?: ClientParser })._parser;
  if (!parser || typeof parser._parseLength !== "function" || typeof parser._emitError !== "function") {
    throw new Error("aedes-fixes limitPackets: Aedes' client._parser (mqtt-packet) changed; re-check this fix");
  }
  const parseLength = parser._parseLength.bind(parser);
  parser._parseLength = () => {
    if (!parseLength()) return false;
    if (parser.packet.length <= limits.maxPacketBytes) return true;
    const cmd = parser.packet.cmd ?? "unknown";
    limits.onTooLarge(parser.packet.length, cmd);
    parser._emitError(new Error(`${cmd} packet of ${parser.packet.length} bytes is over the limit of ${limits.maxPacketBytes}`));
    return false;
  };
  parser.prependListener("packet", (packet) => {
    if (packet.cmd === "subscribe" && (packet.subscriptions?.length ?? 0) > limits.maxFiltersPerSubscribe) limits.onTooManyFilters(packet.subscriptions!);
  });
}
