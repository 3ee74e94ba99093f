/**
 * The embedded broker's configuration: schema, the LOCKSTEP_* variables that set its fields, and
 * validation whose errors name the bad field and where it came from, e.g.
 * `listeners.tcp.port: expected a number 0-65535 (from LOCKSTEP_MQTT_PORT)`. Reading it from the
 * hub's config file and the environment is the hub's job (hub/config.ts loadHubBrokerConfig).
 */
import { join, resolve } from "node:path";
import { z } from "zod";
import type { EnvKind } from "./env-overrides.js";
import { ConfigError, DEFAULT_HA_PREFIX, DEFAULT_PREFIX } from "../protocol/index.js";

const port = z
  .number({ error: "expected a number 0-65535" })
  .int({ error: "expected a number 0-65535" })
  .min(0, { error: "expected a number 0-65535" })
  .max(65535, { error: "expected a number 0-65535" });

const host = z.string({ error: "expected a host name or IP address" }).min(1, { error: "must not be empty" });
const path = z.string({ error: "expected a file path" }).min(1, { error: "must not be empty" });

export const TcpListenerConfig = z.strictObject({
  host: host.default("0.0.0.0"),
  port: port.default(1883),
});

export const WsListenerConfig = z.strictObject({
  host: host.default("0.0.0.0"),
  port: port.default(8083),
  path: z.string().regex(/^\/[A-Za-z0-9._~/-]*$/, { error: 'expected a URL path starting with "/"' }).default("/mqtt"),
});

export const TlsListenerConfig = z.strictObject({
  host: host.default("0.0.0.0"),
  port: port.default(8883),
  certFile: path,
  keyFile: path,
  /** When set, clients must present a certificate signed by this CA (in addition to a password). */
  caFile: path.optional(),
});

export const ExternalBrokerConfig = z.strictObject({
  /** mqtt://, mqtts://, ws:// or wss:// URL of a broker Lockstep does not run itself. */
  url: z.string().regex(/^(mqtts?|wss?):\/\/[^\s]+$/, { error: "expected an mqtt://, mqtts://, ws:// or wss:// URL" }),
  username: z.string().min(1, { error: "must not be empty" }),
  /** File holding the hub's password (keeps the secret out of the config file and the environment). */
  passwordFile: path,
});

/**
 * Several embedded broker nodes sharing one state through Redis (broker/cluster.ts): retained
 * messages, sessions, queued messages and wills in Redis (aedes-persistence-redis), every publish
 * carried to every node by Redis pub/sub (mqemitter-redis). Without it the broker keeps its state
 * in LevelDB under <dataDir>/mqtt (one node).
 */
export const BrokerClusterConfig = z.strictObject({
  /** redis:// or rediss:// URL of the Redis every node of this cluster uses (one Redis database per cluster). */
  redisUrl: z.string().regex(/^rediss?:\/\/[^\s]+$/, { error: "expected a redis:// or rediss:// URL" }),
  /**
   * This node's name, unique in the cluster and the same across its restarts (its clients' last
   * wills are stored under it). Default: a random one per start.
   */
  nodeId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, { error: 'expected 1-64 letters, digits, ".", "_" or "-"' }).optional(),
  /**
   * How often a node publishes the last wills of dead nodes' clients (default 60 s): a node sends a
   * heartbeat every quarter of it and counts another as dead after three missed ones. Give every
   * node the same value: a node with a longer one looks dead to the others.
   */
  willCheckMs: z
    .number({ error: "expected milliseconds, 1000-3600000" })
    .int({ error: "expected milliseconds, 1000-3600000" })
    .min(1_000, { error: "expected milliseconds, 1000-3600000" })
    .max(3_600_000, { error: "expected milliseconds, 1000-3600000" })
    .optional(),
});
export type BrokerCluster = z.output<typeof BrokerClusterConfig>;

/** The largest valid Lockstep message is a preview at its schema's bounds (~9 MB); real ones are KBs. */
export const DEFAULT_MAX_PACKET_BYTES = 16 * 1024 * 1024;

const count = (max: number) =>
  z.number({ error: `expected a whole number 1-${max}` }).int({ error: `expected a whole number 1-${max}` }).min(1, { error: `expected a whole number 1-${max}` }).max(max, { error: `expected a whole number 1-${max}` });

