/**
 * The embedded MQTT broker: Aedes 1.x with durable persistence, put together from one file per
 * concern:
 * - listeners.ts: TCP / WebSocket / TLS listeners and MQTT over WebSocket on the hub's HTTP server;
 * - auth.ts: who may connect (the CredentialStore; anonymous only when configured, read-only);
 * - access.ts: acl.ts applied to every publish, subscribe and delivery;
 * - host-requests.ts: which user asked a host to do something (audit attribution);
 * - aedes-fixes.ts: every workaround for Aedes itself.
 * Retained messages, subscriptions and queued QoS 1 messages live in a LevelDB under
 * <dataDir>/mqtt and survive a restart; with `cluster` they live in Redis, shared with the other
 * broker nodes (cluster.ts).
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { unwatchFile, watchFile } from "node:fs";
import { mkdir } from "node:fs/promises";
import type { IncomingMessage, Server as HttpServer } from "node:http";
import type { Server as HttpsServer } from "node:https";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { Aedes, type Client, type PublishPacket } from "aedes";
import aedesPersistenceLevel from "aedes-persistence-level";
import { Level } from "level";
import type { Logger } from "pino";
import { Topics } from "../protocol/index.js";
import { BrokerAccess } from "./access.js";
import type { AclUser } from "./acl.js";
import { EmptyClientIds, adaptDelivery, limitPackets, closeKeepingWills, fixPersistence, publishInOrder, type FixablePersistence, type FixedPersistence, type QueueCap } from "./aedes-fixes.js";
import type { StorageReporter } from "../protocol/storage.js";
import { BrokerClusterNode } from "./cluster.js";
import { ClientIdentities, INTERNAL_HUB_USER, authenticate, remoteAddressOf } from "./auth.js";
import type { BrokerConfig } from "./config.js";
import { CredentialStore } from "./credentials.js";
import { hostRequestOf, type HostRequestInfo } from "./host-requests.js";
import { ClientLimits } from "./client-limits.js";
import { LoginBackoff } from "./login-backoff.js";
import { probeLevel, reopenIfStuck } from "./level-reopen.js";
import { SessionCache } from "./session-cache.js";
import { SessionOwners } from "./session-owners.js";
import { BrokerError, BrokerListeners, connectHost, type EmbeddedBrokerPorts } from "./listeners.js";

export { INTERNAL_HUB_USER } from "./auth.js";
export { describeHostRequest, type HostRequestInfo } from "./host-requests.js";
export { BrokerError, connectHost, type EmbeddedBrokerPorts } from "./listeners.js";

/** How often the credentials file is checked for revoked users. */
const CREDENTIALS_POLL_MS = 1_000;

export interface EmbeddedBrokerEvents {
  /** A client authenticated and is connected. */
  clientConnected: [info: { clientId: string; user: string; role: string }];
  clientDisconnected: [info: { clientId: string; user: string }];
  /** A refused login (action "connect") or a publish/subscription the ACL or a limit refused. */
  denied: [info: BrokerDenial];
  /**
   * An operator or hub client published (authorized) to hosts/<h>/commands or hosts/<h>/actions.
   * `user` is who it authenticated as; `requestedBy` is only what the payload claims. For a command,
   * op/id/rolloutId come from a payload that passed the Command schema (`valid` says whether it did);
   * for an action, op is the bare op text when it looks like one.
   */
  hostRequest: [info: HostRequestInfo];
}

/** What the broker has carried since it started (the hub's metrics read these when scraped). */
export interface BrokerStats {
  /** Clients connected now. */
  clients: number;
  /**
   * Messages clients published (a will published at a disconnect included); the broker's own
   * $SYS messages and the wills it publishes for clients of an earlier run are not counted.
   */
  messages: number;
  /** Payload bytes of those messages. */
  bytes: number;
  /** Messages not queued for a persistent session because it held limits.maxQueuedMessages (one per session). */
  queueDropped: number;
}

