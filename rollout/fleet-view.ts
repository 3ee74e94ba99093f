/**
 * The fleet view: the hub's MQTT view of the fleet, built once by the hub and shared by rollouts,
 * Node-RED, Home Assistant and the API: a live cache of every host's retained state (availability,
 * info, compartments) and job states, commands out (QoS 1), and rollout progress, history, audit
 * events and fleet/expected in. Implements the rollout engine's FleetPort and RolloutPublisher.
 *
 * Every command sent here is also recorded on fleet/events ("command.sent", actor = requestedBy):
 * this is the one place hub-side code (rollout engine, Node-RED nodes) sends commands, so the audit
 * log gets each exactly once, with an embedded or an external broker alike.
 *
 * Every incoming payload is validated with the protocol schemas; a malformed one is logged and
 * ignored, never thrown. Topic strings come only from protocol Topics.
 */
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import pino, { type Logger } from "pino";
import {
  Availability,
  Compartment,
  FleetExpected,
  HostInfo,
  JobState,
  type AuditEvent,
  type CommandOp,
  type RolloutHistoryEntry,
  type RolloutProgress,
} from "../protocol/schemas.js";
import { AutomaticState } from "../protocol/automatic.js";
import { commandSentEvent } from "../protocol/audit.js";
import { buildCommand } from "../protocol/command.js";
import { decodeJson, encodeJson } from "../protocol/payload.js";
import { Topics } from "../protocol/topics.js";
import { FleetNotConnectedError } from "./errors.js";
import {
  newCommandId,
  waitForHostState,
  waitForTerminalJob,
  type CommandArgsInput,
  type CommandMeta,
  type FleetChange,
  type FleetPort,
  type HostSnapshot,
  type RolloutPublisher,
} from "./fleet-port.js";

export interface FleetViewOptions {
  /** An existing connection; FleetView subscribes on it and leaves it open on stop(). */
  client?: MqttClient;
  /** Or connect itself: mqtt://host:port (username/password from broker credentials, role "hub"). */
  url?: string;
  username?: string;
  password?: string;
  /** More MQTT.js options when connecting itself. */
  connectOptions?: IClientOptions;
  topics?: Topics;
  logger?: Logger;
  /** How many job states to keep in memory (oldest dropped first). Default 10,000. */
  jobCacheSize?: number;
}

export class FleetView implements FleetPort, RolloutPublisher {
  readonly topics: Topics;
  private readonly log: Logger;
  private client?: MqttClient;
  private readonly ownsClient: boolean;
  private readonly hostMap = new Map<string, HostSnapshot>();
  private readonly jobs = new Map<string, JobState>();
  private readonly jobCacheSize: number;
  private readonly listeners = new Set<(c: FleetChange) => void>();
  private readonly expectedListeners = new Set<(expected: FleetExpected | undefined) => void>();
  private latestExpected?: FleetExpected;
  private started = false;
  /** Host state, job states and fleet/expected: subscribed on start, unsubscribed on a shared client's stop. */
  private readonly subscriptions: string[];
  private readonly onMessage = (topic: string, payload: Buffer) => this.handle(topic, payload);

  constructor(private readonly opts: FleetViewOptions) {
    if (!opts.client && !opts.url) throw new FleetNotConnectedError("create a FleetView without a client or url");
    this.topics = opts.topics ?? new Topics();
    this.log = (opts.logger ?? pino({ level: "silent" })).child({ component: "fleet-view" });
    this.client = opts.client;
    this.ownsClient = !opts.client;
    this.jobCacheSize = opts.jobCacheSize ?? 10_000;
    this.subscriptions = [...this.topics.allHostState(), this.topics.allJobs(), this.topics.expected()];
  }