/**
 * What one client may cost the embedded broker. Defaults fit a fleet with room to spare: an agent
 * subscribes with 4 filters, the page with ~10, and publishes a handful of messages per job step.
 * Clients of the hub role (the hub itself, its bridges) have no subscription or rate limits.
 */
export const BrokerLimitsConfig = z.strictObject({
  /** A packet (CONNECT, PUBLISH …) larger than this closes the connection before it is read. */
  maxPacketBytes: count(268_435_455).min(1024, { error: "expected at least 1024 bytes" }).default(DEFAULT_MAX_PACKET_BYTES),
  /** A SUBSCRIBE with more filters is refused whole (SUBACK 0x80 for each). */
  maxFiltersPerSubscribe: count(100_000).default(64),
  /** Subscriptions one client may hold; further ones are refused (0x80). */
  maxSubscriptionsPerClient: count(1_000_000).default(512),
  /**
   * QoS 1 messages queued for one persistent session (offline, or not acknowledging), as Mosquitto's
   * max_queued_messages (its default too): past it a new message is not queued for that session
   * (counted and logged). An agent's own queue (its commands) holds a handful.
   */
  maxQueuedMessages: count(1_000_000).default(1000),
  /** Publishes per client: a token bucket refilled at `perSecond` up to `burst`; a client over it is disconnected. */
  publishRate: z
    .strictObject({
      perSecond: z.number({ error: "expected a number > 0" }).positive({ error: "expected a number > 0" }).default(50),
      burst: count(1_000_000).default(500),
    })
    .default({ perSecond: 50, burst: 500 }),
  /** Failed logins (MQTT, API, editor; broker/login-backoff.ts): free failures, then waits doubling from baseDelayMs. */
  loginBackoff: z
    .strictObject({
      freeFailures: count(1000).default(3),
      addressFreeFailures: count(100_000).default(30),
      baseDelayMs: count(3_600_000).default(1_000),
      maxDelayMs: count(86_400_000).default(15 * 60_000),
    })
    .default({ freeFailures: 3, addressFreeFailures: 30, baseDelayMs: 1_000, maxDelayMs: 15 * 60_000 }),
});
export type BrokerLimits = z.output<typeof BrokerLimitsConfig>;
const DEFAULT_LIMITS: BrokerLimits = {
  maxPacketBytes: DEFAULT_MAX_PACKET_BYTES,
  maxFiltersPerSubscribe: 64,
  maxSubscriptionsPerClient: 512,
  maxQueuedMessages: 1000,
  publishRate: { perSecond: 50, burst: 500 },
  loginBackoff: { freeFailures: 3, addressFreeFailures: 30, baseDelayMs: 1_000, maxDelayMs: 15 * 60_000 },
};

export const BrokerConfigSchema = z
  .strictObject({
    /** Where the broker keeps its state: credentials, MQTT persistence (<dataDir>/mqtt). */
    dataDir: path,
    credentialsFile: path.optional(),
    topicPrefix: z.string().regex(/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/, {
      error: 'expected letters, digits, "-", "_" and "/" (e.g. "lockstep")',
    }).default(DEFAULT_PREFIX),
    haPrefix: z.string().regex(/^[A-Za-z0-9_-]+$/, { error: 'expected letters, digits, "-" or "_"' }).default(DEFAULT_HA_PREFIX),
    listeners: z
      .strictObject({
        tcp: TcpListenerConfig.default({ host: "0.0.0.0", port: 1883 }),
        /** Standalone WebSocket listener; the hub can instead attach MQTT-over-WS to its HTTP server. */
        ws: WsListenerConfig.optional(),
        tls: TlsListenerConfig.optional(),
      })
      .default({ tcp: { host: "0.0.0.0", port: 1883 } }),
    allowAnonymous: z.boolean({ error: "expected true or false" }).default(false),
    limits: BrokerLimitsConfig.default(DEFAULT_LIMITS),
    /** Use this broker instead of the embedded Aedes. */
    external: ExternalBrokerConfig.optional(),
    /** Share the embedded broker's state with other nodes through Redis (default: one node, LevelDB). */
    cluster: BrokerClusterConfig.optional(),
  })
  .refine((c) => !(c.external && c.cluster), { error: "set either external (a broker Lockstep does not run) or cluster (embedded nodes sharing Redis), not both", path: ["cluster"] })
  .transform((c) => ({
    ...c,
    dataDir: resolve(c.dataDir),
    credentialsFile: resolve(c.credentialsFile ?? join(c.dataDir, "credentials.json")),
  }));

