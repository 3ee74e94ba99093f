/**
 * A stand-in for the hub's HTTP server in browser tests and the benchmark: the real fleet page
 * handler, the hub's real fleet stream (GET /api/fleet/stream, on a fleet view of the broker like
 * the hub's), MQTT over WebSocket at /mqtt (the broker's own WebSocket listener when it has one,
 * otherwise a byte-for-byte WebSocket→TCP relay), and fake `/api/` endpoints (whoami, audit, the POSTs) that check HTTP Basic
 * auth against the same credentials and record what the page asked for.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect as tcpConnect, type AddressInfo } from "node:net";
import { WebSocketServer, createWebSocketStream } from "ws";
import pino from "pino";
import { createDashboardHandler } from "../../dashboard/server.js";
import { fleetStreamHandler, type FleetStreamOptions } from "../../hub/fleet-stream.js";
import { FLEET_STREAM_PATH } from "../../protocol/fleet-stream.js";
import { Topics } from "../../protocol/topics.js";
import { FleetView } from "../../rollout/fleet-view.js";
import type { TestBroker } from "../support/brokers.js";

export interface PageUser {
  username: string;
  password: string;
  role: "viewer" | "operator";
}

export interface ApiCall {
  path: string;
  user: string;
  body: unknown;
}

export interface PageServer {
  url: string;
  calls: ApiCall[];
  /** Fleet streams the page opened so far (a reconnect opens another). */
  fleetStreamsOpened(): number;
  /** Cut every open fleet stream, as a lost connection would. */
  dropFleetStreams(): void;
  /** Fleet streams asked for from now on wait until the returned function is called (a slow hub). */
  holdFleetStreams(): () => void;
  close(): Promise<void>;
}

export interface PageServerOptions {
  broker: TestBroker;
  prefix?: string;
  users: PageUser[];
  /** Answer to POST /api/flake-updates/merge-and-deploy (the test publishes rollout progress). */
  onMergeAndDeploy?: (body: { pr_number?: number; parts?: number[]; hosts?: string[] }, user: string) => Promise<{ job_id: string; merged?: number[]; not_merged?: { pr_number: number; reason: string }[] }>;
  /** What GET /api/audit answers (newest first), like the hub's audit log. */
  auditEvents?: unknown[];
  /** The fleet view the stream reads (the benchmark's, or a test's fake); default: one of its own, as user "hub". */
  fleet?: FleetStreamOptions["fleet"];
  /** Answers GET /api/fleet/stream instead of the hub's handler (a test that sends malformed lines). */
  fleetStream?: (req: IncomingMessage, res: ServerResponse) => void;
}

function basicUser(req: IncomingMessage, users: PageUser[]): PageUser | null {
  const header = req.headers.authorization ?? "";
  const m = /^Basic (.+)$/.exec(header);
  if (!m) return null;
  const [username, ...rest] = Buffer.from(m[1]!, "base64").toString("utf8").split(":");
  return users.find((u) => u.username === username && u.password === rest.join(":")) ?? null;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? JSON.parse(text) : {};
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

export async function startPageServer(opts: PageServerOptions): Promise<PageServer> {
  const page = createDashboardHandler({ prefix: opts.prefix ?? "lockstep", ...(opts.broker.wsUrl ? { mqttWsUrl: opts.broker.wsUrl } : {}) });
  const calls: ApiCall[] = [];
  let ownFleet: FleetView | undefined;
  if (!opts.fleet) {
    const hub = await opts.broker.credentials("hub", "page-server");
    ownFleet = new FleetView({ url: opts.broker.url, ...hub, topics: new Topics(opts.prefix), connectOptions: { reconnectPeriod: 0 } });
    await ownFleet.start();
  }
  let streamsOpened = 0;
  let held: Promise<void> = Promise.resolve();
  const openStreams = new Set<ServerResponse>();
  const stream = opts.fleetStream ?? fleetStreamHandler({ fleet: opts.fleet ?? ownFleet!, log: pino({ level: "silent" }) });

  const server: Server = createServer((req, res) => {
    if (page(req, res)) return;
    void (async () => {
      const path = new URL(req.url ?? "/", "http://x").pathname;
      if (!path.startsWith("/api/")) return json(res, 404, { error: "not found" });
      const user = basicUser(req, opts.users);
      if (!user) {
        res.setHeader("www-authenticate", 'Basic realm="lockstep"');
        return json(res, 401, { error: "authentication required" });
      }
      if (path === "/api/whoami" && req.method === "GET") return json(res, 200, { user: user.username, role: user.role });
      if (path === "/api/audit" && req.method === "GET") return json(res, 200, { events: opts.auditEvents ?? [] });
      if (path === FLEET_STREAM_PATH && req.method === "GET") {
        await held;
        streamsOpened++;
        openStreams.add(res);
        res.on("close", () => openStreams.delete(res));
        return stream(req, res);
      }
      if (req.method !== "POST") return json(res, 405, { error: "method not allowed" });
      const body = await readJson(req);
      calls.push({ path, user: user.username, body });
      if (user.role !== "operator") return json(res, 403, { error: "operators only" });
      if (path === "/api/flake-updates/check") return json(res, 202, { ok: true });
      if (path === "/api/flake-updates/merge-and-deploy" && opts.onMergeAndDeploy) {
        return json(res, 202, await opts.onMergeAndDeploy(body as { pr_number?: number }, user.username));
      }
      return json(res, 404, { error: "not found" });
    })().catch((err: Error) => json(res, 500, { error: err.message }));
  });

  // Without a broker WebSocket listener, relay /mqtt to the broker's TCP port (same bytes).
  const wss = new WebSocketServer({ noServer: true });
  const brokerTcp = new URL(opts.broker.url);
  server.on("upgrade", (req, socket, head) => {
    if (new URL(req.url ?? "/", "http://x").pathname !== "/mqtt" || opts.broker.wsUrl) return socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => {
      const tcp = tcpConnect(Number(brokerTcp.port), brokerTcp.hostname);
      tcp.setNoDelay(true);
      const stream = createWebSocketStream(ws);
      stream.pipe(tcp).pipe(stream);
      const end = () => {
        tcp.destroy();
        stream.destroy();
      };
      tcp.on("error", end);
      stream.on("error", end);
      tcp.on("close", () => ws.close());
    });
  });

  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    calls,
    fleetStreamsOpened: () => streamsOpened,
    dropFleetStreams() {
      for (const res of openStreams) res.destroy();
    },
    holdFleetStreams() {
      let release!: () => void;
      held = new Promise((r) => (release = r));
      return () => {
        held = Promise.resolve();
        release();
      };
    },
    async close() {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await ownFleet?.stop();
    },
  };
}

/** Chromium flags for this environment (no sandbox, no network side-channels). */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
export const CHROMIUM_PATH = "/usr/bin/chromium";
