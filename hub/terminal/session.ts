/**
 * The terminal client's connection to the hub, as the user: the HTTP API with Basic auth and the
 * broker over MQTT. Fleet state comes from the same FleetView the hub uses (protocol schemas,
 * one cache); rollouts are read from their retained topics with the protocol's RolloutProgress.
 */
import mqtt, { type MqttClient } from "mqtt";
import { decodeJson, encodeJson, FleetExpected, JobOutput, RolloutProgress, Topics, type Command, type CommandOp } from "../../protocol/index.js";
import { buildCommand, type CommandArgsOf } from "../../protocol/command.js";
import { newCommandId } from "../../rollout/fleet-port.js";
import { FleetView } from "../../rollout/fleet-view.js";
import type { HubCredentials } from "./credentials.js";
import { ExitCode, TerminalError } from "./errors.js";

/** How long a command from the terminal stays valid for an agent that is offline. */
const COMMAND_TTL_MS = 10 * 60_000;
const CONNECT_TIMEOUT_MS = 10_000;

export class HubSession {
  readonly topics = new Topics();
  private mqttClient?: MqttClient;
  private fleetView?: FleetView;
  private readonly rolloutMap = new Map<string, RolloutProgress>();
  private readonly rolloutListeners = new Set<(r: RolloutProgress) => void>();

  constructor(readonly creds: HubCredentials) {}

