/**
 * Where MQTT clients come in: the TCP, standalone WebSocket and TLS listeners of the embedded
 * broker, and MQTT over WebSocket on someone else's HTTP(S) server (the hub's page port).
 * Every accepted connection is handed to `accept` as a byte stream.
 */
import { readFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from "node:http";
import type { Server as HttpsServer } from "node:https";
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { createServer as createTlsServer, type Server as TlsServer } from "node:tls";
import type { Logger } from "pino";
import { WebSocketServer, createWebSocketStream } from "ws";
import { LockstepError } from "../protocol/index.js";
import { oneFramePerPacket, prepareSocket } from "./aedes-fixes.js";
import type { BrokerConfig } from "./config.js";

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

/** Hands a new connection to the broker; returns false when the broker is not accepting. */
export type AcceptConnection = (stream: Duplex, req?: IncomingMessage) => boolean;

export class BrokerListeners {
  private servers: Array<NetServer | HttpServer | TlsServer> = [];
  private detachers: Array<() => void> = [];
  private wss = new WebSocketServer({ noServer: true });

  constructor(
    private readonly accept: AcceptConnection,
    private readonly logger: Logger,
  ) {}

  /** Open the configured listeners; returns the ports actually bound (useful with port 0). */
  async open(listeners: BrokerConfig["listeners"]): Promise<EmbeddedBrokerPorts> {
    const ports: EmbeddedBrokerPorts = { tcp: 0 };
    const tcp = createNetServer((socket) => this.acceptSocket(socket));
    ports.tcp = await this.listen(tcp, listeners.tcp.host, listeners.tcp.port, "tcp");

    if (listeners.ws) {
      const ws = listeners.ws;
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

    if (listeners.tls) {
      const tls = listeners.tls;
      const server = createTlsServer({
        cert: readConfigFile(tls.certFile, "listeners.tls.certFile"),
        key: readConfigFile(tls.keyFile, "listeners.tls.keyFile"),
        ...(tls.caFile ? { ca: readConfigFile(tls.caFile, "listeners.tls.caFile"), requestCert: true, rejectUnauthorized: true } : {}),
      });
      server.on("secureConnection", (socket) => this.acceptSocket(socket));
      server.on("tlsClientError", (err) => this.logger.debug({ err: err.message }, "tls handshake failed"));
      ports.tls = await this.listen(server, tls.host, tls.port, "tls");
    }
    return ports;
  }

  /**
   * Serve MQTT over WebSocket on an existing HTTP(S) server at `path` (the hub's page and
   * Node-RED share one port). Other upgrade requests (e.g. Node-RED's /comms) are left alone.
   * Returns a function that detaches again.
   */
  attachWebSocket(server: HttpServer | HttpsServer, path: string): () => void {
    const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const url = new URL(req.url ?? "/", "http://localhost");
      if (url.pathname !== path) return; // someone else's upgrade
      prepareSocket(socket as Socket);
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        const stream = oneFramePerPacket(createWebSocketStream(ws));
        stream.on("error", () => stream.destroy());
        if (!this.accept(stream, req)) ws.terminate();
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

  /**
   * Stop accepting, let `closeClients` end the live sessions (which lets the servers finish
   * closing), then drop whatever connection is left.
   */
  async close(closeClients: () => Promise<void>): Promise<void> {
    for (const detach of [...this.detachers]) detach();
    const closing = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    await closeClients();
    for (const client of this.wss.clients) client.terminate();
    for (const server of this.servers) (server as HttpServer).closeAllConnections?.();
    await Promise.all(closing);
    this.servers = [];
  }

  private acceptSocket(socket: Socket): void {
    prepareSocket(socket);
    if (!this.accept(socket)) socket.destroy();
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
