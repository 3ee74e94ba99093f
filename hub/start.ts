/**
 * `lockstep hub`: the one process a fleet needs. It runs (or connects to) the MQTT broker, serves
 * the fleet page, the Node-RED editor (/admin), the HTTP API (/api/, Node-RED http-in nodes),
 * Prometheus metrics (/metrics) and MQTT over WebSocket (/mqtt) on one HTTP port, bridges the fleet into Home Assistant, and
 * announces itself on hub/availability (retained, with an "offline" last will).
 *
 * startHub is a list of named steps (hub/steps.ts), each paired with its stop: config check →
 * broker → first-start users → hub MQTT client → audit log → process guard → hub services (hub/services.ts) →
 * metrics (hub/metrics.ts, served on GET /metrics) → HTTP server → Node-RED → HA bridge
 * → upstream MQTT bridge (if configured); then it prints where everything is. Stop runs them
 * backwards. The command line is hub/cli.ts.
 */
import { writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import type { Logger } from "pino";
import { AuditEvent, decodeJson, LockstepError, readSecretFile, Topics, type StorageHealthState } from "../protocol/index.js";
import { EmbeddedBroker, connectHost, type BrokerDenial, type HostRequestInfo } from "../broker/embedded.js";
import { LoginBackoff } from "../broker/login-backoff.js";
import { CredentialStore } from "../broker/credentials.js";
import { loadGitHubConfig, REDACT_PATHS } from "../github/config.js";
import { publishHubStatus } from "./status.js";
import { HomeAssistantBridge } from "../ha/bridge.js";
import { createDashboardHandler } from "../dashboard/server.js";
import { fleetStreamHandler } from "./fleet-stream.js";
import type { LockstepSettings } from "../node-red-nodes/lib/settings.js";
import { AuditLog, hostRequestEvent } from "./audit-log.js";
import { RefusalAudit, type LoginRefusal } from "./refusal-audit.js";
import { MqttBridge, redactUrl } from "./upstream-bridge.js";
import { loadHubConfig, type HubConfig } from "./config.js";
import { basicAuthMiddleware, createEmbeddedNodeRed, type EmbeddedNodeRed, type RequestHandler } from "./node-red.js";
import { HubMetrics, metricsHandler } from "./metrics.js";
import { LastSwitchFile } from "./last-switch-file.js";
import { apiBodyParser, apiErrorHandler, apiNotFound, type ErrorHandler } from "./api.js";
import { mountHubApi } from "./api-routes.js";
import { boxed, listenLines } from "./banner.js";
import { buildHubServices, type HubServices } from "./services.js";
import { startSteps, type StartStep } from "./steps.js";
import { startProcessGuard } from "./process-guard.js";
import { StorageHealth, storageTransitionEvent } from "./storage-health.js";
import { createHubLogger } from "./logger.js";

export const OPERATOR_USER = "admin";
export const HUB_USER = "hub";

export interface HubUrls {
  page: string;
  editor: string;
  api: string;
  mqtt: string;
  mqttWs: string;
}

export interface RunningHub {
  config: HubConfig;
  urls: HubUrls;
  httpPort: number;
  mqttPort?: number;
  stop(): Promise<void>;
}

class HubError extends LockstepError {
  override name = "HubError";
  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, "hub", hint, options);
  }
}

/**
 * First start: no users at all → an operator (password printed once, stored hashed) and a hub user
 * (password kept in a 0600 file in the data dir: it is what the hub uses on an external broker
 * generated from this store).
 */
async function ensureInitialUsers(store: CredentialStore, dataDir: string, print: (line: string) => void): Promise<void> {
  if (store.list().length > 0) return;
  const operator = await store.add(OPERATOR_USER, "operator");
  const hub = await store.add(HUB_USER, "hub");
  writeFileSync(join(dataDir, "hub-password"), hub.password + "\n", { mode: 0o600 });
  // Shown once, so it must not scroll by unnoticed among the log lines.
  for (const line of boxed([
    `First start: created the operator "${OPERATOR_USER}" with password ${operator.password}`,
    "Write it down: it is shown only now and stored hashed.",
    "Log in to the fleet page and the Node-RED editor with it; add users with `lockstep users add`.",
  ]))
    print(line);
}

