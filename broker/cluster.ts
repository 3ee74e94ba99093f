/**
 * Several embedded broker nodes sharing one state through Redis (config `broker.cluster`), built
 * on Aedes' own cluster parts, not a home-made protocol:
 * - aedes-persistence-redis keeps retained messages, sessions, queued QoS 1 messages and wills in
 *   Redis, so a client reconnecting to another node finds its session and queue there;
 * - mqemitter-redis carries every publish to every node (Redis pub/sub), and with it Aedes' own
 *   $SYS heartbeats (which nodes are alive) and "new client" notes (a client id connecting on one
 *   node closes its older connection on another).
 * What Aedes does not share is Lockstep's own in-memory state, kept in step here over one Redis
 * channel (SYNC_CHANNEL):
 * - each node's retained index (aedes-fixes.ts fixPersistence) learns the retained messages the
 *   other nodes store, and reads them all again after its Redis subscription was interrupted;
 * - session owners (session-owners.ts) live in a Redis hash, and each node learns the others' changes.
 * And two will fixes for a node that dies (ClusterPresence): its clients' last wills, published
 * by a surviving node, must not overwrite the "online" of a client that already reconnected elsewhere.
 */
import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import type { Aedes } from "aedes";
import aedesPersistenceRedis from "aedes-persistence-redis";
import { Redis } from "ioredis";
import mqemitterRedis from "mqemitter-redis";
import type { Logger } from "pino";
import { z } from "zod";
import type { FixedPersistence } from "./aedes-fixes.js";
import type { BrokerCluster } from "./config.js";
import { BrokerError } from "./listeners.js";
import type { OwnerStore, SessionOwners } from "./session-owners.js";

/** The Redis channel of Lockstep's own node-to-node news (not an MQTT topic: mqemitter-redis wraps those in msgpack). */
const SYNC_CHANNEL = "lockstep:broker-sync";
/** The Redis hash of session owners (client id -> user). */
const OWNERS_KEY = "lockstep:session-owners";
/** How long a node waits for Redis at start before it gives up with an error. */
const CONNECT_TIMEOUT_MS = 10_000;

const SyncMessage = z.discriminatedUnion("kind", [
  z.object({ node: z.string(), kind: z.literal("retained"), topic: z.string().min(1), payload: z.string(), qos: z.union([z.literal(0), z.literal(1), z.literal(2)]) }),
  z.object({ node: z.string(), kind: z.literal("owner"), clientId: z.string().min(1), user: z.string().nullable() }),
]);
type SyncMessage = z.output<typeof SyncMessage>;

/** The persistence methods the cluster wraps (aedes-persistence-redis' CallBackPersistence). */
interface ClusterPersistence {
  storeRetained(packet: { topic: string; payload: Buffer; qos: 0 | 1 | 2 }): Promise<void>;
  streamWill(brokers: Record<string, number>): Readable;
  delWill(client: { id: string; brokerId: string }): Promise<unknown>;
  destroy(): Promise<void>;
}

/** A stored last will as the persistence streams it. */
interface StoredWill {
  clientId: string;
  brokerId: string;
  topic: string;
}

/** The URL without its password, for logs and errors. */
function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable URL)";
  }
}

/**
 * aedes-persistence-redis (11.2.2, and 12.0.0 alike) sends some LREM and RPUSH without awaiting
 * them (will and queue bookkeeping), and mqemitter-redis closes with a QUIT it does not await. When
 * the connection closes under them (a node stopping, Redis gone), their rejection has no handler,
 * and an unhandled rejection ends a broker process. Each such promise gets a handler that logs; a
 * caller that awaits it still sees the error.
 */
export function handleUnawaited(conn: Redis, commands: ReadonlyArray<"lrem" | "rpush" | "quit">, log: Logger): Redis {
  for (const name of commands) {
    const send = conn[name].bind(conn) as (...args: unknown[]) => Promise<unknown>;
    (conn as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
      const reply = send(...args);
      reply.catch((err: Error) => log.debug({ err: err.message, command: name }, "redis command failed (its caller did not wait for it)"));
      return reply;
    };
  }
  return conn;
}

/**
 * Which client ids are connected on which node, from Aedes' `$SYS/<node>/new/clients` and
 * `$SYS/<node>/disconnect/clients` notes that every node sees.
 */
class ClusterPresence {
  private readonly nodeOf = new Map<string, string>();

  connected(node: string, clientId: string): void {
    this.nodeOf.set(clientId, node);
  }

  disconnected(node: string, clientId: string): void {
    if (this.nodeOf.get(clientId) === node) this.nodeOf.delete(clientId);
  }

  /** The node `clientId` was last seen connecting to, if it has not left since. */
  nodeOfClient(clientId: string): string | undefined {
    return this.nodeOf.get(clientId);
  }
}

