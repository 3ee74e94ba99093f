/**
 * The embedded MQTT broker: Aedes 1.x with durable persistence, TCP / WebSocket / TLS
 * listeners, and Lockstep's authentication and per-host access control.
 *
 * - Every client authenticates against the CredentialStore (anonymous only when configured,
 *   and then read-only like a viewer).
 * - acl.ts decides every publish, subscribe and delivery: a denied subscription gets the MQTT
 *   failure code 0x80, a denied publish is acknowledged and dropped (like Mosquitto does), and
 *   a message is only delivered to a client allowed to read its topic.
 * - Retained messages, subscriptions and queued QoS 1 messages live in a LevelDB under
 *   <dataDir>/mqtt and survive a restart.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { readFileSync, unwatchFile, watchFile } from "node:fs";
import { mkdir } from "node:fs/promises";
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from "node:http";
import type { Server as HttpsServer } from "node:https";
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from "node:net";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { createServer as createTlsServer, type Server as TlsServer } from "node:tls";
import { Aedes, type AuthenticateError, type Client, type PublishPacket, type Subscription } from "aedes";
import aedesPersistenceLevel from "aedes-persistence-level";
import { Level } from "level";
import type { Logger } from "pino";
import { WebSocketServer, createWebSocketStream } from "ws";
import { Command, decodeJson, LockstepError, Topics } from "../protocol/index.js";
import { canPublish, canReceive, canSubscribe, topicMatches, type AclUser } from "./acl.js";
import type { BrokerConfig } from "./config.js";
import { CredentialStore, safeEqualStrings } from "./credentials.js";

/** Aedes' CONNACK return codes (a const enum in its typings, so spelled out here). */
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

/** How often the credentials file is checked for revoked users. */
const CREDENTIALS_POLL_MS = 1_000;

/** The in-process hub's user name: "$" cannot appear in stored user names, so it never collides. */
/** The hub process's own MQTT user (password random per start, never stored). */
export const INTERNAL_HUB_USER = "$hub";

/** Published denials are re-routed here: no client can subscribe to it, so the message goes nowhere. */
const DROPPED_TOPIC = "$lockstep/dropped";

export interface EmbeddedBrokerPorts {
  tcp: number;
  ws?: number;
  tls?: number;
}

export class BrokerError extends LockstepError {
  override name = "BrokerError";
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, "broker", hint, options);
  }
}

export interface EmbeddedBrokerEvents {
  /** A client authenticated and is connected. */
  clientConnected: [info: { clientId: string; user: string; role: string }];
  clientDisconnected: [info: { clientId: string; user: string }];
  denied: [info: { clientId: string; user: string; action: "connect" | "publish" | "subscribe"; topic?: string; reason: string }];
  /**
   * An operator or hub client published (authorized) to hosts/<h>/commands or hosts/<h>/actions.
   * `user` is who it authenticated as; `requestedBy` is only what the payload claims. For a command,
   * op/id/rolloutId come from a payload that passed the Command schema (`valid` says whether it did);
   * for an action, op is the bare op text when it looks like one.
   */
  hostRequest: [info: HostRequestInfo];
}

export interface HostRequestInfo {
  clientId: string;
  user: string;
  role: string;
  kind: "command" | "action";
  host: string;
  valid: boolean;
  op?: string;
  id?: string;
  requestedBy?: string;
  rolloutId?: string;
}

const ACTION_TEXT = /^[a-z][a-z-]{0,39}$/;

/** What a hosts/<h>/commands or .../actions payload says, for the hostRequest event. */
export function describeHostRequest(kind: "command" | "action", payload: Buffer | string): Pick<HostRequestInfo, "valid" | "op" | "id" | "requestedBy" | "rolloutId"> {
  if (kind === "action") {
    const op = (typeof payload === "string" ? payload : payload.toString("utf8")).trim();
    return ACTION_TEXT.test(op) ? { valid: true, op } : { valid: false };
  }
  const r = decodeJson(Command, payload);
  if (!r.ok) return { valid: false };
  const c = r.value;
  return { valid: true, op: c.op, id: c.id, requestedBy: c.requestedBy, ...(c.rolloutId !== undefined ? { rolloutId: c.rolloutId } : {}) };
}