async function connectHubClient(url: string, username: string, password: string, topics: Topics): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, {
    username,
    password,
    clientId: `lockstep-hub-${process.pid}-${Date.now().toString(36)}`,
    protocolVersion: 4,
    reconnectPeriod: 2000,
    will: { topic: topics.hubAvailability(), payload: Buffer.from("offline"), retain: true, qos: 1 },
  });
  await client.publishAsync(topics.hubAvailability(), "online", { retain: true, qos: 1 });
  // After a broker restart the retained "online" may be gone: say it again on every reconnect.
  client.on("connect", () => void client.publishAsync(topics.hubAvailability(), "online", { retain: true, qos: 1 }).catch(() => undefined));
  return client;
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(new HubError(`cannot listen for HTTP on ${host}:${port}: ${err.message}`, "is another hub or Node-RED using the port? set http.port or LOCKSTEP_HTTP_PORT"));
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

export interface StartHubOptions {
  config: HubConfig;
  log?: Logger;
  /** Where the startup lines (URLs, first password) go; default stdout. */
  print?: (line: string) => void;
  /** Keep serving after an unhandled rejection (logged, audited). The `lockstep hub` process sets it; a test runner must not. */
  guardProcess?: boolean;
  testing?: StartHubTesting;
}

/** What the start steps build, step by step; later steps read what earlier ones left here. */
interface HubParts {
  broker?: EmbeddedBroker;
  users?: CredentialStore;
  mqttConn?: { url: string; username: string; password: string };
  client?: MqttClient;
  auditLog?: AuditLog;
  /** Refused logins and denied publishes/subscribes, rate-limited into the audit log. */
  refusals?: RefusalAudit;
  logins?: LoginBackoff;
  server?: Server;
  nodeRed?: EmbeddedNodeRed;
  httpPort?: number;
  services?: HubServices;
  metrics?: HubMetrics;
}

/** Test hooks of startHub (not configuration). */
export interface StartHubTesting {
  /** How often failed writers retry while the data dir cannot be written (default 5 s). */
  storageRetryMs?: number;
}