  /** GET/POST /api/...; a refused login is exit 3, an HTTP error exit 1 with the hub's message. */
  async api<T = unknown>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
    const auth = Buffer.from(`${this.creds.user}:${this.creds.password}`).toString("base64");
    let res: Response;
    try {
      res = await fetch(`${this.creds.hub}${path}`, {
        method,
        headers: { authorization: `Basic ${auth}`, accept: "application/json", ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(60_000),
      });
    } catch (err) {
      throw new TerminalError(`cannot reach the hub at ${this.creds.hub}: ${(err as Error).cause ? String((err as Error & { cause: Error }).cause.message) : (err as Error).message}`, ExitCode.unreachable, "check LOCKSTEP_HUB or hub in the config");
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (res.status === 401) throw new TerminalError(`the hub refused the login of ${this.creds.user}`, ExitCode.unreachable, "check the user name and password");
    if (!res.ok) {
      const message = (json as { error?: string } | undefined)?.error ?? (text.slice(0, 200) || res.statusText);
      throw new TerminalError(`${method} ${path}: ${res.status} ${message}`, ExitCode.failure);
    }
    return json as T;
  }

  /** Connect to the broker and wait for the retained fleet state (FleetView's cache). */
  async fleet(): Promise<FleetView> {
    if (this.fleetView) return this.fleetView;
    const client = await this.connect();
    const fleet = new FleetView({ client, topics: this.topics });
    await fleet.start();
    this.fleetView = fleet;
    client.on("message", (topic, payload) => this.onMessage(topic, payload));
    await client.subscribeAsync(this.topics.allRollouts(), { qos: 1 });
    await this.retainedDelivered(client);
    return fleet;
  }

  /**
   * fleet/expected read on its own exact subscription: the wildcard host-state scan may still be
   * delivering when the hub's status marker arrives, an exact topic is answered in order.
   */
  async expected(): Promise<FleetExpected | undefined> {
    return (await this.retained(this.topics.expected(), (p) => decodeJson(FleetExpected, p))) ?? (await this.fleet()).expected();
  }

  /** The rollouts seen on the broker (retained progress), newest first. */
  rollouts(): RolloutProgress[] {
    return [...this.rolloutMap.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  rollout(id: string): RolloutProgress | undefined {
    return this.rolloutMap.get(id);
  }

  onRollout(listener: (r: RolloutProgress) => void): () => void {
    this.rolloutListeners.add(listener);
    return () => this.rolloutListeners.delete(listener);
  }

  /** One retained value (undefined when the topic holds none, known by the hub's status after it). */
  async retained<T>(topic: string, decode: (payload: Buffer) => { ok: true; value: T } | { ok: false; error: string }): Promise<T | undefined> {
    return (await this.retainedAll(topic, (t) => t === topic, decode)).get(topic);
  }

  /** Every retained value under a filter (wildcards allowed) whose topic `accept`s, by topic. */
  async retainedAll<T>(filter: string, accept: (topic: string) => boolean, decode: (payload: Buffer) => { ok: true; value: T } | { ok: false; error: string }): Promise<Map<string, T>> {
    const client = await this.connect();
    const values = new Map<string, T>();
    const handler = (t: string, payload: Buffer) => {
      if (!accept(t) || payload.length === 0) return;
      const r = decode(payload);
      if (r.ok) values.set(t, r.value);
    };
    client.on("message", handler);
    await client.subscribeAsync(filter, { qos: 1 });
    await this.retainedDelivered(client);
    client.off("message", handler);
    await client.unsubscribeAsync(filter).catch(() => undefined);
    return values;
  }

  /** Live output lines of one job (not retained: only what is printed from now on). */
  async followOutput(host: string, jobId: string, onLines: (lines: JobOutput["lines"]) => void): Promise<() => Promise<void>> {
    const client = await this.connect();
    const topic = this.topics.jobOutput(host, jobId);
    const handler = (t: string, payload: Buffer) => {
      if (t !== topic) return;
      const r = decodeJson(JobOutput, payload);
      if (r.ok) onLines(r.value.lines);
    };
    client.on("message", handler);
    await client.subscribeAsync(topic, { qos: 1 });
    return async () => {
      client.off("message", handler);
      await client.unsubscribeAsync(topic).catch(() => undefined);
    };
  }

  /** Publish one command the way every hub-side sender builds it; the broker records it in the audit log. */
  async sendCommand<O extends CommandOp>(host: string, op: O, args: CommandArgsOf<O>): Promise<Command> {
    const client = await this.connect();
    const cmd = buildCommand(op, args, { id: newCommandId(), requestedBy: this.creds.user, expiresAt: new Date(Date.now() + COMMAND_TTL_MS) });
    await client.publishAsync(this.topics.commands(host), encodeJson(cmd), { qos: 1 });
    return cmd;
  }

  async close(): Promise<void> {
    await this.fleetView?.stop();
    await this.mqttClient?.endAsync().catch(() => undefined);
  }

  private async connect(): Promise<MqttClient> {
    if (this.mqttClient) return this.mqttClient;
    try {
      this.mqttClient = await mqtt.connectAsync(this.creds.mqtt, {
        username: this.creds.user,
        password: this.creds.password,
        clientId: `lockstep-cli-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
        reconnectPeriod: 0,
        connectTimeout: CONNECT_TIMEOUT_MS,
      });
    } catch (err) {
      const e = err as Error & { code?: number };
      const refused = e.code === 4 || e.code === 5 || /not authorized|bad user/i.test(e.message);
      throw new TerminalError(
        refused ? `the broker refused the login of ${this.creds.user}` : `cannot reach the broker at ${this.creds.mqtt}: ${e.message}`,
        ExitCode.unreachable,
        refused ? "check the user name and password" : "check LOCKSTEP_MQTT_URL or mqtt in the config",
      );
    }
    return this.mqttClient;
  }

  /**
   * The broker sends retained messages per subscription in order: once the hub's own retained
   * status (subscribed last) arrives, what came before it has been delivered.
   */
  private async retainedDelivered(client: MqttClient): Promise<void> {
    const topic = this.topics.hubStatus();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, 5_000);
      function done() {
        clearTimeout(timer);
        client.off("message", onMessage);
        resolve();
      }
      const onMessage = (t: string) => {
        if (t === topic) done();
      };
      client.on("message", onMessage);
      client.subscribe(topic, { qos: 1 });
    });
    await client.unsubscribeAsync(topic).catch(() => undefined);
  }

  private onMessage(topic: string, payload: Buffer): void {
    const parsed = this.topics.parse(topic);
    if (parsed?.kind !== "rollout" || payload.length === 0) return;
    const r = decodeJson(RolloutProgress, payload);
    if (!r.ok) return;
    this.rolloutMap.set(r.value.id, r.value);
    for (const l of this.rolloutListeners) l(r.value);
  }
}