export interface BrokerDenial {
  clientId: string;
  user: string;
  /** The client's remote address. */
  address: string;
  action: "connect" | "publish" | "subscribe";
  topic?: string;
  reason: string;
}

export interface EmbeddedBrokerOptions {
  /** Failed-login backoff (default: LoginBackoff's defaults); the hub shares it with the API and the editor. */
  loginBackoff?: LoginBackoff;
  /**
   * How often the last wills of clients that were connected when the broker last stopped, and have
   * not come back since, are published (default 60 s; Aedes checks wills of "dead" brokers).
   */
  orphanWillCheckMs?: number;
  /** Where the LevelDB's writes report (the hub's storage health): a full disk is a state, not a crash. */
  storage?: StorageReporter;
}

export class EmbeddedBroker extends EventEmitter<EmbeddedBrokerEvents> {
  readonly topics: Topics;
  private aedes?: Aedes;
  private db?: Level<string, Buffer>;
  private persistence?: { destroy(): Promise<void> };
  private cluster?: BrokerClusterNode;
  private fixed?: FixedPersistence;
  private sessions?: SessionOwners;
  private store?: CredentialStore;
  private readonly endpoints: BrokerListeners;
  private boundPorts?: EmbeddedBrokerPorts;
  private readonly identities = new ClientIdentities();
  private readonly access: BrokerAccess;
  private readonly limits: ClientLimits;
  private published = { messages: 0, bytes: 0, queueDropped: 0 };
  /** When a dropped queued message was last logged (at most one line a minute; the counter has them all). */
  private queueDropLoggedAt = -Infinity;
  /** Failed logins per user+address and per address; the hub's API and editor use the same. */
  readonly logins: LoginBackoff;
  /** Random per start: lets this process's own hub connect without a stored password. */
  private internalHubPassword = "";

  constructor(
    readonly config: BrokerConfig,
    private readonly logger: Logger,
    private readonly options: EmbeddedBrokerOptions = {},
  ) {
    super();
    this.logins = options.loginBackoff ?? new LoginBackoff(config.limits.loginBackoff);
    this.topics = new Topics(config.topicPrefix, config.haPrefix);
    this.endpoints = new BrokerListeners((stream, req) => this.accept(stream, req), logger);
    this.limits = new ClientLimits(config.limits);
    this.access = new BrokerAccess({
      aedes: () => this.aedes,
      topics: this.topics,
      identities: this.identities,
      limits: this.limits,
      logger,
      onDenied: (info) => this.emit("denied", info),
      onOperatorPublish: (client, user, packet) => this.noteHostRequest(client, user, packet),
      connectedElsewhere: (clientId) => this.cluster?.connectedElsewhere(clientId) ?? false,
      storeBeforeAck: (packet) => (Buffer.isBuffer(packet.payload) ? this.fixed?.storeBeforeAck({ topic: packet.topic, payload: packet.payload, qos: packet.qos }) : undefined) ?? Promise.resolve(),
    });
  }

  get credentials(): CredentialStore {
    if (!this.store) throw new BrokerError("broker not started", "call start() first");
    return this.store;
  }

  /** Ports actually bound (useful with port 0). */
  get ports(): EmbeddedBrokerPorts {
    if (!this.boundPorts) throw new BrokerError("broker not started", "call start() first");
    return this.boundPorts;
  }

  /** mqtt:// URL of the TCP listener, with a loopback address when it listens on all interfaces. */
  get url(): string {
    return `mqtt://${connectHost(this.config.listeners.tcp.host)}:${this.ports.tcp}`;
  }

  /** ws:// URL of the standalone WebSocket listener, if configured. */
  get wsUrl(): string | undefined {
    const ws = this.config.listeners.ws;
    if (!ws || this.ports.ws === undefined) return undefined;
    return `ws://${connectHost(ws.host)}:${this.ports.ws}${ws.path}`;
  }

