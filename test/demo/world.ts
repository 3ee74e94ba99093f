/**
 * Everything Lockstep talks to, on one machine: the hub (a child process running the shipped
 * flows), a local GitHub on the fleet's real bare repository, and N real agents (TestFleet: git,
 * Nix, agent processes) logged in to the hub's broker. Plus a local Apprise-like receiver that
 * records the notifications the flows POST. The demo and the end-to-end tests both build on it.
 *
 *   const world = await LockstepWorld.create({ root, hosts: ["alpha", "beta", "gamma"] });
 *   await world.fleet.bootstrap();
 *   const pr = await world.openLockUpdatePr();
 *   const res = await world.api("POST", "/api/flake-updates/merge-and-deploy", { pr_number: pr.number });
 *   await world.stop();
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { CredentialStore } from "../../broker/credentials.js";
import { RolloutProgress } from "../../protocol/schemas.js";
import { isFinalRolloutState } from "../../protocol/index.js";
import { decodeJson } from "../../protocol/payload.js";
import { Topics } from "../../protocol/topics.js";
import { TestFleet, type FleetHostOptions } from "../fleet/fleet.js";
import type { TestPackage } from "../fleet/repo.js";
import { startTestBroker, type TestBroker } from "../support/brokers.js";
import { startLocalGitHub, type LocalGitHub } from "../github/server.js";
import { startHubProcess, type HubProcess } from "./hub-process.js";

/** The operator account the world creates (tests log in with it; the demo prints it). */
export const OPERATOR = { name: "operator", password: "operator-password-for-tests" };
const TOKEN = "ghp_LockstepWorldToken0123456789abcdef";
const WEBHOOK_SECRET = "lockstep-world-webhook-secret";

export interface Notification {
  title: string;
  body: string;
  type: string;
  at: number;
}

export interface LockstepWorldOptions {
  root: string;
  hosts: string[];
  hostOptions?: Record<string, FleetHostOptions>;
  /** Merged into the hub's config file (rollout defaults, automatic, ...). */
  hubConfig?: Record<string, unknown>;
  /** Extra LOCKSTEP_* environment for the hub. */
  hubEnv?: NodeJS.ProcessEnv;
  onHubLine?: (line: string, stream: "stdout" | "stderr") => void;
  /** Deliver GitHub webhooks to the hub (default true). */
  webhooks?: boolean;
  /**
   * "embedded" (default): the hub's own broker. "mosquitto": a real Mosquitto configured from
   * Lockstep's credential store, which the hub uses as an external broker.
   */
  broker?: "embedded" | "mosquitto";
  agentLogLevel?: "debug" | "info" | "warn" | "error";
  /** More users in the hub's credential store, made before it starts (e.g. a viewer that scrapes /metrics). */
  users?: Array<{ name: string; role: "viewer" | "operator"; password: string }>;
}

