/**
 * `lockstep hub`: the one process a fleet needs. It runs (or connects to) the MQTT broker, serves
 * the fleet page, the Node-RED editor (/admin), the HTTP API (/api/, Node-RED http-in nodes) and
 * MQTT over WebSocket (/mqtt) on one HTTP port, bridges the fleet into Home Assistant, and
 * announces itself on hub/availability (retained, with an "offline" last will).
 *
 * Start order: config → broker → users (first start) → hub MQTT client → HTTP server + Node-RED
 * → HA bridge → MQTT bridge to an upstream broker (if configured) → print where everything is.
 * Stop runs it backwards.
 */
import { EventEmitter } from "node:events";
import { writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import pino, { type Logger } from "pino";
import { AuditEvent, ConfigError, decodeJson, LockstepError, readSecretFile, Topics } from "../protocol/index.js";
import { EmbeddedBroker, connectHost } from "../broker/embedded.js";
import { CredentialStore } from "../broker/credentials.js";
import { loadGitHubConfig, REDACT_PATHS } from "../github/config.js";
import { publishHubStatus } from "./status.js";
import { HomeAssistantBridge } from "../ha/bridge.js";
import { createDashboardHandler } from "../dashboard/server.js";
import type { LockstepSettings } from "../node-red-nodes/lib/settings.js";
import { AuditLog, auditHandler, hostRequestEvent } from "./audit-log.js";
import { MqttBridge, redactUrl } from "./bridge.js";
import { loadHubConfig, type HubConfig } from "./config.js";
import { createEmbeddedNodeRed, whoamiHandler, type RequestHandler } from "./node-red.js";

export const OPERATOR_USER = "admin";
const STOP_STEP_TIMEOUT_MS = 5000;
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
  print(`First start: created the operator "${OPERATOR_USER}" with password ${operator.password}`);
  print("  (shown only now and stored hashed; add more users with `lockstep users add`)");
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
}