export interface EmbeddedBrokerOptions {
  /**
   * How often the last wills of clients that were connected when the broker last stopped, and have
   * not come back since, are published (default 60 s; Aedes checks wills of "dead" brokers).
   */
  orphanWillCheckMs?: number;
}

export class EmbeddedBroker extends EventEmitter<EmbeddedBrokerEvents> {
  readonly topics: Topics;
  private aedes?: Aedes;
  private db?: Level<string, Buffer>;
  private persistence?: ReturnType<typeof aedesPersistenceLevel>;
  private store?: CredentialStore;
  private servers: Array<NetServer | HttpServer | TlsServer> = [];
  private detachers: Array<() => void> = [];
  private wss = new WebSocketServer({ noServer: true });
  private boundPorts?: EmbeddedBrokerPorts;
  /** Who each connected client authenticated as. */
  private users = new WeakMap<Client, AclUser & { createdAt?: string }>();
  private forwarded = new WeakMap<Client, Set<string>>();
  /** Per client: topics delivered live since the client last subscribed to them (see notStaleReplay). */
  private liveSinceSubscribe = new WeakMap<Client, Set<string>>();
  /** Connected clients by client id, to refuse a session takeover by a different user. */
  private live = new Map<string, Client>();
  /** Random per start: lets this process's own hub connect without a stored password. */
  private internalHubPassword = "";

  constructor(
    readonly config: BrokerConfig,
    private readonly logger: Logger,
    private readonly options: EmbeddedBrokerOptions = {},
  ) {
    super();
    this.topics = new Topics(config.topicPrefix, config.haPrefix);
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

    this.db = new Level<string, Buffer>(join(config.dataDir, "mqtt"), { valueEncoding: "buffer" });
    try {
      await this.db.open();
    } catch (err) {
      throw new BrokerError(
        `cannot open broker persistence in ${join(config.dataDir, "mqtt")}: ${(err as Error).message}`,
        "is another Lockstep hub running with the same dataDir?",
        { cause: err },
      );
    }
    this.persistence = aedesPersistenceLevel(this.db);
    // Aedes checks for wills of dead brokers every 4 heartbeats; one is dead after 3 without a beat.
    const heartbeatInterval = Math.max(250, Math.round((this.options.orphanWillCheckMs ?? 60_000) / 4));
    this.aedes = await Aedes.createBroker({
      heartbeatInterval,
      persistence: this.persistence,
      authenticate: (client, username, password, done) => this.authenticate(client, username, password, done),
      authorizePublish: (client, packet, done) => this.authorizePublish(client, packet, done),
      authorizeSubscribe: (client, sub, done) => this.authorizeSubscribe(client, sub, done),
      authorizeForward: (client, packet) => {
        const user = this.users.get(client);
        if (!user || !canReceive(user, packet.topic, this.topics)) return null;
        return this.firstDelivery(client, packet) && this.notStaleReplay(client, packet) ? packet : null;
      },
    });
    const aedes = this.aedes;
    // Publishing orphaned wills runs on a timer; a failure there must be logged, not crash the hub.
    (aedes as unknown as NodeJS.EventEmitter).on("error", (err: Error) => log.error({ err: err.message }, "mqtt broker error"));
    publishInOrder(aedes);
    // A new subscription starts its retained replay now: live messages from here on are newer.
    aedes.on("subscribe", (subs, client) => {
      const live = this.liveSinceSubscribe.get(client);
      if (!live) return;
      for (const topic of live) if (subs.some((s) => topicMatches(s.topic, topic))) live.delete(topic);
    });
    aedes.on("clientReady", (client) => {
      this.live.set(client.id, client);
      const user = this.users.get(client);
      log.info({ clientId: client.id, user: user?.name, role: user?.role }, "mqtt client connected");
      this.emit("clientConnected", { clientId: client.id, user: user?.name ?? "", role: user?.role ?? "" });
    });
    aedes.on("clientDisconnect", (client) => {
      if (this.live.get(client.id) === client) this.live.delete(client.id);
      const user = this.users.get(client);
      log.info({ clientId: client.id, user: user?.name }, "mqtt client disconnected");
      this.emit("clientDisconnected", { clientId: client.id, user: user?.name ?? "" });
    });
    aedes.on("clientError", (client, err) => log.debug({ clientId: client.id, err: err.message }, "mqtt client error"));
    aedes.on("connectionError", (_client, err) => log.debug({ err: err.message }, "mqtt connection error"));

    const ports: EmbeddedBrokerPorts = { tcp: 0 };
    const tcp = createNetServer((socket) => this.handleSocket(socket));
    ports.tcp = await this.listen(tcp, config.listeners.tcp.host, config.listeners.tcp.port, "tcp");

    if (config.listeners.ws) {
      const ws = config.listeners.ws;
      const http = createHttpServer((_req, res) => {
        res.writeHead(426, { "content-type": "text/plain" }).end("MQTT over WebSocket: connect with a WebSocket client\n");
      });
      this.attachWebSocket(http, ws.path);
      // This server is ours alone: answer upgrades for any other path instead of leaving them hanging.
      http.on("upgrade", (req: IncomingMessage, socket: Duplex) => {
        if (new URL(req.url ?? "/", "http://localhost").pathname !== ws.path) {
          socket.end(`HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n`);
        }
      });
      ports.ws = await this.listen(http, ws.host, ws.port, "ws");
    }

    if (config.listeners.tls) {
      const tls = config.listeners.tls;
      const server = createTlsServer({
        cert: readConfigFile(tls.certFile, "listeners.tls.certFile"),
        key: readConfigFile(tls.keyFile, "listeners.tls.keyFile"),
        ...(tls.caFile ? { ca: readConfigFile(tls.caFile, "listeners.tls.caFile"), requestCert: true, rejectUnauthorized: true } : {}),
      });
      server.on("secureConnection", (socket) => this.handleSocket(socket));
      server.on("tlsClientError", (err) => log.debug({ err: err.message }, "tls handshake failed"));
      ports.tls = await this.listen(server, tls.host, tls.port, "tls");
    }
    this.boundPorts = ports;
    log.info({ ports, dataDir: config.dataDir, allowAnonymous: config.allowAnonymous }, "embedded mqtt broker started");
  }