export async function startHub(opts: StartHubOptions): Promise<RunningHub> {
  const { config } = opts;
  const print = opts.print ?? ((line: string) => process.stdout.write(line + "\n"));
  const log = opts.log ?? createHubLogger({ level: config.logLevel, redact: REDACT_PATHS });
  const topics = new Topics(config.broker.topicPrefix, config.broker.haPrefix);
  const parts: HubParts = {};
  const need = <K extends keyof HubParts>(key: K): NonNullable<HubParts[K]> => {
    const v = parts[key];
    if (v === undefined) throw new HubError(`internal: start step order: ${String(key)} is not there yet`);
    return v as NonNullable<HubParts[K]>;
  };
  // Embedded: the page connects to this server's /mqtt. External: to the broker's own WebSocket.
  const externalWs = config.broker.external && /^wss?:/.test(config.broker.external.url) ? config.broker.external.url : undefined;
  const pageMqttUrl = config.pageMqttUrl ?? externalWs;
  let base = "";
  const startedAt = new Date();
  let github: ReturnType<typeof loadGitHubConfig> | undefined;
  // Every durable writer (broker, audit log, rollouts, automatic.json, last-switch.json) reports here.
  const storage = new StorageHealth({
    dataDir: config.dataDir,
    log: log.child({ component: "storage" }),
    publish: async (state) => void (await parts.client?.publishAsync(topics.hubStorage(), JSON.stringify(state), { qos: 1, retain: true })),
    ...(opts.testing?.storageRetryMs !== undefined ? { retryEveryMs: opts.testing.storageRetryMs } : {}),
  });

  const steps: StartStep[] = [
    {
      name: "config check",
      // Fail fast on a bad GitHub section or an unreadable bridge password, before anything runs.
      async start() {
        github = config.github ? loadGitHubConfig(config.github) : undefined;
        if (config.bridge?.passwordFile !== undefined) readSecretFile(config.bridge.passwordFile, "bridge password");
      },
    },
    {
      name: "broker",
      async start() {
        if (config.broker.external) {
          parts.users = await CredentialStore.open(config.broker.credentialsFile);
          const ext = config.broker.external;
          parts.mqttConn = { url: ext.url, username: ext.username, password: readSecretFile(ext.passwordFile, "external broker password") };
          return;
        }
        const broker: EmbeddedBroker = new EmbeddedBroker(config.broker, log.child({ component: "broker" }), {
          storage: storage.writer("broker", () => broker.retryStorage()),
        });
        await broker.start();
        parts.broker = broker;
        parts.users = broker.credentials;
        parts.mqttConn = broker.hubConnection();
        return () => broker.stop();
      },
    },
    {
      name: "first-start users",
      async start() {
        await ensureInitialUsers(need("users"), config.dataDir, print);
      },
    },
    {
      name: "hub mqtt client",
      async start() {
        const conn = need("mqttConn");
        const client = await connectHubClient(conn.url, conn.username, conn.password, topics);
        parts.client = client;
        const stop = async () => {
          await client.publishAsync(topics.hubAvailability(), "offline", { retain: true, qos: 1 }).catch(() => undefined);
          await client.endAsync();
        };
        await publishHubStatus(client, topics, { ...(github ? { github } : {}), ...(parts.broker ? { mqttPort: parts.broker.ports.tcp } : {}), startedAt }).catch(async (err: unknown) => {
          await stop();
          throw err;
        });
        return stop;
      },
    },
    {
      name: "storage health",
      // Retained hub/storage from here on; each ok ↔ fault transition is an audit event (kept in
      // memory by the audit log until the file can be written).
      async start() {
        const client = need("client");
        await storage.publishNow();
        const onTransition = (state: StorageHealthState, previous: StorageHealthState) => {
          client.publishAsync(topics.events(), JSON.stringify(storageTransitionEvent(state, previous)), { qos: 1 }).catch((err: unknown) => log.error({ err }, "cannot publish an audit event"));
        };
        storage.on("transition", onTransition);
        // A broker without persistence (or one restarted) has lost the retained state.
        const onConnect = () => void storage.publishNow();
        client.on("connect", onConnect);
        return async () => {
          client.off("connect", onConnect);
          storage.off("transition", onTransition);
          storage.stop();
        };
      },
    },
    {
      name: "audit log",
      // Everything on fleet/events (rollout engine, FleetView's commands, Home Assistant's, and
      // what operators published as the broker saw it) is kept.
      async start() {
        const client = need("client");
        const auditLog: AuditLog = new AuditLog({
          dataDir: config.dataDir,
          log: log.child({ component: "audit" }),
          maxBytes: Math.round(config.audit.maxMegabytes * 1024 * 1024),
          keepFiles: config.audit.keepFiles,
          storage: storage.writer("audit", (): boolean => auditLog.flushPending()),
        });
        parts.auditLog = auditLog;
        const eventsTopic = topics.events();
        const onMessage = (topic: string, payload: Buffer) => {
          if (topic !== eventsTopic) return;
          const event = decodeJson(AuditEvent, payload);
          if (!event.ok) return log.warn({ topic, error: event.error }, "ignoring an invalid audit event");
          // A write failure is the storage health's to report; the event is kept until it can be written.
          auditLog.append(event.value);
        };
        client.on("message", onMessage);
        await client.subscribeAsync(eventsTopic, { qos: 1 });
        // Who sent a command: the broker knows the authenticated user of every publish.
        const onHostRequest = (info: HostRequestInfo) => {
          client.publishAsync(eventsTopic, JSON.stringify(hostRequestEvent(info)), { qos: 1, retain: false }).catch((err: unknown) => log.error({ err }, "cannot publish an audit event"));
        };
        parts.broker?.on("hostRequest", onHostRequest);
        const refusals = new RefusalAudit((event) => {
          client.publishAsync(eventsTopic, JSON.stringify(event), { qos: 1, retain: false }).catch((err: unknown) => log.error({ err }, "cannot publish an audit event"));
        });
        parts.refusals = refusals;
        const onDenied = (d: BrokerDenial) => {
          if (d.action === "connect") refusals.loginRefused({ channel: "mqtt", user: d.user, address: d.address, reason: d.reason, clientId: d.clientId });
          else refusals.accessDenied({ user: d.user, clientId: d.clientId, action: d.action, topic: d.topic ?? "", reason: d.reason, address: d.address });
        };
        parts.broker?.on("denied", onDenied);
        return async () => {
          parts.broker?.off("hostRequest", onHostRequest);
          parts.broker?.off("denied", onDenied);
          client.off("message", onMessage);
        };
      },
    },
    {
      name: "process guard",
      // After the audit log: an unclean last stop and faults from here on are audited.
      async start() {
        const client = need("client");
        const guard = startProcessGuard({
          dataDir: config.dataDir,
          log,
          audit: (event) => void client.publishAsync(topics.events(), JSON.stringify(event), { qos: 1 }).catch((err: unknown) => log.error({ err }, "cannot publish an audit event")),
          ...(opts.guardProcess ? { process } : {}),
        });
        return async () => guard.stop();
      },
    },
    {
      name: "hub services",
      // Fleet view, rollouts (one store), GitHub: built once, shared by Node-RED, HA and the API.
      async start() {
        const services = buildHubServices({ client: need("client"), topics, dataDir: config.dataDir, log, storage, rolloutDefaults: config.rollout, mergeReverts: config.automatic.mergeReverts, resumeOnGreenPreview: config.automatic.resumeOnGreenPreview, previews: config.previews, ...(config.github ? { github: config.github } : {}) });
        parts.services = services;
        const running = await startSteps(services.steps, log);
        return () => running.stop();
      },
    },
    {
      name: "metrics",
      // Fleet series are read from the shared fleet view when scraped; the rest is fed here.
      async start() {
        const services = need("services");
        const broker = parts.broker;
        const lastSwitchFile: LastSwitchFile = new LastSwitchFile(join(config.dataDir, "last-switch.json"), log.child({ component: "metrics" }), storage.writer("last-switch", () => lastSwitchFile.retry()));
        const metrics = new HubMetrics({
          fleet: services.fleet,
          rollouts: services.rollouts,
          lastSwitchFile,
          ...(broker ? { broker: () => broker.stats() } : {}),
        });
        parts.metrics = metrics;
        const offGitHub = services.github?.client.onResponse((status, remaining) => metrics.recordGitHubResponse(status, remaining));
        const onDenied = (info: { action: string }) => info.action === "connect" && metrics.recordAuthFailure("mqtt");
        broker?.on("denied", onDenied);
        return async () => {
          offGitHub?.();
          broker?.off("denied", onDenied);
          metrics.stop();
        };
      },
    },
    {
      name: "http server",
      async start() {
        // The shipped flows' function nodes read these with env.get(); config-file values reach them this way.
        if (config.notify.appriseUrl) process.env.LOCKSTEP_APPRISE_URL = config.notify.appriseUrl;
        process.env.LOCKSTEP_RECHECK_MINUTES = String(config.automatic.recheckMinutes);
        process.env.LOCKSTEP_MAX_WAIT_HOURS = String(config.automatic.maxWaitHours);

        // The one HTTP server: page, editor, API, MQTT over WebSocket.
        const server = createServer();
        parts.server = server;
        const lockstep: LockstepSettings = {
          mqtt: need("mqttConn"),
          prefix: config.broker.topicPrefix,
          ...(config.github ? { github: config.github } : {}),
          rollout: config.rollout,
          automatic: config.automatic,
          services: need("services"),
        };
        const metrics = need("metrics");
        const refusals = need("refusals");
        // One backoff for MQTT, the API, /metrics and the editor: failures on one channel slow the others down.
        const logins = {
          backoff: parts.broker?.logins ?? new LoginBackoff(config.broker.limits.loginBackoff),
          refused: (r: LoginRefusal) => {
            metrics.recordAuthFailure("http");
            refusals.loginRefused(r);
          },
        };
        const nodeRed = createEmbeddedNodeRed({ server, dataDir: config.dataDir, users: need("users"), log: log.child({ component: "node-red" }), lockstep, logins, bodyParser: apiBodyParser() });
        parts.nodeRed = nodeRed;
        if (config.broker.external && !pageMqttUrl) {
          log.warn("external broker without a WebSocket URL: set pageMqttUrl (LOCKSTEP_PAGE_MQTT_URL) so the fleet page can connect");
        }
        const dashboard = createDashboardHandler({ prefix: config.broker.topicPrefix, ...(pageMqttUrl ? { mqttWsUrl: pageMqttUrl } : {}) });
        // express comes with Node-RED (its editor and http-in nodes are express apps).
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const express = require("express") as () => ExpressApp;
        const app = express();
        mountHubApi(app, {
          auth: nodeRed.apiAuth,
          auditLog: need("auditLog"),
          alsoRouting: [nodeRed.httpNode],
          converge: () => parts.services?.converge,
          automatic: () => parts.services?.automatic,
          rollouts: () => parts.services?.rollouts,
          fleetStream: fleetStreamHandler({ fleet: need("services").fleet, log: log.child({ component: "fleet-stream" }) }) as RequestHandler,
        });
        // Any user may scrape (a viewer is enough), with the API's Basic auth.
        app.get("/metrics", basicAuthMiddleware(need("users"), log.child({ component: "metrics" }), logins), metricsHandler(metrics, log.child({ component: "metrics" })));
        app.post("/admin/auth/token", nodeRed.editorLogin);
        app.use("/admin", nodeRed.httpAdmin);
        app.use("/", nodeRed.httpNode);
        // What no route served: JSON for /api/ (404, and every error), Node-RED's answer elsewhere.
        app.use(apiNotFound);
        app.use(apiErrorHandler(log.child({ component: "api" })));
        server.on("request", (req, res) => {
          if (dashboard(req, res)) return;
          app(req, res);
        });
        parts.broker?.attachWebSocket(server, "/mqtt");
        parts.httpPort = await listen(server, config.http.host, config.http.port);
        base = config.publicUrl?.replace(/\/+$/, "") ?? `http://${connectHost(config.http.host)}:${parts.httpPort}`;
        // Upgraded sockets (MQTT over WebSocket, the editor's comms) are not closed by
        // closeAllConnections() but keep server.close() waiting: track and end them too.
        const sockets = new Set<Socket>();
        server.on("connection", (socket) => {
          sockets.add(socket);
          socket.once("close", () => sockets.delete(socket));
        });
        return () =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
            for (const socket of sockets) socket.destroy();
          });
      },
    },
    {
      name: "node-red",
      async start() {
        const nodeRed = need("nodeRed");
        // Stopped even when its start fails half-way (flows that never report started).
        const stop = () => nodeRed.stop();
        await nodeRed.start().catch(async (err: unknown) => {
          await stop().catch(() => undefined);
          throw err;
        });
        return stop;
      },
    },
    {
      name: "home assistant bridge",
      async start() {
        if (!config.homeAssistant.enabled) return;
        // On the shared fleet view; Install starts a one-host rollout of the fleet head directly.
        const services = need("services");
        const haUser = config.homeAssistant.user;
        const users = parts.users;
        if (users && !users.list().some((u) => u.name === haUser && u.role === "operator")) {
          log.warn({ haUser }, `Home Assistant's fleet buttons publish as broker user "${haUser}", which is no operator here: add it (lockstep users add ${haUser} --role operator) or set homeAssistant.user`);
        }
        const bridge = new HomeAssistantBridge({
          client: need("client"),
          topics,
          logger: log,
          fleet: services.fleet,
          rollouts: services.rollouts,
          ...(services.automatic ? { automatic: services.automatic } : {}),
          haUser,
          configurationUrl: `${base}/`,
        });
        await bridge.start();
        return () => bridge.stop();
      },
    },
    {
      name: "upstream bridge",
      async start() {
        const broker = parts.broker;
        if (!config.bridge || !broker) return;
        // Not awaited on the upstream side: an unreachable upstream never holds up the local fleet.
        const b = config.bridge;
        const bridgePassword = b.passwordFile !== undefined ? readSecretFile(b.passwordFile, "bridge password") : undefined;
        const bridge = new MqttBridge({
          local: { ...broker.hubConnection(), clientId: `lockstep-bridge-${process.pid}` },
          upstream: {
            url: b.url,
            ...(b.username !== undefined ? { username: b.username } : {}),
            ...(bridgePassword !== undefined ? { password: bridgePassword } : {}),
            ...(b.clientId !== undefined ? { clientId: b.clientId } : {}),
          },
          topics,
          logger: log,
        });
        await bridge.start();
        return () => bridge.stop();
      },
    },
  ];

  const running = await startSteps(steps, log);
  const broker = parts.broker;
  const mqttConn = need("mqttConn");
  const urls: HubUrls = {
    page: `${base}/`,
    editor: `${base}/admin/`,
    api: `${base}/api/`,
    mqtt: broker ? broker.url : mqttConn.url,
    mqttWs: `${base.replace(/^http/, "ws")}/mqtt`,
  };
  print("Lockstep hub is running");
  print(`  fleet page:        ${urls.page}`);
  print(`  Node-RED editor:   ${urls.editor}`);
  print(`  HTTP API:          ${urls.api}`);
  print(`  metrics:           ${base}/metrics (Prometheus, any user)`);
  print(`  MQTT:              ${urls.mqtt}${broker ? "" : " (external broker)"}`);
  if (broker) print(`  MQTT over WS:      ${urls.mqttWs}`);
  else if (pageMqttUrl) print(`  page connects to: ${pageMqttUrl}`);
  if (config.bridge && broker) print(`  bridged to:        ${redactUrl(config.bridge.url)} (upstream broker)`);
  for (const line of listenLines({ httpHost: config.http.host, httpPort: need("httpPort"), ...(broker ? { mqtt: { host: config.broker.listeners.tcp.host, port: broker.ports.tcp } } : {}) })) print(line);
  print(`  data dir:          ${config.dataDir}`);
  return {
    config,
    urls,
    httpPort: need("httpPort"),
    ...(broker ? { mqttPort: broker.ports.tcp } : {}),
    stop: () => running.stop(),
  };
}

interface ExpressApp {
  (req: Parameters<RequestHandler>[0], res: Parameters<RequestHandler>[1]): void;
  get(path: string, ...handlers: RequestHandler[]): void;
  post(path: string, ...handlers: RequestHandler[]): void;
  use(path: string, handler: RequestHandler): void;
  use(handler: RequestHandler | ErrorHandler): void;
}
