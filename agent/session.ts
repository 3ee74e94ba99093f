/**
 * The agent's MQTT session: fixed client id and `clean: false` (commands queued while the host was
 * offline arrive when it is back), last will `offline`, reconnect with back-off 0.5 s → 30 s, the
 * subscriptions an agent needs, and `online` on every connect.
 */
import { readFileSync } from "node:fs";
import mqtt, { type MqttClient } from "mqtt";
import type { Logger } from "pino";
import { agentClientId, type Topics } from "../protocol/index.js";
import type { AgentConfig } from "./config.js";

export const RECONNECT_MIN_MS = 500;
export const RECONNECT_MAX_MS = 30_000;

/** One entry of MQTT.js' `servers` (a cluster's nodes, tried in turn on each reconnect). */
export function brokerServer(url: string): { host: string; port: number; protocol: "mqtt" | "mqtts" | "ws" | "wss" | "tcp" | "ssl" } {
  const u = new URL(url);
  const protocol = u.protocol.replace(/:$/, "") as "mqtt" | "mqtts" | "ws" | "wss" | "tcp" | "ssl";
  const defaults = { mqtt: 1883, tcp: 1883, mqtts: 8883, ssl: 8883, ws: 80, wss: 443 };
  return { host: u.hostname, port: u.port ? Number(u.port) : defaults[protocol], protocol };
}

export type PublishOptions = { qos: 0 | 1; retain: boolean };

export interface SessionHandlers {
  /** After every (re)connect, once `online` is on its way. */
  onOnline: () => void;
  onMessage: (topic: string, payload: Buffer) => void;
}

export class AgentSession {
  private client: MqttClient | undefined;
  private stopping = false;

  constructor(
    private readonly config: AgentConfig,
    private readonly topics: Topics,
    private readonly log: Logger,
  ) {}

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  connect(handlers: SessionHandlers): void {
    const c = this.config;
    const client = mqtt.connect(c.broker.url, {
      clientId: c.broker.clientId ?? agentClientId(c.host),
      clean: false,
      username: c.broker.username ?? c.host,
      ...(c.brokerPassword !== undefined ? { password: c.brokerPassword } : {}),
      keepalive: c.broker.keepaliveSeconds,
      protocolVersion: 4,
      reconnectPeriod: RECONNECT_MIN_MS,
      connectTimeout: 10_000,
      will: { topic: this.topics.availability(c.host), payload: Buffer.from("offline"), qos: 1, retain: true },
      ...(c.broker.failoverUrls?.length ? { servers: [c.broker.url, ...c.broker.failoverUrls].map(brokerServer) } : {}),
      ...(c.broker.caFile ? { ca: readFileSync(c.broker.caFile) } : {}),
    });
    this.client = client;
    client.on("connect", (connack) => {
      client.options.reconnectPeriod = RECONNECT_MIN_MS;
      this.log.info({ url: `${client.options.protocol}://${client.options.host}:${client.options.port}`, sessionPresent: connack.sessionPresent }, "connected to broker");
      const subscriptions: Record<string, { qos: 0 | 1 }> = {
        [this.topics.commands(c.host)]: { qos: 1 },
        [this.topics.expected()]: { qos: 1 },
        [this.topics.hubAvailability()]: { qos: 0 },
        // Our own availability: a previous connection's "offline" (its will after a session
        // takeover, or a slow clean stop) can land after our "online"; onMessage answers it.
        [this.topics.availability(c.host)]: { qos: 1 },
      };
      client.subscribe(subscriptions, (err, granted) => {
        if (err) this.log.error({ err: err.message }, "subscribe failed");
        for (const g of granted ?? []) if (g.qos === 128) this.log.error({ topic: g.topic }, "broker refused subscription (check the ACL for this host)");
      });
      this.publishOnline();
      handlers.onOnline();
    });
    client.on("close", () => {
      // Back off: 0.5 s, 1 s, 2 s … 30 s between attempts while the broker is away.
      client.options.reconnectPeriod = Math.min(RECONNECT_MAX_MS, (client.options.reconnectPeriod ?? RECONNECT_MIN_MS) * 2);
    });
    client.on("error", (err) => this.log.warn({ err: err.message }, "mqtt error"));
    client.on("message", (topic, payload) => {
      this.log.debug({ topic, bytes: payload.length }, "message");
      const parsed = this.topics.parse(topic);
      if (parsed?.kind === "availability" && parsed.host === c.host) {
        if (payload.toString() === "offline" && !this.stopping && client.connected) {
          this.log.info("our availability reads offline while we are connected (an earlier connection's last word): publishing online again");
          this.publishOnline();
        }
        return;
      }
      handlers.onMessage(topic, payload);
    });
  }

  publishOnline(): void {
    this.publish(this.topics.availability(this.config.host), "online", { qos: 1, retain: true });
  }

  /** Publish; MQTT.js queues it while disconnected. `done` runs once the broker has it (QoS 1) or it failed. */
  publish(topic: string, payload: string, opts: PublishOptions, done?: (err?: Error) => void): void {
    const client = this.client;
    if (!client) return done?.(new Error("not connected"));
    client.publish(topic, payload, opts, (err) => {
      if (err && !this.stopping) this.log.warn({ topic, err: err.message }, "publish failed");
      done?.(err);
    });
  }

  /** Publish retained at QoS 1; true once the broker acknowledged it within timeoutMs. */
  publishAcked(topic: string, payload: string, timeoutMs: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      t.unref();
      this.publish(topic, payload, { qos: 1, retain: true }, (err) => {
        clearTimeout(t);
        resolve(!err);
      });
    });
  }

  /** Publish `offline` (bounded wait) and disconnect. */
  async close(): Promise<void> {
    this.stopping = true;
    const client = this.client;
    if (!client) return;
    await new Promise<void>((resolve) => {
      client.publish(this.topics.availability(this.config.host), "offline", { qos: 1, retain: true }, () => resolve());
      setTimeout(resolve, 2000).unref();
    });
    // Without a connection nothing queued can go out: end at once instead of waiting for the broker.
    await new Promise<void>((resolve) => client.end(!client.connected, {}, () => resolve()));
  }
}