export class BrokerClusterNode {
  readonly presence = new ClusterPresence();
  private fixed?: FixedPersistence;
  private owners?: SessionOwners;
  private closing = false;

  private constructor(
    readonly nodeId: string,
    /** Commands: the owners hash and publishing the node's news. */
    private readonly redis: Redis,
    /** Subscribed to SYNC_CHANNEL. */
    private readonly sub: Redis,
    /** Aedes' persistence (hand it to Aedes after fixPersistence). */
    readonly persistence: ClusterPersistence,
    /** Aedes' message bus (its `mq` option). */
    readonly mq: ReturnType<typeof mqemitterRedis>,
    private readonly log: Logger,
  ) {}

  /** Connect to Redis (failing with a clear error when it cannot be reached) and build the parts. */
  static async open(config: BrokerCluster, log: Logger): Promise<BrokerClusterNode> {
    const where = redactRedisUrl(config.redisUrl);
    const redis = new Redis(config.redisUrl, { lazyConnect: true, connectTimeout: CONNECT_TIMEOUT_MS, maxRetriesPerRequest: 3 });
    redis.on("error", (err: Error) => log.warn({ err: err.message, redis: where }, "redis connection error"));
    try {
      await redis.connect();
    } catch (err) {
      redis.disconnect();
      throw new BrokerError(`cannot reach Redis at ${where}: ${(err as Error).message}`, "start redis-server, or fix broker.cluster.redisUrl (LOCKSTEP_REDIS_URL)", { cause: err });
    }
    // Ready before use: a SUBSCRIBE sent while ioredis still runs its ready check (INFO) puts the
    // connection in subscriber mode, the check fails, and the reconnect lost the first messages.
    const connection = async () => {
      const c = redis.duplicate();
      c.on("error", (err: Error) => log.warn({ err: err.message, redis: where }, "redis connection error"));
      await c.connect();
      return c;
    };
    // The first connection publishes: MQTT messages (mqemitter-redis) and this node's news alike.
    const mq = mqemitterRedis({ pubConn: handleUnawaited(redis, ["quit"], log), subConn: handleUnawaited(await connection(), ["quit"], log), concurrency: 100, matchEmptyLevels: true });
    const persistence = aedesPersistenceRedis({ conn: handleUnawaited(await connection(), ["lrem", "rpush"], log) }) as unknown as ClusterPersistence;
    const node = new BrokerClusterNode(config.nodeId ?? randomUUID(), redis, await connection(), persistence, mq, log);
    node.listenForPresence();
    log.info({ redis: where, nodeId: node.nodeId }, "broker cluster node: state in Redis");
    return node;
  }

  /** The session owners, in Redis: this node's changes are announced to the others. */
  ownerStore(): OwnerStore {
    return {
      put: async (clientId, user) => {
        await this.redis.hset(OWNERS_KEY, clientId, user);
        this.announce({ node: this.nodeId, kind: "owner", clientId, user });
      },
      del: async (clientId) => {
        await this.redis.hdel(OWNERS_KEY, clientId);
        this.announce({ node: this.nodeId, kind: "owner", clientId, user: null });
      },
      iterator: () => this.ownerEntries(),
    };
  }

  /**
   * Keep this node's retained index and session owners in step with the other nodes'. Call after
   * fixPersistence (whose storeRetained this wraps) and before Aedes starts.
   */
  async attach(fixed: FixedPersistence, owners: SessionOwners): Promise<void> {
    this.fixed = fixed;
    this.owners = owners;
    const store = this.persistence.storeRetained.bind(this.persistence);
    // After the write: another node that hears of it can already read it from Redis. Published on
    // the connection mqemitter-redis publishes on, so the news leaves before the message itself.
    this.persistence.storeRetained = async (packet) => {
      await store(packet);
      this.announce({ node: this.nodeId, kind: "retained", topic: packet.topic, payload: Buffer.from(packet.payload).toString("base64"), qos: packet.qos });
    };
    this.sub.on("message", (_channel: string, text: string) => this.hear(text));
    let subscribedBefore = false;
    this.sub.on("ready", () => {
      if (!subscribedBefore) return;
      // ioredis subscribes again by itself; what the others stored meanwhile was missed.
      this.log.warn({ nodeId: this.nodeId }, "redis subscription restored: reading retained messages and session owners again");
      void this.catchUp();
    });
    await this.sub.subscribe(SYNC_CHANNEL);
    subscribedBefore = true;
  }