export async function startHub(opts: StartHubOptions): Promise<RunningHub> {
  const { config } = opts;
  const print = opts.print ?? ((line: string) => process.stdout.write(line + "\n"));
  const log = opts.log ?? pino({ level: config.logLevel, redact: { paths: REDACT_PATHS, censor: "[REDACTED]" } }, pino.destination(2));
  const topics = new Topics(config.broker.topicPrefix, config.broker.haPrefix);
  // What to undo on shutdown, in start order; stopped in reverse.
  const stops: Array<{ what: string; stop: () => Promise<void> }> = [];
  const stopAll = async () => {
    for (const { what, stop } of stops.reverse()) {
      const started = Date.now();
      // A part that hangs must not keep the others (and the process) from stopping.
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          log.error({ what }, `${what} did not stop within ${STOP_STEP_TIMEOUT_MS} ms; going on`);
          resolve();
        }, STOP_STEP_TIMEOUT_MS);
      });
      await Promise.race([stop().catch((err: unknown) => log.error({ err, what }, "error while stopping")), timeout]);
      clearTimeout(timer);
      log.info({ what, ms: Date.now() - started }, "stopped");
    }
    stops.length = 0;
  };

  try {
    const startedAt = new Date();
    // Fail fast on a bad GitHub section instead of at the first poll.
    const github = config.github ? loadGitHubConfig(config.github) : undefined;
    const bridgePassword = config.bridge?.passwordFile !== undefined ? readSecretFile(config.bridge.passwordFile, "bridge password") : undefined;

    let broker: EmbeddedBroker | undefined;
    let users: CredentialStore;
    let mqttConn: { url: string; username: string; password: string };
    if (config.broker.external) {
      users = await CredentialStore.open(config.broker.credentialsFile);
      const ext = config.broker.external;
      mqttConn = { url: ext.url, username: ext.username, password: readSecretFile(ext.passwordFile, "external broker password") };
    } else {
      broker = new EmbeddedBroker(config.broker, log.child({ component: "broker" }));
      await broker.start();
      stops.push({ what: "broker", stop: () => broker!.stop() });
      users = broker.credentials;
      mqttConn = broker.hubConnection();
    }
    await ensureInitialUsers(users, config.dataDir, print);

    const client = await connectHubClient(mqttConn.url, mqttConn.username, mqttConn.password, topics);
    await publishHubStatus(client, topics, { ...(github ? { github } : {}), ...(broker ? { mqttPort: broker.ports.tcp } : {}), startedAt });
    stops.push({
      what: "hub mqtt client",
      stop: async () => {
        await client.publishAsync(topics.hubAvailability(), "offline", { retain: true, qos: 1 }).catch(() => undefined);
        await client.endAsync();
      },
    });

    // The audit log: everything on fleet/events (rollout engine, FleetClient's commands, Home
    // Assistant's, and what operators published as the broker saw it) is kept.
    const auditLog = new AuditLog({
      dataDir: config.dataDir,
      log: log.child({ component: "audit" }),
      maxBytes: Math.round(config.audit.maxMegabytes * 1024 * 1024),
      keepFiles: config.audit.keepFiles,
    });
    const eventsTopic = topics.events();
    client.on("message", (topic, payload) => {
      if (topic !== eventsTopic) return;
      const event = decodeJson(AuditEvent, payload);
      if (!event.ok) return log.warn({ topic, error: event.error }, "ignoring an invalid audit event");
      try {
        auditLog.append(event.value);
      } catch (err) {
        log.error({ err }, "cannot append to the audit log");
      }
    });
    await client.subscribeAsync(eventsTopic, { qos: 1 });
    if (broker) {
      // Who sent a command: the broker knows the authenticated user of every publish.
      broker.on("hostRequest", (info) => {
        client.publishAsync(eventsTopic, JSON.stringify(hostRequestEvent(info)), { qos: 1, retain: false }).catch((err: unknown) => log.error({ err }, "cannot publish an audit event"));
      });
    }

    // The shipped flows' function nodes read these with env.get(); config-file values reach them this way.
    if (config.notify.appriseUrl) process.env.LOCKSTEP_APPRISE_URL = config.notify.appriseUrl;
    process.env.LOCKSTEP_RECHECK_MINUTES = String(config.automatic.recheckMinutes);
    process.env.LOCKSTEP_MAX_WAIT_HOURS = String(config.automatic.maxWaitHours);

    // The one HTTP server: page, editor, API, MQTT over WebSocket.
    const hubEvents = new EventEmitter();
    const server = createServer();
    const lockstep: LockstepSettings = {
      mqtt: mqttConn,
      prefix: config.broker.topicPrefix,
      ...(config.github ? { github: config.github } : {}),
      rollout: config.rollout,
      automatic: config.automatic,
      hubEvents,
    };
    const nodeRed = createEmbeddedNodeRed({ server, dataDir: config.dataDir, users, log: log.child({ component: "node-red" }), lockstep });
    // Embedded: the page connects to this server's /mqtt. External: to the broker's own WebSocket.
    const externalWs = config.broker.external && /^wss?:/.test(config.broker.external.url) ? config.broker.external.url : undefined;
    const pageMqttUrl = config.pageMqttUrl ?? externalWs;
    if (config.broker.external && !pageMqttUrl) {
      log.warn("external broker without a WebSocket URL: set pageMqttUrl (LOCKSTEP_PAGE_MQTT_URL) so the fleet page can connect");
    }
    const dashboard = createDashboardHandler({ prefix: config.broker.topicPrefix, ...(pageMqttUrl ? { mqttWsUrl: pageMqttUrl } : {}) });
    // express comes with Node-RED (its editor and http-in nodes are express apps).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const express = require("express") as () => ExpressApp;
    const app = express();
    app.get("/api/whoami", nodeRed.apiAuth, whoamiHandler);
    app.get("/api/audit", nodeRed.apiAuth, auditHandler(auditLog) as RequestHandler);
    app.use("/admin", nodeRed.httpAdmin);
    app.use("/", nodeRed.httpNode);
    server.on("request", (req, res) => {
      if (dashboard(req, res)) return;
      app(req, res);
    });
    if (broker) broker.attachWebSocket(server, "/mqtt");

    const httpPort = await listen(server, config.http.host, config.http.port);
    // Upgraded sockets (MQTT over WebSocket, the editor's comms) are not closed by
    // closeAllConnections() but keep server.close() waiting: track and end them too.
    const sockets = new Set<import("node:net").Socket>();
    server.on("connection", (socket) => {
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
    });
    stops.push({
      what: "http server",
      stop: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
          for (const socket of sockets) socket.destroy();
        }),
    });
    stops.push({ what: "node-red", stop: () => nodeRed.stop() });
    await nodeRed.start();

    const base = config.publicUrl?.replace(/\/+$/, "") ?? `http://${connectHost(config.http.host)}:${httpPort}`;
    if (config.homeAssistant.enabled) {
      // Home Assistant's Install button → the lockstep-fleet node deploys the head to that host.
      const bridge = new HomeAssistantBridge({ client, topics, logger: log, configurationUrl: `${base}/` });
      bridge.on("install-requested", (req) => hubEvents.emit("install-requested", req));
      await bridge.start();
      stops.push({ what: "home assistant bridge", stop: () => bridge.stop() });
    }

    if (config.bridge && broker) {
      // Not awaited on the upstream side: an unreachable upstream never holds up the local fleet.
      const b = config.bridge;
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
      stops.push({ what: "mqtt bridge", stop: () => bridge.stop() });
    }

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
    print(`  MQTT:              ${urls.mqtt}${broker ? "" : " (external broker)"}`);
    if (broker) print(`  MQTT over WS:      ${urls.mqttWs}`);
    else if (pageMqttUrl) print(`  page connects to: ${pageMqttUrl}`);
    if (config.bridge && broker) print(`  bridged to:        ${redactUrl(config.bridge.url)} (upstream broker)`);
    print(`  data dir:          ${config.dataDir}`);
    return {
      config,
      urls,
      httpPort,
      ...(broker ? { mqttPort: broker.ports.tcp } : {}),
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

interface ExpressApp {
  (req: Parameters<RequestHandler>[0], res: Parameters<RequestHandler>[1]): void;
  get(path: string, ...handlers: RequestHandler[]): void;
  use(path: string, handler: RequestHandler): void;
}

const USAGE = `usage: lockstep hub [--data-dir DIR] [--config FILE]

Runs the broker, the fleet page, the Node-RED editor and the HTTP API.
  --data-dir DIR   where everything durable lives (default .lockstep-data; LOCKSTEP_DATA_DIR)
  --config FILE    JSON config file (see docs/node-red.md); LOCKSTEP_* variables override it
`;

export function parseHubArgs(argv: string[]): { dataDir?: string; config?: string; help: boolean } {
  const out: { dataDir?: string; config?: string; help: boolean } = { help: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new ConfigError(`${arg} needs a value`, USAGE.split("\n")[0]);
      return v;
    };
    if (arg === "--data-dir") out.dataDir = value();
    else if (arg === "--config") out.config = value();
    else if (arg === "--help" || arg === "-h") out.help = true;
    else throw new ConfigError(`unknown argument ${arg}`, USAGE.split("\n")[0]);
  }
  return out;
}

/** The `lockstep hub` command: runs until SIGTERM/SIGINT. Returns the exit code. */
export async function runHub(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parseHubArgs>;
  try {
    args = parseHubArgs(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  let hub: RunningHub;
  try {
    const config = loadHubConfig({ ...(args.config ? { file: args.config } : {}), ...(args.dataDir ? { dataDir: args.dataDir } : {}) });
    hub = await startHub({ config });
  } catch (err) {
    process.stderr.write(`lockstep hub: ${(err as Error).message}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = (signal: string) => {
      if (stopping) return;
      stopping = true;
      process.stdout.write(`${signal}: stopping the hub\n`);
      const force = setTimeout(() => resolve(1), 20_000);
      force.unref();
      hub.stop().then(
        () => {
          clearTimeout(force);
          resolve(0);
        },
        () => resolve(1),
      );
    };
    process.once("SIGTERM", () => shutdown("SIGTERM"));
    process.once("SIGINT", () => shutdown("SIGINT"));
  });
}

if (require.main === module) {
  runHub(process.argv.slice(2)).then((code) => process.exit(code));
}

