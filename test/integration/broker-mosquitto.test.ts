/**
 * The generated Mosquitto configuration on the real broker: user changes take effect on reload,
 * a non-agent whose name looks like a host id cannot speak for that host, and the raised queue
 * limits deliver every retained message of a large fleet to a new wildcard subscriber.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Topics } from "../../protocol/index.js";
import { CredentialStore } from "../../broker/credentials.js";
import { spawn } from "node:child_process";
import { main } from "../../hub/cli.js";
import { systemUser } from "../../broker/mosquitto.js";
import { MOSQUITTO_BINARY, MosquittoProcess, freePort, mosquittoAvailable, waitForPort } from "../support/mosquitto.js";
import { BROKER_KINDS, untilConnected } from "../support/brokers.js";

const topics = new Topics();

/** Run Mosquitto on a generated config while `body` runs; its log is in the error if the port never opens. */
async function withMosquitto(confFile: string, port: number, body: () => Promise<void>): Promise<void> {
  const child = spawn(MOSQUITTO_BINARY, ["-c", confFile], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr.on("data", (chunk: Buffer) => (log += chunk.toString()));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  try {
    await waitForPort(port, 10_000, () => child.exitCode !== null).catch((err: Error) => {
      throw new Error(`${err.message}\n${log}`);
    });
    await body();
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

describe.runIf(BROKER_KINDS.includes("mosquitto") && mosquittoAvailable())("generated Mosquitto config on the real broker", () => {
  let dir: string;
  let store: CredentialStore;
  let mosquitto: MosquittoProcess;
  let url: string;
  const clients: MqttClient[] = [];

  async function connect(options: IClientOptions): Promise<MqttClient> {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5_000, ...options });
    clients.push(client);
    return untilConnected(client);
  }

  async function addAndReload(name: string, role: "agent" | "viewer" | "operator" | "hub"): Promise<string> {
    const { password } = await store.add(name, role);
    await mosquitto.reload();
    // SIGHUP is handled asynchronously: retry until the new user gets in.
    for (let i = 0; ; i++) {
      try {
        (await connect({ username: name, password })).end(true);
        return password;
      } catch (err) {
        if (i > 100) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "lockstep-mosquitto-"));
    store = await CredentialStore.open(join(dir, "credentials.json"));
    const port = await freePort();
    url = `mqtt://127.0.0.1:${port}`;
    mosquitto = new MosquittoProcess(store, { dir: join(dir, "mq"), tcp: { host: "127.0.0.1", port } });
    await mosquitto.start();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  });
  afterAll(async () => {
    await mosquitto?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses a removed user after the files are regenerated and Mosquitto reloads", async () => {
    const password = await addAndReload("gone", "agent");
    await store.remove("gone");
    await mosquitto.reload();
    let refused = false;
    for (let i = 0; i < 100 && !refused; i++) {
      try {
        (await connect({ username: "gone", password })).end(true);
        await new Promise((r) => setTimeout(r, 20));
      } catch (err) {
        expect((err as Error).message).toMatch(/Not authorized|Bad username/);
        refused = true;
      }
    }
    expect(refused).toBe(true);
  });

  it("a viewer named like a host cannot publish that host's state or discovery", async () => {
    const viewerPassword = await addAndReload("kitchen", "viewer");
    const hubPassword = await addAndReload("hub-main", "hub");
    const viewer = await connect({ username: "kitchen", password: viewerPassword });
    const hub = await connect({ username: "hub-main", password: hubPassword });
    const seen: string[] = [];
    hub.on("message", (topic) => seen.push(topic));
    await hub.subscribeAsync([topics.allHosts(), "homeassistant/#"], { qos: 1 });

    await viewer.publishAsync(topics.info("kitchen"), "forged", { qos: 1, retain: true });
    await viewer.publishAsync(topics.availability("kitchen"), "online", { qos: 1, retain: true });
    await viewer.publishAsync(topics.haDiscovery("kitchen"), "{}", { qos: 1, retain: true });
    const marker = new Promise<void>((resolve) => hub.on("message", (t) => t === topics.info("marker") && resolve()));
    await hub.publishAsync(topics.info("marker"), "x", { qos: 1 });
    await marker;
    expect(seen).toEqual([topics.info("marker")]);
  });

  it("`lockstep mosquitto-config --tls-cert --tls-key` adds an MQTT-over-TLS listener the real Mosquitto serves", async () => {
    const dataDir = join(dir, "tls-state");
    const out = join(dir, "tls-mq");
    const errors: string[] = [];
    const io = { stdout: () => undefined, stderr: (t: string) => void errors.push(t), env: {} };
    const cert = join(dir, "tls-cert.pem");
    const key = join(dir, "tls-key.pem");
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"], { stdio: "ignore" });
    const passwordFile = join(dir, "tls-agent.pw");
    await writeFile(passwordFile, "tls-agent-password\n", { mode: 0o600 });
    expect(await main(["--data-dir", dataDir, "users", "add", "web9", "--role", "agent", "--password-file", passwordFile], io)).toBe(0);
    const [port, tlsPort] = [await freePort(), await freePort()];
    const base = ["--data-dir", dataDir, "mosquitto-config", "--out", out, "--host", "127.0.0.1", "--port", String(port), "--ws-port", "0"];
    // Half a TLS setup is refused, naming the missing part.
    expect(await main([...base, "--tls-cert", cert], io)).toBe(2);
    expect(errors.join("")).toMatch(/--tls-cert and --tls-key go together/);
    // As root the files would go to Mosquitto's own account; this test's Mosquitto runs as us.
    const asUs = process.getuid?.() === 0 ? ["--run-as-user", "root"] : [];
    expect(await main([...base, ...asUs, "--tls-cert", cert, "--tls-key", key, "--tls-port", String(tlsPort)], io)).toBe(0);
    await withMosquitto(join(out, "mosquitto.conf"), tlsPort, async () => {
      // The certificate is checked (our self-signed CA, name localhost), and the usual users apply.
      const tls = { ca: readFileSync(cert), servername: "localhost", reconnectPeriod: 0, connectTimeout: 5_000 } as const;
      const agent = await mqtt.connectAsync(`mqtts://127.0.0.1:${tlsPort}`, { ...tls, username: "web9", password: "tls-agent-password" });
      const seen = new Promise<string>((resolve) => agent.on("message", (_t, p) => resolve(p.toString())));
      await agent.subscribeAsync(topics.availability("web9"), { qos: 1 });
      await agent.publishAsync(topics.availability("web9"), "online", { qos: 1, retain: true });
      expect(await seen).toBe("online");
      await agent.endAsync();
      await expect(mqtt.connectAsync(`mqtts://127.0.0.1:${tlsPort}`, { ...tls, username: "web9", password: "wrong" })).rejects.toThrow();
    });
  });

  it.runIf(process.getuid?.() === 0 && systemUser("mosquitto") !== undefined)(
    "as root, `lockstep mosquitto-config` output works for a Mosquitto that drops to its own account",
    async () => {
      const dataDir = join(dir, "cli-state");
      const out = join(dir, "cli-mq");
      const io = { stdout: () => undefined, stderr: () => undefined, env: {} };
      const passwordFile = join(dir, "web7.pw");
      const { chmod, writeFile } = await import("node:fs/promises");
      await chmod(dir, 0o755); // mkdtemp made it 0700; Mosquitto's account must reach its files
      await writeFile(passwordFile, "web7-password\n", { mode: 0o600 });
      expect(await main(["--data-dir", dataDir, "users", "add", "web7", "--role", "agent", "--password-file", passwordFile], io)).toBe(0);
      const port = await freePort();
      expect(await main(["--data-dir", dataDir, "mosquitto-config", "--out", out, "--host", "127.0.0.1", "--port", String(port), "--ws-port", "0"], io)).toBe(0);
      await withMosquitto(join(out, "mosquitto.conf"), port, async () => {
        const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { username: "web7", password: "web7-password", reconnectPeriod: 0 });
        await client.publishAsync(topics.availability("web7"), "online", { qos: 1, retain: true });
        await client.endAsync();
      });
    },
  );

  it("delivers all of 3,000 retained messages to a new wildcard subscriber", async () => {
    const hubPassword = await addAndReload("hub-fill", "hub");
    const writer = await connect({ username: "hub-fill", password: hubPassword });
    const count = 3_000;
    for (let i = 0; i < count; i++) {
      writer.publish(topics.compartment(`fill-${i}`, "git"), '{"status":"ok"}', { qos: 1, retain: true });
    }
    // The last publish acknowledged means all were stored (one connection, in order).
    await writer.publishAsync(topics.compartment("fill-last", "git"), "{}", { qos: 1, retain: true });

    const viewerPassword = await addAndReload("fleet-page", "viewer");
    const reader = await connect({ username: "fleet-page", password: viewerPassword });
    const received = new Set<string>();
    const all = new Promise<void>((resolve) => {
      reader.on("message", (topic) => {
        if (topic.includes("/hosts/fill-")) received.add(topic);
        if (received.size === count + 1) resolve();
      });
    });
    await reader.subscribeAsync(`${topics.root}/hosts/+/compartments/+`, { qos: 1 });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
    clearTimeout(timer);
    expect(received.size).toBe(count + 1);
  });
});
