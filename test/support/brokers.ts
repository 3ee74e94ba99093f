/**
 * Brokers for tests: the same suites run against the embedded Aedes broker (the hub's own,
 * with authentication, ACLs and LevelDB persistence) and a real Mosquitto configured by the
 * files Lockstep generates from the same credential store.
 *
 *   const broker = await startTestBroker({ kind: "aedes" });
 *   const { username, password } = await broker.credentials("agent", "web1");
 *   ...
 *   await broker.stop();
 *
 * LOCKSTEP_TEST_BROKERS=aedes (or =mosquitto, or =aedes,mosquitto) chooses the kinds suites run for.
 *
 * Differences a suite running on both must allow for:
 * - A forbidden subscription gets SUBACK 0x80 from Aedes; Mosquitto 2.0 grants it and then
 *   delivers nothing the ACL forbids. Assert on deliveries, not on the SUBACK.
 * - A persistent session's queued messages arrive right after CONNACK: attach the "message"
 *   handler before connecting (mqtt.connect + on("message")), not after await connectAsync().
 * - LOCKSTEP_TEST_LOG_LEVEL=debug shows the embedded broker's log.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as netConnect } from "node:net";
import mqtt, { type MqttClient } from "mqtt";
import mqttPacket, { type Packet } from "mqtt-packet";
import pino from "pino";
import { parseBrokerConfig } from "../../broker/config.js";
import { CredentialStore, type UserRole } from "../../broker/credentials.js";
import { EmbeddedBroker } from "../../broker/embedded.js";
import { agentClientId } from "../../protocol/index.js";
import { MosquittoProcess, freePort } from "./mosquitto.js";

export type BrokerKind = "aedes" | "mosquitto";
export type Role = "agent" | "viewer" | "operator" | "hub";

export interface TestBroker {
  kind: BrokerKind;
  /** mqtt://127.0.0.1:PORT */
  url: string;
  /** ws://127.0.0.1:PORT/mqtt (where the broker has a WebSocket listener) */
  wsUrl?: string;
  /**
   * Create (or return the same) credentials for a client of the given role. For agents, name is
   * the host id and the user name, and clientId the host's agent client id (the embedded broker
   * accepts no other from an agent); other roles get the user name `<role>-<name>` and no client id.
   */
  credentials(role: Role, name: string): Promise<TestCredentials>;
  /** Stop and start again on the same port, keeping persisted state; `whileDown` runs in between. */
  restart(opts?: { whileDown?: () => Promise<void> }): Promise<void>;
  stop(): Promise<void>;
  /** The broker's state directory (credentials, persistence, generated config). */
  dataDir?: string;
  /** The embedded broker itself (aedes kind only), e.g. to attachWebSocket() to a test HTTP server. */
  embedded?: EmbeddedBroker;
}

const KNOWN_KINDS: BrokerKind[] = ["aedes", "mosquitto"];

function brokerKindsFromEnv(value: string | undefined): BrokerKind[] {
  if (!value) return [...KNOWN_KINDS];
  const kinds = value.split(",").map((k) => k.trim()).filter(Boolean);
  for (const kind of kinds) {
    if (!KNOWN_KINDS.includes(kind as BrokerKind)) {
      throw new Error(`LOCKSTEP_TEST_BROKERS: unknown broker kind "${kind}" (use ${KNOWN_KINDS.join(", ")})`);
    }
  }
  return kinds as BrokerKind[];
}

export const BROKER_KINDS: BrokerKind[] = brokerKindsFromEnv(process.env.LOCKSTEP_TEST_BROKERS);

export async function startTestBroker(opts: { kind?: BrokerKind; dataDir?: string } = {}): Promise<TestBroker> {
  const kind = opts.kind ?? "aedes";
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), `lockstep-${kind}-`)));
  try {
    return kind === "aedes" ? await startAedes(dataDir, ownDir) : await startMosquitto(dataDir, ownDir);
  } catch (err) {
    if (ownDir) await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
}

/** Usernames and passwords handed out so far, so repeated calls return the same credentials. */
export interface TestCredentials {
  username: string;
  password: string;
  clientId?: string;
}

class IssuedCredentials {
  private issued = new Map<string, { role: Role; username: string; password: string }>();

  async get(store: CredentialStore, role: Role, name: string, onAdded: (username: string, password: string) => Promise<void>): Promise<TestCredentials> {
    const username = role === "agent" ? name : `${role}-${name}`;
    const withId = (password: string) => (role === "agent" ? { username, password, clientId: agentClientId(name) } : { username, password });
    const known = this.issued.get(username);
    if (known) {
      if (known.role !== role) throw new Error(`test user "${username}" already exists with role ${known.role}`);
      return withId(known.password);
    }
    const { password } = await store.add(username, role as UserRole);
    this.issued.set(username, { role, username, password });
    await onAdded(username, password);
    return withId(password);
  }
}