  /**
   * Serve MQTT over WebSocket on an existing HTTP(S) server at `path` (the hub's page and
   * Node-RED share one port). Other upgrade requests (e.g. Node-RED's /comms) are left alone.
   * Returns a function that detaches again.
   */
  attachWebSocket(server: HttpServer | HttpsServer, path = "/mqtt"): () => void {
    const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const url = new URL(req.url ?? "/", "http://localhost");
      if (url.pathname !== path) return; // someone else's upgrade
      if (!this.aedes || this.aedes.closed) {
        socket.destroy();
        return;
      }
      (socket as Socket).setNoDelay?.(true);
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        const stream = createWebSocketStream(ws);
        stream.on("error", () => stream.destroy());
        const client = this.aedes?.handle(stream, req);
        if (client) adaptDelivery(client);
      });
    };
    server.on("upgrade", onUpgrade);
    const detach = () => {
      server.off("upgrade", onUpgrade);
      this.detachers = this.detachers.filter((d) => d !== detach);
    };
    this.detachers.push(detach);
    return detach;
  }

  async stop(): Promise<void> {
    const aedes = this.aedes;
    unwatchFile(this.config.credentialsFile, this.onCredentialsChanged);
    for (const detach of [...this.detachers]) detach();
    // Stop accepting first, then close clients (which lets the servers finish closing).
    const closing = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    if (aedes) {
      // The broker going away is not its clients dying: publishing every agent's "offline" will now
      // would leave the whole fleet reading offline across a hub restart (and a subscriber racing
      // an agent's fresh "online" could end up with the stale "offline"). The wills stay persisted:
      // a client that reconnects replaces its own, and the next start publishes the will of one that
      // never comes back (orphanWillCheckMs).
      const clients = (aedes as unknown as { clients: Record<string, { will: unknown }> }).clients;
      for (const client of Object.values(clients)) client.will = null;
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    }
    for (const client of this.wss.clients) client.terminate();
    for (const server of this.servers) (server as HttpServer).closeAllConnections?.();
    await Promise.all(closing);
    this.servers = [];
    if (this.persistence) await this.persistence.destroy().catch(() => undefined);
    else if (this.db) await this.db.close().catch(() => undefined);
    this.aedes = undefined;
    this.persistence = undefined;
    this.db = undefined;
    this.store = undefined;
    this.boundPorts = undefined;
    this.internalHubPassword = "";
    this.live.clear();
    if (aedes) this.logger.info("embedded mqtt broker stopped");
  }

  // ---------------------------------------------------------------------------------------------

  /** Close connections whose user was removed or replaced (e.g. re-added with another role). */
  private readonly onCredentialsChanged = (): void => {
    const store = this.store;
    if (!store) return;
    store.refresh().then(
      () => {
        for (const client of this.live.values()) {
          const user = this.users.get(client);
          if (!user || user.createdAt === undefined) continue; // the internal hub or anonymous
          if (store.get(user.name)?.createdAt === user.createdAt) continue;
          this.logger.warn({ clientId: client.id, user: user.name }, "mqtt client disconnected: its user was removed or replaced");
          client.close();
        }
      },
      (err: Error) => this.logger.error({ err: err.message }, "credential store unreadable; keeping current connections"),
    );
  };

  private handleSocket(socket: Socket): void {
    // Aedes never disables Nagle: without this a QoS 1 round trip takes ~40 ms instead of µs.
    socket.setNoDelay(true);
    if (!this.aedes || this.aedes.closed) {
      socket.destroy();
      return;
    }
    adaptDelivery(this.aedes.handle(socket));
  }

  /**
   * The one job of Aedes' dedupe that we keep (see adaptDelivery): a message matching two
   * of a client's subscriptions (an agent's `hosts/<h>/commands` and `hosts/<h>/#`) goes out once.
   * A fresh client object per connection means re-deliveries after a reconnect are not suppressed.
   */
  private firstDelivery(client: Client, packet: PublishPacket & { brokerId?: string | null; brokerCounter?: number }): boolean {
    if (!packet.brokerId || !packet.brokerCounter) return true; // retained replays carry no id
    let seen = this.forwarded.get(client);
    if (!seen) this.forwarded.set(client, (seen = new Set()));
    const key = `${packet.brokerId}:${packet.brokerCounter}`;
    if (seen.has(key)) return false;
    seen.add(key);
    if (seen.size > RECENT_FORWARDS) seen.delete(seen.values().next().value as string);
    return true;
  }

  /**
   * Aedes reads the retained value for a new subscription from the store while live publishes go on;
   * a live message forwarded meanwhile can reach the client before the (older) retained copy, which
   * then overwrites it: measured 15 of 200 subscriptions to a busy topic end on a stale value, 0 of
   * 200 on Mosquitto. A retained replay (no broker id) of a topic this client already got live since
   * subscribing is at most as new as that message, so it is dropped.
   */
  private notStaleReplay(client: Client, packet: PublishPacket & { brokerId?: string | null }): boolean {
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

  private listen(server: NetServer | HttpServer | TlsServer, host: string, port: number, name: string): Promise<number> {
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once("error", (err) =>
        reject(new BrokerError(`cannot listen for ${name} on ${host}:${port}: ${err.message}`, `change listeners.${name}.port or stop what uses it`, { cause: err })),
      );
      server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
    });
  }

  private authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    const refuse = (code: number, reason: string) => {
      this.logger.warn({ clientId: client.id, user: username, reason }, "mqtt connection refused");
      this.emit("denied", { clientId: client.id, user: username ?? "", action: "connect", reason });
      const err = new Error(reason) as AuthenticateError;
      err.returnCode = code as AuthenticateError["returnCode"];
      done(err, false);
    };
    const accept = (user: AclUser & { createdAt?: string }) => {
      const holder = this.live.get(client.id);
      const holderUser = holder ? this.users.get(holder) : undefined;
      if (holder && !holder.closed && holderUser && holderUser.name !== user.name) {
        // Another user's live session: taking it over would disconnect that client.
        return refuse(NOT_AUTHORIZED, `client id "${client.id}" is in use by another user`);
      }
      // A will is published by the broker later, possibly by the next broker start with no
      // connection left to check: its topic is checked now, like any publish of this user.
      const will = (client as unknown as { _will?: { topic?: string } | null })._will;
      if (will?.topic !== undefined && !canPublish(user, will.topic, this.topics)) {
        return refuse(NOT_AUTHORIZED, `last will on ${will.topic}, which this user may not publish to`);
      }
      this.users.set(client, user);
      done(null, true);
    };

    if (username === undefined || username === "") {
      if (this.config.allowAnonymous) return accept({ name: "anonymous", role: "viewer" });
      return refuse(NOT_AUTHORIZED, "anonymous clients are not allowed");
    }
    const secret = password?.toString("utf8") ?? "";
    if (username === INTERNAL_HUB_USER) {
      return this.internalHubPassword !== "" && safeEqualStrings(secret, this.internalHubPassword)
        ? accept({ name: INTERNAL_HUB_USER, role: "hub" })
        : refuse(BAD_USERNAME_OR_PASSWORD, "bad user name or password");
    }
    this.credentials.verify(username, secret).then(
      (user) => (user ? accept({ name: user.name, role: user.role, createdAt: user.createdAt }) : refuse(BAD_USERNAME_OR_PASSWORD, "bad user name or password")),
      (err: Error) => {
        this.logger.error({ err: err.message }, "credential check failed");
        refuse(3 /* server unavailable */, "credential store unreadable");
      },
    );
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, done: (error?: Error | null) => void): void {
    if (!client) {
      // A will kept from an earlier broker run whose client never came back. Wills are checked at
      // CONNECT, but one stored by an older version was not: only an "offline" availability goes out.
      const parsed = this.topics.parse(packet.topic);
      const availability = (parsed?.kind === "availability" || packet.topic === this.topics.hubAvailability()) && packet.payload.toString() === "offline";
      if (!availability) {
        this.logger.warn({ topic: packet.topic }, "dropped a stored last will that is not an availability");
        packet.topic = DROPPED_TOPIC;
        packet.retain = false;
        packet.payload = Buffer.alloc(0);
      }
      return done(null);
    }
    if (this.isSupersededWill(client)) {
      // The host is already back: a newer connection with this client id is live. Publishing the old
      // connection's "offline" now would overwrite its fresh "online" (the will goes out only after
      // Aedes' asynchronous unsubscribe/persistence work, measured ~10 ms behind the new "online").
      this.logger.debug({ clientId: client.id, topic: packet.topic }, "dropped the last will of a superseded connection");
      return done(new Error("superseded connection"));
    }
    const user = this.users.get(client);
    if (user && canPublish(user, packet.topic, this.topics)) {
      if (user.role === "operator" || user.role === "hub") this.noteHostRequest(client, user, packet);
      return done(null);
    }
    this.logger.warn({ clientId: client.id, user: user?.name, role: user?.role, topic: packet.topic }, "mqtt publish denied");
    this.emit("denied", { clientId: client.id, user: user?.name ?? "", action: "publish", topic: packet.topic, reason: "not allowed for this role" });
    // MQTT 3.1.1 cannot refuse a publish; acknowledge it and send it nowhere, so the client is
    // not disconnected and nothing is delivered or retained.
    packet.topic = DROPPED_TOPIC;
    packet.retain = false;
    packet.payload = Buffer.alloc(0);
    done(null);
  }

  /**
   * Emit hostRequest for an authorized publish to a host's commands or actions topic, except the hub
   * process's own: its senders (FleetClient, the Home Assistant bridge) audit their commands themselves.
   */
  private noteHostRequest(client: Client, user: AclUser, packet: PublishPacket): void {
    if (user.name === INTERNAL_HUB_USER || this.listenerCount("hostRequest") === 0) return;
    const parsed = this.topics.parse(packet.topic);
    if (!parsed || (parsed.kind !== "commands" && parsed.kind !== "actions")) return;
    const kind = parsed.kind === "commands" ? "command" : "action";
    try {
      this.emit("hostRequest", { clientId: client.id, user: user.name, role: user.role, kind, host: parsed.host, ...describeHostRequest(kind, packet.payload) });
    } catch (err) {
      this.logger.error({ err, topic: packet.topic }, "a hostRequest listener failed");
    }
  }

  /** A closing client whose id already belongs to a newer live connection (restart or takeover). */
  private isSupersededWill(client: Client): boolean {
    // Aedes' own registry: a new connection is in it from its CONNECT on, before CONNACK.
    const current = (this.aedes as unknown as { clients: Record<string, Client | undefined> } | undefined)?.clients[client.id];
    return (client as unknown as { closed?: boolean }).closed === true && current !== undefined && current !== client;
  }

  private authorizeSubscribe(client: Client, sub: Subscription, done: (error: Error | null, subscription?: Subscription | null) => void): void {
    const user = this.users.get(client);
    if (user && canSubscribe(user, sub.topic, this.topics)) return done(null, sub);
    this.logger.warn({ clientId: client.id, user: user?.name, role: user?.role, filter: sub.topic }, "mqtt subscription denied");
    this.emit("denied", { clientId: client.id, user: user?.name ?? "", action: "subscribe", topic: sub.topic, reason: "not allowed for this role" });
    done(null, null); // SUBACK 0x80
  }
}