/** A tiny Apprise API stand-in: records every JSON POST. */
async function startReceiver(): Promise<{ url: string; received: Notification[]; server: Server }> {
  const received: Notification[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Partial<Notification>;
        received.push({ title: String(body.title ?? ""), body: String(body.body ?? ""), type: String(body.type ?? ""), at: Date.now() });
        res.writeHead(200, { "content-type": "application/json" }).end('{"success":true}');
      } catch {
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/notify/lockstep`, received, server };
}

export class LockstepWorld {
  readonly topics = new Topics();
  /** Latest retained rollout progress per id, as seen on MQTT. */
  readonly rollouts = new Map<string, RolloutProgress>();
  /** Every availability message seen (host, value, time): explains "offline" surprises in failures. */
  readonly availabilityLog: Array<{ host: string; value: string; at: string; retain: boolean }> = [];
  /** Latest availability per host as this world's own client sees it. */
  readonly availability = new Map<string, string>();
  private readonly rolloutListeners = new Set<() => void>();

  private constructor(
    readonly opts: LockstepWorldOptions,
    readonly dataDir: string,
    readonly configFile: string,
    readonly github: LocalGitHub,
    public hub: HubProcess,
    readonly fleet: TestFleet,
    readonly notifications: Notification[],
    private readonly receiver: Server,
    private readonly watcher: MqttClient,
    /** MQTT credentials of an operator (to publish actions, read retained state). */
    readonly mqttOperator: { username: string; password: string },
    /** The external Mosquitto (broker: "mosquitto"), e.g. to restart it. */
    readonly externalBroker?: TestBroker,
  ) {}

  /** MQTT credentials of any role, made on first use (user name `<role>-<name>`, an agent's its host id), on the broker the world runs. */
  mqttCredentials!: (role: "agent" | "hub" | "viewer" | "operator", name: string) => Promise<{ username: string; password: string }>;

  static async create(opts: LockstepWorldOptions): Promise<LockstepWorld> {
    const dataDir = join(opts.root, "hub");
    mkdirSync(dataDir, { recursive: true });
    const fleetRoot = join(opts.root, "fleet");
    // What started so far, stopped (newest first) if a later part fails: a half-built world must not
    // leave a hub, a GitHub or agents running into the next test.
    const started: Array<() => Promise<unknown>> = [];
    try {
      return await LockstepWorld.build(opts, dataDir, fleetRoot, started);
    } catch (err) {
      for (const stop of started.reverse()) await stop().catch(() => undefined);
      throw err;
    }
  }

  private static async build(opts: LockstepWorldOptions, dataDir: string, fleetRoot: string, started: Array<() => Promise<unknown>>): Promise<LockstepWorld> {
    // The GitHub server reads the bare repo lazily: it can start before TestFleet creates the repo.
    const github = await startLocalGitHub({ repo: join(fleetRoot, "repo", "origin.git"), owner: "acme", name: "fleet", token: TOKEN });
    started.push(() => github.stop());
    const receiver = await startReceiver();
    started.push(() => new Promise<void>((r) => { receiver.server.closeAllConnections(); receiver.server.close(() => r()); }));
    writeFileSync(join(dataDir, "github-token"), TOKEN + "\n", { mode: 0o600 });
    writeFileSync(join(dataDir, "webhook-secret"), WEBHOOK_SECRET + "\n", { mode: 0o600 });

    // Users exist before the hub starts, so it prints no generated password.
    const store = await CredentialStore.open(join(dataDir, "credentials.json"));
    await store.add(OPERATOR.name, "operator", OPERATOR.password);
    for (const u of opts.users ?? []) await store.add(u.name, u.role, u.password);
    const issued = new Map<string, { username: string; password: string }>();
    // MQTT users: in the hub's own store (embedded broker) or the external Mosquitto's.
    const external = opts.broker === "mosquitto" ? await startTestBroker({ kind: "mosquitto", dataDir: join(opts.root, "mosquitto") }) : undefined;
    if (external) started.push(() => external.stop());
    const credentials = async (role: "agent" | "hub" | "viewer" | "operator", name: string) => {
      if (external) return external.credentials(role, name);
      const username = role === "agent" ? name : `${role}-${name}`;
      const known = issued.get(username);
      if (known) return known;
      const { password } = await store.add(username, role);
      const c = { username, password };
      issued.set(username, c);
      return c;
    };
    const brokerSection: Record<string, unknown> = {};
    if (external) {
      const hubCreds = await external.credentials("hub", "hub");
      writeFileSync(join(dataDir, "broker-password"), hubCreds.password + "\n", { mode: 0o600 });
      brokerSection.broker = { external: { url: external.url, username: hubCreds.username, passwordFile: join(dataDir, "broker-password") } };
    }

    const configFile = join(dataDir, "hub-config.json");
    const config = {
      github: {
        owner: "acme",
        repo: "fleet",
        apiBaseUrl: github.url,
        tokenFile: join(dataDir, "github-token"),
        webhookSecretFile: join(dataDir, "webhook-secret"),
        pollIntervalMs: 30_000,
        mergeableRetryDelayMs: 200,
      },
      notify: { appriseUrl: receiver.url },
      homeAssistant: { enabled: false },
      ...brokerSection,
      ...opts.hubConfig,
    };
    writeFileSync(configFile, JSON.stringify(config, null, 2));
    const hub = await startHubProcess({ dataDir, configFile, ...(opts.onHubLine ? { onLine: opts.onHubLine } : {}), ...(opts.hubEnv ? { env: opts.hubEnv } : {}) });
    started.push(() => hub.stop());
    if (opts.webhooks !== false) github.addWebhook(`${hub.baseUrl}/api/github/webhook`, WEBHOOK_SECRET);

    const fleet = await TestFleet.create({
      root: fleetRoot,
      hosts: opts.hosts,
      broker: { url: hub.mqttUrl, credentials },
      // What the demo's Activity card shows for the bootstrap commands: no test-harness name.
      hubName: "setup",
      logLevel: opts.agentLogLevel ?? "info",
      ...(opts.hostOptions ? { hostOptions: opts.hostOptions } : {}),
    });
    started.push(() => fleet.stop());
    const watcherCreds = await credentials("viewer", "world");
    const watcher = await mqtt.connectAsync(hub.mqttUrl, { ...watcherCreds, reconnectPeriod: 500, protocolVersion: 4 });
    started.push(() => watcher.endAsync());
    const mqttOperator = external ? await credentials("operator", "world") : { username: OPERATOR.name, password: OPERATOR.password };
    const world = new LockstepWorld(opts, dataDir, configFile, github, hub, fleet, receiver.received, receiver.server, watcher, mqttOperator, external);
    world.mqttCredentials = credentials;
    watcher.on("message", (topic, payload, packet) => world.onMessage(topic, payload, packet.retain));
    await watcher.subscribeAsync([world.topics.allRollouts(), world.topics.availability("+")], { qos: 1 });
    return world;
  }

  private onMessage(topic: string, payload: Buffer, retain: boolean): void {
    const t = this.topics.parse(topic);
    if (t?.kind === "availability") {
      this.availabilityLog.push({ host: t.host, value: payload.toString(), at: new Date().toISOString(), retain });
      this.availability.set(t.host, payload.toString());
      for (const l of this.rolloutListeners) l();
      return;
    }
    if (t?.kind !== "rollout") return;
    const d = decodeJson(RolloutProgress, payload);
    if (!d.ok) return;
    this.rollouts.set(t.rolloutId, d.value);
    for (const l of this.rolloutListeners) l();
  }

  /** Call the hub's HTTP API as the operator (or as `auth`). */
  async api(method: "GET" | "POST", path: string, body?: unknown, auth = OPERATOR): Promise<{ status: number; body: unknown }> {
    const res = await fetch(`${this.hub.baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Basic ${Buffer.from(`${auth.name}:${auth.password}`).toString("base64")}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, body: parsed };
  }

  /**
   * What the weekly GitHub action does: bump an input (or change its package set), `nix flake
   * update` on a branch, push, and open the PR. Returns the PR number and its head.
   */
  async openLockUpdatePr(opts: { input?: string; createdAt?: Date; branch?: string; packages?: Record<string, Partial<TestPackage>> } = {}): Promise<{ number: number; headSha: string; branch: string }> {
    // With `packages`, the input's package set changes (versions, sizes, broken builds): what previews show.
    if (opts.packages) this.fleet.repo.bumpPackages(opts.input ?? "nixpkgs", opts.packages);
    else this.fleet.repo.bumpInput(opts.input ?? "nixpkgs");
    const upd = this.fleet.repo.lockUpdateBranch(opts.branch ?? "update_flake_lock_action");
    const number = await this.github.openPullRequest({
      head: upd.branch,
      title: "flake.lock: Update",
      labels: ["automated", "dependencies"],
      body: upd.prBody,
      ...(opts.createdAt ? { createdAt: opts.createdAt } : {}),
    });
    return { number, headSha: upd.sha, branch: upd.branch };
  }

  /** Resolve with the rollout once `predicate` holds for its retained progress. */
  waitForRollout(id: string, predicate: (p: RolloutProgress) => boolean, timeoutMs: number): Promise<RolloutProgress> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const p = this.rollouts.get(id);
        if (p && predicate(p)) {
          cleanup();
          resolve(p);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`rollout ${id}: timed out after ${timeoutMs} ms; last progress: ${JSON.stringify(this.rollouts.get(id) ?? null)}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.rolloutListeners.delete(check);
      };
      this.rolloutListeners.add(check);
      check();
    });
  }

  /** Resolve once this world's client (fresh retained state included) sees the host online/offline. */
  waitForAvailability(host: string, value: "online" | "offline", timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.availability.get(host) === value) {
          cleanup();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        const seen = this.availabilityLog.filter((a) => a.host === host).slice(-6);
        reject(new Error(`${host}: not ${value} after ${timeoutMs} ms; last availability messages: ${JSON.stringify(seen)}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.rolloutListeners.delete(check);
      };
      this.rolloutListeners.add(check);
      check();
    });
  }

  waitForRolloutEnd(id: string, timeoutMs: number): Promise<RolloutProgress> {
    return this.waitForRollout(id, (p) => isFinalRolloutState(p.state), timeoutMs);
  }

  /** A Node-RED editor token for the operator (the editor's own login). */
  async editorToken(): Promise<string> {
    const res = await fetch(`${this.hub.baseUrl}/admin/auth/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ client_id: "node-red-editor", grant_type: "password", scope: "*", username: OPERATOR.name, password: OPERATOR.password }),
    });
    if (res.status !== 200) throw new Error(`editor login failed: HTTP ${res.status}`);
    return ((await res.json()) as { access_token: string }).access_token;
  }

  /** Press an inject node's button, as in the editor. */
  async pressInject(nodeId: string): Promise<void> {
    const res = await fetch(`${this.hub.baseUrl}/admin/inject/${nodeId}`, { method: "POST", headers: { authorization: `Bearer ${await this.editorToken()}` } });
    if (res.status !== 200) throw new Error(`inject ${nodeId}: HTTP ${res.status} ${await res.text()}`);
  }

  /**
   * Stop the hub (SIGTERM, or SIGKILL for a crash) and start it again on the same data dir, config
   * and ports; `env` adds LOCKSTEP_* overrides.
   */
  async restartHub(env: NodeJS.ProcessEnv = {}, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    await this.hub.stop(signal);
    const { opts } = this;
    this.hub = await startHubProcess({
      dataDir: this.dataDir,
      configFile: this.configFile,
      env: {
        ...opts.hubEnv,
        ...env,
        ...(this.externalBroker ? {} : { LOCKSTEP_MQTT_PORT: String(new URL(this.hub.mqttUrl).port) }),
        LOCKSTEP_HTTP_PORT: String(new URL(this.hub.baseUrl).port),
      },
      ...(opts.onHubLine ? { onLine: opts.onHubLine } : {}),
    });
  }

  async stop(): Promise<void> {
    await this.fleet.stop().catch(() => undefined);
    await this.watcher.endAsync().catch(() => undefined);
    await this.hub.stop().catch(() => undefined);
    await this.github.stop().catch(() => undefined);
    this.receiver.closeAllConnections();
    await new Promise<void>((r) => this.receiver.close(() => r()));
    await this.externalBroker?.stop().catch(() => undefined);
  }
}