async function startAedes(dataDir: string, ownDir: boolean): Promise<TestBroker> {
  const logger = pino({ level: process.env.LOCKSTEP_TEST_LOG_LEVEL ?? "silent" });
  const config = (tcpPort: number, wsPort: number) =>
    parseBrokerConfig({
      dataDir,
      listeners: { tcp: { host: "127.0.0.1", port: tcpPort }, ws: { host: "127.0.0.1", port: wsPort, path: "/mqtt" } },
    });
  let broker = new EmbeddedBroker(config(0, 0), logger);
  await broker.start();
  const { tcp, ws } = broker.ports;
  const issued = new IssuedCredentials();
  let stopped = false;

  const handle: TestBroker = {
    kind: "aedes",
    url: broker.url,
    wsUrl: broker.wsUrl,
    dataDir,
    embedded: broker,
    credentials: (role, name) => issued.get(broker.credentials, role, name, async () => undefined),
    async restart(opts = {}) {
      await broker.stop();
      await opts.whileDown?.();
      broker = new EmbeddedBroker(config(tcp, ws ?? 0), logger);
      await broker.start();
      handle.embedded = broker;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await broker.stop();
      if (ownDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
  return handle;
}

async function startMosquitto(dataDir: string, ownDir: boolean): Promise<TestBroker> {
  const store = await CredentialStore.open(join(dataDir, "credentials.json"));
  const tcpPort = await freePort();
  const wsPort = await freePort();
  const mosquitto = new MosquittoProcess(store, {
    dir: join(dataDir, "mosquitto"),
    tcp: { host: "127.0.0.1", port: tcpPort },
    ws: { host: "127.0.0.1", port: wsPort },
  });
  await mosquitto.start();
  const url = `mqtt://127.0.0.1:${tcpPort}`;
  const issued = new IssuedCredentials();
  let stopped = false;

  return {
    kind: "mosquitto",
    url,
    wsUrl: `ws://127.0.0.1:${wsPort}/mqtt`,
    dataDir,
    credentials: (role, name) =>
      issued.get(store, role, name, async (username, password) => {
        await mosquitto.reload();
        await waitUntilAccepted(url, username, password, mosquitto);
      }),
    async restart(opts = {}) {
      await mosquitto.stop();
      await opts.whileDown?.();
      await mosquitto.start();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await mosquitto.stop();
      if (ownDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** SIGHUP reloads asynchronously: connect until the new user is accepted (or give up after 5 s). */
async function waitUntilAccepted(url: string, username: string, password: string, mosquitto: MosquittoProcess): Promise<void> {
  const deadline = Date.now() + 5_000;
  let lastError = "";
  while (Date.now() < deadline) {
    try {
      const client = await mqtt.connectAsync(url, { username, password, reconnectPeriod: 0, connectTimeout: 2_000, clientId: `lockstep-probe-${Math.random().toString(16).slice(2)}` });
      await client.endAsync();
      return;
    } catch (err) {
      lastError = (err as Error).message;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  throw new Error(`mosquitto did not accept new user "${username}" after reload: ${lastError}\nmosquitto log:\n${mosquitto.log}`);
}

/** Resolves once `client` (made with reconnectPeriod 0) is connected; on a refusal ends it and rejects. */
export function untilConnected(client: MqttClient): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    client.once("connect", () => resolve(client));
    client.once("error", (err) => {
      client.end(true);
      reject(err);
    });
  });
}

/**
 * CONNACK code for a CONNECT with a zero-length client id, written by hand (MQTT.js will not send
 * one with a persistent session).
 */
export function emptyClientIdConnack(port: number, username: string, password: string, clean: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, "127.0.0.1");
    const parser = mqttPacket.parser();
    parser.on("packet", (packet: Packet) => {
      if (packet.cmd !== "connack") return;
      socket.destroy();
      resolve(packet.returnCode ?? -1);
    });
    socket.on("data", (chunk) => parser.parse(chunk));
    socket.on("error", reject);
    const str = (text: string) => {
      const b = Buffer.from(text);
      return Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b]);
    };
    // Protocol "MQTT" level 4, flags user name + password (+ clean session), keepalive 30, empty client id.
    const body = Buffer.concat([str("MQTT"), Buffer.from([4, clean ? 0xc2 : 0xc0, 0, 30]), str(""), str(username), str(password)]);
    if (body.length > 127) return reject(new Error("CONNECT too long for a one-byte length"));
    socket.write(Buffer.concat([Buffer.from([0x10, body.length]), body]));
  });
}