/** How many recent message ids per client are remembered to suppress overlapping-subscription copies. */
const RECENT_FORWARDS = 4096;

/**
 * Aedes acknowledges a QoS 1 PUBLISH before processing it and handles the packets of one socket read
 * concurrently, and each publish waits on LevelDB (retained store, offline queue), so two messages
 * from one client could reach subscribers in the opposite order (measured: command 178 after 179).
 * MQTT wants each publisher's messages delivered in order, so publishes from one client (and those
 * of the broker itself) run one after another. Publishes of different clients still overlap.
 */
function publishInOrder(aedes: Aedes): void {
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
 * Two fixes to how Aedes 1.x hands messages to one client, both measured with LevelDB persistence:
 *
 * 1. Aedes numbers each message (brokerCounter) when its publish starts, and each client drops any
 *    message numbered below the last one it got ("dedupe"). Storing a retained (or queued QoS 1)
 *    message is asynchronous, so a later message can overtake an earlier one, which was then
 *    silently dropped: 1,501 of 3,000 delivered in a burst mixing retained compartments and job
 *    output (aedes issues #955, #994). Renumbering in delivery order breaks persistent sessions
 *    (queued packets are stored under their first number, so PUBACK lookups fail and Aedes drops
 *    the connection). So the "lower number" rule is switched off, and exact duplicates are
 *    suppressed in authorizeForward (EmbeddedBroker.firstDelivery).
 * 2. For a persistent session each QoS 1 delivery first updates the stored packet, and those
 *    writes finish in any order, so a client could get command 123 after 126 (MQTT wants each
 *    topic ordered). Deliveries to such a client are therefore made one after another.
 */
function adaptDelivery(client: Client): void {
  const c = client as unknown as {
    clean: boolean;
    duplicates: Record<string, number>;
    deliverQoS: (packet: unknown, cb: () => void) => void;
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

function readConfigFile(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new BrokerError(`${field}: cannot read ${path}: ${(err as Error).message}`, "check the path and its permissions");
  }
}

/** A loopback address for a listener bound to all interfaces; IPv6 literals in brackets, for URLs. */
export function connectHost(host: string): string {
  if (host === "0.0.0.0" || host === "::" || host === "") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}