  /**
   * Wills fixes; call once Aedes runs:
   * - a will a surviving node publishes for a dead node's client is skipped (and deleted) when that
   *   client has reconnected (here or on another live node): Aedes publishes every dead node's
   *   will, and aedes-persistence-redis keys wills by node, so a reconnect elsewhere does not
   *   replace it. Its "offline" would overwrite the host's fresh "online".
   */
  guardWills(aedes: Aedes): void {
    const persistence = this.persistence;
    const streamWill = persistence.streamWill.bind(persistence);
    const registry = aedes as unknown as { clients: Record<string, { closed?: boolean } | undefined>; brokers: Record<string, number> };
    const streamed = new WeakSet<object>();
    this.publishWillsAsOwn(aedes, streamed);
    persistence.streamWill = (brokers) => {
      const wills = streamWill(brokers) as AsyncIterable<StoredWill>;
      const log = this.log;
      const presence = this.presence;
      return Readable.from(
        (async function* () {
          for await (const will of wills) {
            const local = registry.clients[will.clientId];
            const elsewhere = presence.nodeOfClient(will.clientId);
            const back = (local !== undefined && !local.closed) || (elsewhere !== undefined && elsewhere !== will.brokerId && registry.brokers[elsewhere] !== undefined);
            if (!back) {
              streamed.add(will);
              yield will;
              continue;
            }
            log.info({ clientId: will.clientId, deadNode: will.brokerId }, "dropped the last will of a client that reconnected to another node");
            await persistence.delWill({ id: will.clientId, brokerId: will.brokerId }).catch(() => undefined);
          }
        })(),
      );
    };
  }

  /**
   * A dead node's will goes out as a new message of this node. Aedes publishes the stored will
   * itself, which keeps the dead node's `brokerId` and takes this node's next `brokerCounter`: that
   * pair can equal a message the dead node sent earlier, and a client that got that one (the hub,
   * a page) dropped the will as a duplicate (DeliveryGuard): its host never went "offline" (about
   * one run in four of the cluster test). The will object itself keeps its `brokerId`: Aedes
   * deletes the will by it after publishing.
   */
  private publishWillsAsOwn(aedes: Aedes, wills: WeakSet<object>): void {
    type Publish = (packet: object, client?: unknown, done?: unknown) => void;
    const target = aedes as unknown as { publish: Publish };
    const publish = target.publish.bind(aedes);
    target.publish = (packet, client, done) => {
      if (!wills.has(packet)) return publish(packet, client, done);
      const { brokerId: _deadNode, brokerCounter: _itsCounter, ...will } = packet as { brokerId?: string; brokerCounter?: number };
      publish(will, client, done);
    };
  }

  /** Has `clientId` connected to another node since this node's connection of it began? (Its will must not go out.) */
  connectedElsewhere(clientId: string): boolean {
    const node = this.presence.nodeOfClient(clientId);
    return node !== undefined && node !== this.nodeId;
  }

  /** Close the Redis connections this node opened itself (Aedes closes mq, the persistence is destroyed by the broker). */
  async close(): Promise<void> {
    this.closing = true;
    this.sub.disconnect();
  }

  // ---------------------------------------------------------------------------------------------

  private listenForPresence(): void {
    const note = (kind: "new" | "disconnect") => (packet: { topic: string; payload?: unknown }, done: () => void) => {
      const node = packet.topic.split("/")[1] ?? "";
      const clientId = String(packet.payload ?? "");
      if (kind === "new") this.presence.connected(node, clientId);
      else this.presence.disconnected(node, clientId);
      done();
    };
    // On the bus before Aedes' own handlers: a node closing a client another node took over
    // already knows where it went when the old connection's will comes up.
    this.mq.on("$SYS/+/new/clients", note("new"));
    this.mq.on("$SYS/+/disconnect/clients", note("disconnect"));
  }

  private announce(message: SyncMessage): void {
    if (this.closing) return;
    this.redis.publish(SYNC_CHANNEL, JSON.stringify(message)).catch((err: Error) => this.log.error({ err: err.message, kind: message.kind }, "cannot tell the other broker nodes"));
  }

  private hear(text: string): void {
    let message: SyncMessage;
    try {
      message = SyncMessage.parse(JSON.parse(text));
    } catch {
      this.log.warn({ channel: SYNC_CHANNEL }, "ignored a malformed broker-sync message");
      return;
    }
    if (message.node === this.nodeId) return;
    if (message.kind === "retained") this.fixed?.learnRetained({ topic: message.topic, payload: Buffer.from(message.payload, "base64"), qos: message.qos });
    else this.owners?.learn(message.clientId, message.user ?? undefined);
  }

  private async catchUp(): Promise<void> {
    try {
      await this.fixed?.reloadRetained();
      await this.owners?.replaceFrom(this.ownerEntries());
    } catch (err) {
      this.log.error({ err: (err as Error).message }, "cannot read the cluster's state again after a Redis interruption");
    }
  }

  private async *ownerEntries(): AsyncGenerator<[string, string]> {
    for await (const pairs of this.redis.hscanStream(OWNERS_KEY, { count: 500 }) as AsyncIterable<string[]>) {
      for (let i = 0; i + 1 < pairs.length; i += 2) yield [pairs[i]!, pairs[i + 1]!];
    }
  }
}