  /** Clients connected now, and the messages and payload bytes clients published since the start. */
  stats(): BrokerStats {
    return { clients: this.aedes?.connectedClients ?? 0, ...this.published };
  }

  /**
   * Connection details for the hub running in this process: full access, valid until stop().
   * The password is random per start and never written anywhere.
   */
  hubConnection(): { url: string; username: string; password: string } {
    return { url: this.url, username: INTERNAL_HUB_USER, password: this.internalHubPassword };
  }

  async start(): Promise<void> {
    if (this.aedes || this.store) throw new BrokerError("broker already started");
    try {
      await this.startParts();
    } catch (err) {
      await this.stop(); // release whatever was opened: ports, the database, the file watch
      throw err;
    }
  }

  private async startParts(): Promise<void> {
    const { config } = this;
    const log = this.logger;
    this.internalHubPassword = randomBytes(32).toString("base64url");
    await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
    this.store = await CredentialStore.open(config.credentialsFile);
    // Revoking a user (`lockstep users remove`) also disconnects its live clients.
    watchFile(config.credentialsFile, { interval: CREDENTIALS_POLL_MS }, this.onCredentialsChanged);

    const persistence = config.cluster ? await this.openCluster(config.cluster) : await this.openLevel();
    // Aedes checks for wills of dead brokers every 4 heartbeats; one is dead after 3 without a beat.
    const heartbeatInterval = Math.max(250, Math.round((this.options.orphanWillCheckMs ?? config.cluster?.willCheckMs ?? 60_000) / 4));
    const emptyClientIds = new EmptyClientIds();
    const authContext = {
      credentials: () => this.credentials,
      allowAnonymous: config.allowAnonymous,
      internalHubPassword: () => this.internalHubPassword,
      topics: this.topics,
      identities: this.identities,
      emptyClientIds,
      backoff: this.logins,
      sessions: () => {
        if (!this.sessions) throw new BrokerError("broker not started");
        return this.sessions;
      },
      logger: log,
      onRefused: (info: { clientId: string; user: string; address: string; reason: string }) => this.emit("denied", { ...info, action: "connect" }),
    };
    this.aedes = await Aedes.createBroker({
      heartbeatInterval,
      persistence,
      ...(this.cluster ? { id: this.cluster.nodeId, mq: this.cluster.mq } : {}),
      preConnect: emptyClientIds.preConnect,
      authenticate: (client, username, password, done) => authenticate(authContext, client, username, password, done),
      ...this.access.hooks(),
    });
    const aedes = this.aedes;
    // Publishing orphaned wills runs on a timer; a failure there must be logged, not crash the hub.
    (aedes as unknown as NodeJS.EventEmitter).on("error", (err: Error) => log.error({ err: err.message }, "mqtt broker error"));
    publishInOrder(aedes);
    this.cluster?.guardWills(aedes);
    aedes.on("subscribe", (subs, client) => this.access.subscribed(subs, client));
    aedes.on("unsubscribe", (filters, client) => this.access.unsubscribed(filters, client));
    // Client publishes only: the broker's own ($SYS heartbeats, new/disconnected clients) have none.
    aedes.on("publish", (packet, client) => {
      if (!client) return;
      this.published.messages++;
      this.published.bytes += Buffer.byteLength(packet.payload);
    });
    aedes.on("clientReady", (client) => {
      this.identities.connected(client);
      const user = this.identities.userOf(client);
      log.info({ clientId: client.id, user: user?.name, role: user?.role }, "mqtt client connected");
      this.emit("clientConnected", { clientId: client.id, user: user?.name ?? "", role: user?.role ?? "" });
    });
    aedes.on("clientDisconnect", (client) => {
      this.identities.disconnected(client);
      const user = this.identities.userOf(client);
      log.info({ clientId: client.id, user: user?.name }, "mqtt client disconnected");
      this.emit("clientDisconnected", { clientId: client.id, user: user?.name ?? "" });
    });
    aedes.on("clientError", (client, err) => log.debug({ clientId: client.id, err: err.message }, "mqtt client error"));
    aedes.on("connectionError", (_client, err) => log.debug({ err: err.message }, "mqtt connection error"));

    this.boundPorts = await this.endpoints.open(config.listeners);
    log.info({ ports: this.boundPorts, dataDir: config.dataDir, allowAnonymous: config.allowAnonymous }, "embedded mqtt broker started");
  }