  /** Connect (if needed) and subscribe; retained host state starts arriving right after. */
  async start(): Promise<void> {
    if (this.started) return;
    if (!this.client) {
      this.client = await mqtt.connectAsync(this.opts.url!, {
        username: this.opts.username,
        password: this.opts.password,
        clientId: `lockstep-hub-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
        reconnectPeriod: 1000,
        ...this.opts.connectOptions,
      });
    }
    this.client.on("message", this.onMessage);
    const subs = this.subscriptions;
    const granted = await this.client.subscribeAsync(subs, { qos: 1 });
    const refused = granted.filter((g) => g.qos === 128).map((g) => g.topic);
    if (refused.length > 0) this.log.error({ refused }, "broker refused subscriptions: check the hub account's ACL");
    this.started = true;
    this.log.info({ subscriptions: subs.length }, "fleet client subscribed");
  }

  async stop(): Promise<void> {
    if (!this.client) return;
    this.client.off("message", this.onMessage);
    if (this.ownsClient) await this.client.endAsync();
    else if (this.started) await this.client.unsubscribeAsync(this.subscriptions).catch(() => undefined);
    this.started = false;
    if (this.ownsClient) this.client = undefined;
  }

  /** Whether the MQTT connection is up now. */
  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Follow the MQTT connection going up and down; returns the unsubscribe function. */
  onConnection(listener: (connected: boolean) => void): () => void {
    const client = this.requireClient("follow the connection", false);
    const up = () => listener(true);
    const down = () => listener(false);
    client.on("connect", up);
    client.on("close", down);
    return () => {
      client.off("connect", up);
      client.off("close", down);
    };
  }

  // ------------------------------------------------------------------------------------------
  // FleetPort

  hosts(): HostSnapshot[] {
    return [...this.hostMap.values()].map((h) => ({ ...h, compartments: { ...h.compartments } }));
  }

  host(host: string): HostSnapshot | undefined {
    const h = this.hostMap.get(host);
    return h ? { ...h, compartments: { ...h.compartments } } : undefined;
  }

  /** The latest fleet/expected seen on the broker. */
  expected(): FleetExpected | undefined {
    return this.latestExpected;
  }

  async sendCommand<O extends CommandOp>(host: string, op: O, args: CommandArgsInput<O>, meta: CommandMeta): Promise<string> {
    const client = this.requireClient("send a command");
    // Validate what we send too: a bad command is a bug here, better caught before an agent rejects it.
    const cmd = buildCommand(op, args, { id: meta.id ?? newCommandId(), requestedBy: meta.requestedBy, expiresAt: meta.expiresAt, ...(meta.rolloutId ? { rolloutId: meta.rolloutId } : {}) });
    await client.publishAsync(this.topics.commands(host), encodeJson(cmd), { qos: 1, retain: false });
    this.log.info({ host, op, commandId: cmd.id, rolloutId: meta.rolloutId, requestedBy: meta.requestedBy }, "command sent");
    // The command is out: an audit event that cannot be published is logged, never a failed send.
    await this.publishAudit(commandSentEvent(host, cmd)).catch((err: unknown) => this.log.error({ err, commandId: cmd.id }, "cannot publish the audit event of a command"));
    return cmd.id;
  }

  job(host: string, jobId: string): JobState | undefined {
    return this.jobs.get(`${host}/${jobId}`);
  }

  /** The job states of one host still retained on the broker, newest accepted first. */
  jobsOf(host: string): JobState[] {
    return [...this.jobs.values()].filter((j) => j.host === host).sort((a, b) => b.acceptedAt.localeCompare(a.acceptedAt));
  }

  waitForJob(host: string, jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<JobState> {
    return waitForTerminalJob(this, host, jobId, timeoutMs, signal);
  }

  waitForHost(host: string, predicate: (h: HostSnapshot) => boolean, timeoutMs: number, signal?: AbortSignal): Promise<HostSnapshot> {
    return waitForHostState(this, host, predicate, timeoutMs, signal);
  }

  onChange(listener: (change: FleetChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called whenever fleet/expected changes (undefined when it was cleared); returns the unsubscribe. */
  onExpected(listener: (expected: FleetExpected | undefined) => void): () => void {
    this.expectedListeners.add(listener);
    return () => this.expectedListeners.delete(listener);
  }

  // ------------------------------------------------------------------------------------------
  // RolloutPublisher and fleet/expected

  async publishProgress(progress: RolloutProgress): Promise<void> {
    await this.publishRetained(this.topics.rollout(progress.id), progress);
  }

  async publishHistory(entry: RolloutHistoryEntry): Promise<void> {
    await this.publishRetained(this.topics.history(entry.rolloutId), entry);
  }

  async publishAudit(event: AuditEvent): Promise<void> {
    await this.requireClient("publish an audit event").publishAsync(this.topics.events(), encodeJson(event), { qos: 1, retain: false });
  }

  /** Automatic mode's decision about the pending update (retained on fleet/automatic). */
  async publishAutomatic(state: AutomaticState): Promise<void> {
    await this.publishRetained(this.topics.automatic(), AutomaticState.parse(state));
  }

  async publishExpected(expected: FleetExpected): Promise<void> {
    await this.publishRetained(this.topics.expected(), FleetExpected.parse(expected));
  }

  // ------------------------------------------------------------------------------------------
  // Internals

  private async publishRetained(topic: string, value: unknown): Promise<void> {
    await this.requireClient(`publish ${topic}`).publishAsync(topic, encodeJson(value), { qos: 1, retain: true });
  }

  private requireClient(action: string, mustBeStarted = true): MqttClient {
    if (!this.client || (mustBeStarted && !this.started)) throw new FleetNotConnectedError(action);
    return this.client;
  }

  private snapshot(host: string): HostSnapshot {
    let h = this.hostMap.get(host);
    if (!h) {
      h = { host, availability: "unknown", compartments: {} };
      this.hostMap.set(host, h);
    }
    return h;
  }

  private handle(topic: string, payload: Buffer): void {
    const parsed = this.topics.parse(topic);
    if (!parsed) return;
    // An empty retained payload clears the topic (a host removed, a job cleaned up).
    const cleared = payload.length === 0;
    const ignore = (error: string) =>
      this.log.warn({ topic, error, bytes: payload.length, what: `ignoring invalid ${parsed.kind === "expected" ? "fleet/expected" : `host ${parsed.kind}`} payload` }, "ignored malformed payload");
    try {
      switch (parsed.kind) {
        case "availability": {
          let value: HostSnapshot["availability"] = "unknown";
          if (!cleared) {
            const r = Availability.safeParse(payload.toString("utf8").trim());
            if (!r.success) return ignore(`availability must be "online" or "offline"`);
            value = r.data;
          }
          const h = this.snapshot(parsed.host);
          h.availability = value;
          h.lastSeen = new Date().toISOString();
          return this.notify({ kind: "availability", host: parsed.host });
        }
        case "info": {
          if (cleared) {
            const h = this.hostMap.get(parsed.host);
            if (h) delete h.info;
            return this.notify({ kind: "info", host: parsed.host });
          }
          const r = decodeJson(HostInfo, payload);
          if (!r.ok) return ignore(r.error);
          if (r.value.host !== parsed.host) return ignore(`info names host "${r.value.host}" on the topic of "${parsed.host}"`);
          const h = this.snapshot(parsed.host);
          h.info = r.value;
          h.lastSeen = new Date().toISOString();
          return this.notify({ kind: "info", host: parsed.host });
        }
        case "compartment": {
          if (cleared) {
            const h = this.hostMap.get(parsed.host);
            if (h) delete h.compartments[parsed.compartment];
          } else {
            const r = decodeJson(Compartment, payload);
            if (!r.ok) return ignore(r.error);
            const h = this.snapshot(parsed.host);
            h.compartments[parsed.compartment] = r.value;
            h.lastSeen = new Date().toISOString();
          }
          return this.notify({ kind: "compartment", host: parsed.host });
        }
        case "job": {
          const key = `${parsed.host}/${parsed.jobId}`;
          if (cleared) {
            this.jobs.delete(key);
            return;
          }
          const r = decodeJson(JobState, payload);
          if (!r.ok) return ignore(r.error);
          if (r.value.id !== parsed.jobId || r.value.host !== parsed.host) return ignore("job id or host does not match its topic");
          this.jobs.delete(key); // re-insert so the cache drops the least recently updated first
          this.jobs.set(key, r.value);
          if (this.jobs.size > this.jobCacheSize) this.jobs.delete(this.jobs.keys().next().value!);
          return this.notify({ kind: "job", host: parsed.host, jobId: parsed.jobId });
        }
        case "expected": {
          if (cleared) {
            this.latestExpected = undefined;
          } else {
            const r = decodeJson(FleetExpected, payload);
            if (!r.ok) return ignore(r.error);
            this.latestExpected = r.value;
          }
          for (const l of this.expectedListeners) l(this.latestExpected);
          return;
        }
        default:
          return;
      }
    } catch (e) {
      // A listener threw: keep the client alive, say where.
      this.log.error({ err: e, topic }, "error while handling a fleet message");
    }
  }

  private notify(change: FleetChange): void {
    for (const l of this.listeners) {
      try {
        l(change);
      } catch (e) {
        this.log.error({ err: e, change }, "fleet change listener threw");
      }
    }
  }
}
