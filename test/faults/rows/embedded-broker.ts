/**
 * The embedded broker as the hub runs it (default limits, LevelDB persistence) for the broker rows,
 * with the refusals it reports and MQTT.js clients that are ended with the row.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import pino from "pino";
import { parseBrokerConfig } from "../../../broker/config.js";
import { EmbeddedBroker, type BrokerDenial } from "../../../broker/embedded.js";
import { untilConnected } from "../../support/brokers.js";
import type { RowContext } from "../row.js";

export interface RowBroker {
  broker: EmbeddedBroker;
  denied: BrokerDenial[];
  /** A client with a message recorder attached before CONNECT (a persistent session's queue arrives at once). */
  connect(options: IClientOptions): Promise<RowClient>;
  /** Granted QoS per filter (128: refused), read from the SUBACK. */
  subscribe(client: MqttClient, filters: string[], qos?: 0 | 1): Promise<number[]>;
}

export interface RowClient {
  client: MqttClient;
  messages: Array<{ topic: string; payload: string; retain: boolean }>;
  /** Resolves once a message on `topic` arrived (or had arrived); rejects after timeoutMs. */
  until(topic: string, timeoutMs?: number): Promise<void>;
}

export async function startRowBroker(ctx: RowContext, config: Record<string, unknown> = {}): Promise<RowBroker> {
  const dataDir = await mkdtemp(join(tmpdir(), "lockstep-faults-broker-"));
  ctx.cleanup(() => rm(dataDir, { recursive: true, force: true }));
  const broker = new EmbeddedBroker(parseBrokerConfig({ dataDir, listeners: { tcp: { host: "127.0.0.1", port: 0 } }, ...config }), pino({ level: "silent" }));
  await broker.start();
  ctx.cleanup(() => broker.stop());
  const denied: BrokerDenial[] = [];
  broker.on("denied", (d) => denied.push(d));
  return {
    broker,
    denied,
    async connect(options) {
      const client = mqtt.connect(broker.url, { reconnectPeriod: 0, connectTimeout: 10_000, protocolVersion: 4, ...options });
      ctx.cleanup(() => client.endAsync(true));
      const messages: Array<{ topic: string; payload: string; retain: boolean }> = [];
      client.on("message", (topic, payload, packet) => messages.push({ topic, payload: payload.toString(), retain: packet.retain }));
      await untilConnected(client);
      const until = (topic: string, timeoutMs = 10_000) =>
        messages.some((m) => m.topic === topic)
          ? Promise.resolve()
          : new Promise<void>((resolve, reject) => {
              const timer = setTimeout(() => (client.off("message", onMessage), reject(new Error(`no message on ${topic} within ${timeoutMs / 1000} s`))), timeoutMs);
              const onMessage = (t: string) => {
                if (t !== topic) return;
                clearTimeout(timer);
                client.off("message", onMessage);
                resolve();
              };
              client.on("message", onMessage);
            });
      return { client, messages, until };
    },
    subscribe: (client, filters, qos = 1) =>
      new Promise((resolve, reject) =>
        client.subscribe(filters, { qos }, (err, granted) => {
          const codes = (err as { packet?: { granted?: number[] } } | null)?.packet?.granted;
          if (codes) return resolve(codes);
          if (err) return reject(err);
          resolve(granted!.map((g) => g.qos));
        }),
      ),
  };
}

/** A CONNACK return code, or the refusal's code from MQTT.js's error. */
export function connackCode(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