  /**
   * After a storage fault: store what only memory holds, or probe the LevelDB (reports to
   * options.storage). In a cluster the retained messages are stored again in Redis.
   */
  async retryStorage(): Promise<void> {
    const db = this.db;
    if (!this.fixed) return;
    // A LevelDB whose background write failed keeps failing until reopened (level-reopen.ts).
    if (db) await reopenIfStuck(db, join(this.config.dataDir, "mqtt"), this.logger).catch((err: unknown) => this.logger.warn({ err }, "cannot reopen the broker's LevelDB"));
    await this.fixed.retryStorage(async () => {
      if (db) await probeLevel(db);
    });
  }

  /** Single node: Aedes' state in a LevelDB under <dataDir>/mqtt. */
  private async openLevel(): Promise<FixablePersistence> {
    const dir = join(this.config.dataDir, "mqtt");
    this.db = new Level<string, Buffer>(dir, { valueEncoding: "buffer" });
    try {
      await this.db.open();
    } catch (err) {
      throw new BrokerError(`cannot open broker persistence in ${dir}: ${(err as Error).message}`, "is another Lockstep hub running with the same dataDir?", { cause: err });
    }
    this.sessions = await SessionOwners.open(this.db, this.logger);
    // Sessions' state read from memory, writes grouped into one batch per turn (session-cache.ts).
    const cache = await SessionCache.load(this.db);
    const persistence = aedesPersistenceLevel(cache) as unknown as FixablePersistence & { destroy(): Promise<void> };
    this.persistence = persistence;
    const queueCap: QueueCap = { max: this.config.limits.maxQueuedMessages, queued: (clientId) => cache.queuedCount(clientId), dropped: (ids, topic) => this.queueDropped(ids, topic) };
    this.fixed = fixPersistence(persistence, this.options.storage, queueCap);
    return persistence;
  }

  /** A message was not queued for sessions at limits.maxQueuedMessages: counted, logged at a bounded rate. */
  private queueDropped(clientIds: string[], topic: string): void {
    this.published.queueDropped += clientIds.length;
    const now = Date.now();
    if (now - this.queueDropLoggedAt < 60_000) return;
    this.queueDropLoggedAt = now;
    this.logger.warn(
      { clientIds: clientIds.slice(0, 10), topic, max: this.config.limits.maxQueuedMessages, droppedSinceStart: this.published.queueDropped },
      "mqtt persistent session queue full (limits.maxQueuedMessages): new messages are not queued for it until it reconnects and acknowledges (logged at most once a minute)",
    );
  }

  /** One node of several: Aedes' state in Redis, shared with the other nodes (cluster.ts). */
  private async openCluster(config: NonNullable<BrokerConfig["cluster"]>): Promise<FixablePersistence> {
    const cluster = await BrokerClusterNode.open(config, this.logger);
    this.cluster = cluster;
    this.persistence = cluster.persistence;
    this.sessions = await SessionOwners.load(cluster.ownerStore(), this.logger);
    const persistence = cluster.persistence as unknown as FixablePersistence;
    this.fixed = fixPersistence(persistence, this.options.storage);
    await cluster.attach(this.fixed, this.sessions);
    return persistence;
  }

  /**
   * Serve MQTT over WebSocket on an existing HTTP(S) server at `path` (the hub's page and
   * Node-RED share one port). Other upgrade requests (e.g. Node-RED's /comms) are left alone.
   * Returns a function that detaches again.
   */
  attachWebSocket(server: HttpServer | HttpsServer, path = "/mqtt"): () => void {
    return this.endpoints.attachWebSocket(server, path);
  }