export type BrokerConfig = z.output<typeof BrokerConfigSchema>;
/** What a config file or a caller may write (defaults filled in by the schema). */
export type BrokerConfigInput = z.input<typeof BrokerConfigSchema>;

/** Environment variable -> config field. Listed here so `--help` and docs can show them. */
export const ENV_OVERRIDES: ReadonlyArray<{ env: string; path: readonly string[]; kind: EnvKind }> = [
  { env: "LOCKSTEP_DATA_DIR", path: ["dataDir"], kind: "string" },
  { env: "LOCKSTEP_CREDENTIALS_FILE", path: ["credentialsFile"], kind: "string" },
  { env: "LOCKSTEP_TOPIC_PREFIX", path: ["topicPrefix"], kind: "string" },
  { env: "LOCKSTEP_HA_PREFIX", path: ["haPrefix"], kind: "string" },
  { env: "LOCKSTEP_MQTT_HOST", path: ["listeners", "tcp", "host"], kind: "string" },
  { env: "LOCKSTEP_MQTT_PORT", path: ["listeners", "tcp", "port"], kind: "port" },
  { env: "LOCKSTEP_WS_HOST", path: ["listeners", "ws", "host"], kind: "string" },
  { env: "LOCKSTEP_WS_PORT", path: ["listeners", "ws", "port"], kind: "port" },
  { env: "LOCKSTEP_WS_PATH", path: ["listeners", "ws", "path"], kind: "string" },
  { env: "LOCKSTEP_TLS_HOST", path: ["listeners", "tls", "host"], kind: "string" },
  { env: "LOCKSTEP_TLS_PORT", path: ["listeners", "tls", "port"], kind: "port" },
  { env: "LOCKSTEP_TLS_CERT_FILE", path: ["listeners", "tls", "certFile"], kind: "string" },
  { env: "LOCKSTEP_TLS_KEY_FILE", path: ["listeners", "tls", "keyFile"], kind: "string" },
  { env: "LOCKSTEP_TLS_CA_FILE", path: ["listeners", "tls", "caFile"], kind: "string" },
  { env: "LOCKSTEP_ALLOW_ANONYMOUS", path: ["allowAnonymous"], kind: "boolean" },
  { env: "LOCKSTEP_MQTT_MAX_PACKET_BYTES", path: ["limits", "maxPacketBytes"], kind: "int" },
  { env: "LOCKSTEP_EXTERNAL_URL", path: ["external", "url"], kind: "string" },
  { env: "LOCKSTEP_EXTERNAL_USERNAME", path: ["external", "username"], kind: "string" },
  { env: "LOCKSTEP_EXTERNAL_PASSWORD_FILE", path: ["external", "passwordFile"], kind: "string" },
  { env: "LOCKSTEP_REDIS_URL", path: ["cluster", "redisUrl"], kind: "string" },
  { env: "LOCKSTEP_BROKER_NODE_ID", path: ["cluster", "nodeId"], kind: "string" },
  { env: "LOCKSTEP_BROKER_WILL_CHECK_MS", path: ["cluster", "willCheckMs"], kind: "int" },
];



/** Validate an already-merged config object. `sources` maps "a.b.c" to where a value came from. */
export function parseBrokerConfig(input: unknown, sources: Map<string, string> = new Map()): BrokerConfig {
  const result = BrokerConfigSchema.safeParse(input);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const field = issue.path.map(String).join(".") || "(config)";
    const from = sources.get(field);
    let message = issue.message;
    if (issue.code === "unrecognized_keys") message = `unknown field(s) ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
    return `${field}: ${message}${from ? ` (from ${from})` : ""}`;
  });
  throw new ConfigError(`invalid broker config: ${lines.join("; ")}`, "fix the field(s) named above in the config file or environment");
}