  async stop(): Promise<void> {
    const aedes = this.aedes;
    unwatchFile(this.config.credentialsFile, this.onCredentialsChanged);
    await this.endpoints.close(async () => {
      if (aedes) await closeKeepingWills(aedes);
    });
    if (this.persistence) await this.persistence.destroy().catch(() => undefined);
    else if (this.db) await this.db.close().catch(() => undefined);
    await this.cluster?.close();
    this.cluster = undefined;
    this.aedes = undefined;
    this.persistence = undefined;
    this.fixed = undefined;
    this.sessions = undefined;
    this.db = undefined;
    this.store = undefined;
    this.boundPorts = undefined;
    this.internalHubPassword = "";
    this.identities.clear();
    if (aedes) this.logger.info("embedded mqtt broker stopped");
  }

  // ---------------------------------------------------------------------------------------------

  /** A new connection from any listener. */
  private accept(stream: Duplex, req?: IncomingMessage): boolean {
    if (!this.aedes || this.aedes.closed) return false;
    const client = this.aedes.handle(stream, req);
    adaptDelivery(client);
    const { maxPacketBytes, maxFiltersPerSubscribe } = this.config.limits;
    const denied = (action: BrokerDenial["action"], reason: string) => {
      const user = this.identities.userOf(client);
      this.logger.warn({ clientId: client.id, user: user?.name, reason }, "mqtt packet refused");
      this.emit("denied", { clientId: client.id ?? "", user: user?.name ?? "", address: remoteAddressOf(client), action, reason });
    };
    limitPackets(client, {
      maxPacketBytes,
      maxFiltersPerSubscribe,
      onTooLarge: (length, cmd) => {
        const action = !this.identities.userOf(client) ? "connect" : cmd === "subscribe" ? "subscribe" : "publish";
        denied(action, `a ${cmd} packet of ${length} bytes, over the limit of ${maxPacketBytes} (limits.maxPacketBytes): disconnected`);
      },
      onTooManyFilters: (subs) => {
        this.limits.refuseFilters(subs);
        denied("subscribe", `a SUBSCRIBE with ${subs.length} filters, over the limit of ${maxFiltersPerSubscribe} (limits.maxFiltersPerSubscribe): all refused`);
      },
    });
    return true;
  }

  /** Close connections whose user was removed or replaced (e.g. re-added with another role). */
  private readonly onCredentialsChanged = (): void => {
    const store = this.store;
    if (!store) return;
    store.refresh().then(
      () => {
        for (const client of this.identities.liveClients()) {
          const user = this.identities.userOf(client);
          if (!user || user.createdAt === undefined) continue; // the internal hub or anonymous
          if (store.get(user.name)?.createdAt === user.createdAt) continue;
          this.logger.warn({ clientId: client.id, user: user.name }, "mqtt client disconnected: its user was removed or replaced");
          client.close();
        }
        // A removed user's persistent sessions no longer hold their client ids.
        this.sessions?.forgetUsersExcept((name) => name.startsWith("$") || name === "anonymous" || store.get(name) !== undefined);
      },
      (err: Error) => this.logger.error({ err: err.message }, "credential store unreadable; keeping current connections"),
    );
  };

  /**
   * Emit hostRequest for an authorized publish to a host's commands or actions topic, except the hub
   * process's own: its senders (FleetView, the Home Assistant bridge) audit their commands themselves.
   */
  private noteHostRequest(client: Client, user: AclUser, packet: PublishPacket): void {
    if (this.listenerCount("hostRequest") === 0) return;
    const info = hostRequestOf(this.topics, { clientId: client.id, user: user.name, role: user.role }, packet.topic, packet.payload);
    if (!info) return;
    try {
      this.emit("hostRequest", info);
    } catch (err) {
      this.logger.error({ err, topic: packet.topic }, "a hostRequest listener failed");
    }
  }
}
