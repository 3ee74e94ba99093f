/**
 * What the lockstep-fleet config node uses, without Node-RED: the fleet view (live host state,
 * commands, job waits) and the RolloutService. Inside `lockstep hub` these are the hub's own
 * services (FleetConnection.shared); in a stock Node-RED the node builds them on its own MQTT
 * connection, with the rollout state in a directory, so a restarted Node-RED resumes or honestly
 * closes unfinished rollouts.
 */
import { EventEmitter } from "node:events";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import type { Logger } from "pino";
import { Topics } from "../../protocol/topics.js";
import { FleetView } from "../../rollout/fleet-view.js";
import { RolloutService } from "../../rollout/service.js";
import { SwitchConfirmer } from "../../rollout/confirmer.js";
import { PreviewService } from "../../rollout/preview-service.js";
import { RolloutStore } from "../../rollout/store.js";
import type { RevertCallback } from "../../rollout/engine.js";
import type { Node } from "./red.js";
import type { LockstepServices } from "./services.js";

export type ConnectionState = "connecting" | "connected" | "disconnected" | "failed";

export interface FleetConnectionOptions {
  url: string;
  username?: string;
  password?: string;
  prefix?: string;
  /** Rollout records and history live here. */
  stateDir: string;
  logger: Logger;
  /** Opens a revert PR when a rollout asks for revertOnFailure (from the lockstep-github node). */
  revert?: RevertCallback;
  /** How long to let retained host state arrive before resuming unfinished rollouts. */
  settleMs?: number;
}

export class FleetConnection extends EventEmitter<{ state: [ConnectionState, string | undefined] }> {
  readonly topics: Topics;
  readonly fleet: FleetView;
  readonly rollouts: RolloutService;
  /** Previews of pending lock-update PRs: the hub's (absent when its previews are off), or (stock Node-RED) this connection's own. */
  readonly previews?: PreviewService;
  /** True when fleet and rollouts are the hub's (closing this connection leaves them running). */
  readonly shared: boolean;
  private readonly client?: MqttClient;
  private readonly stateDir: string;
  /** Confirms switches no rollout owns, once their host is back (a stock Node-RED's own; the hub has one). */
  private readonly confirmer?: SwitchConfirmer;
  private stateValue: ConnectionState = "connecting";
  private detail: string | undefined;
  private subscribed?: Promise<void>;
  private closed = false;
  private unfollow?: () => void;
  /** Resolves once subscribed and unfinished rollouts were resumed (the first time we connect). */
  readonly ready: Promise<void>;

  /** The hub's services: nothing of its own to connect, resume or close. */
  static shared(services: LockstepServices): FleetConnection {
    return new FleetConnection(services);
  }

  constructor(opts: FleetConnectionOptions | LockstepServices) {
    super();
    if ("rollouts" in opts) {
      this.shared = true;
      this.fleet = opts.fleet;
      this.rollouts = opts.rollouts;
      if (opts.previews) this.previews = opts.previews;
      this.topics = opts.fleet.topics;
      this.stateDir = opts.stateDir;
      this.ready = opts.ready;
      this.stateValue = opts.fleet.connected ? "connected" : "connecting";
      this.unfollow = opts.fleet.onConnection((up) => this.setState(up ? "connected" : "disconnected"));
      return;
    }
    this.shared = false;
    this.stateDir = opts.stateDir;
    this.topics = new Topics(opts.prefix);
    const client = mqtt.connect(opts.url, {
      username: opts.username,
      password: opts.password,
      clientId: `lockstep-nodered-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
      protocolVersion: 4,
      reconnectPeriod: 2000,
      connectTimeout: 10_000,
    });
    this.client = client;
    this.fleet = new FleetView({ client, topics: this.topics, logger: opts.logger });
    this.rollouts = new RolloutService({
      fleet: this.fleet,
      store: new RolloutStore(opts.stateDir),
      logger: opts.logger,
      ...(opts.revert ? { revert: opts.revert } : {}),
    });
    this.confirmer = new SwitchConfirmer(this.fleet, opts.logger);
    // As in the hub: every pending lock-update PR (fleet/expected, from the pr-watch node) is previewed.
    this.previews = new PreviewService({ client, fleet: this.fleet, topics: this.topics, log: opts.logger });
    this.ready = new Promise((resolve) => {
      client.on("connect", () => {
        this.setState("connected");
        this.subscribed ??= this.startFleet(opts).then(resolve, (err: unknown) => {
          this.setState("failed", (err as Error).message);
        });
      });
    });
    client.on("reconnect", () => this.setState("connecting"));
    client.on("close", () => {
      if (!this.closed && this.stateValue !== "failed") this.setState("disconnected");
    });
    client.on("error", (err) => {
      opts.logger.warn({ err: err.message }, "mqtt connection error");
      this.setState("failed", err.message);
    });
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  get stateDetail(): string | undefined {
    return this.detail;
  }

  /**
   * Which deploy node started which running rollout, with the message fields its events carry:
   * kept in a file next to the rollout records, so after a restart the deploy node still reports
   * the progress and outcome of the rollouts that resume (the weekly flow's notification).
   */
  rememberStarter(rolloutId: string, nodeId: string, context: Record<string, unknown>): void {
    const all = this.readStarters();
    let ctx: Record<string, unknown> = {};
    try {
      ctx = JSON.parse(JSON.stringify(context)) as Record<string, unknown>;
    } catch {
      // not serialisable: the outcome message carries the rollout only
    }
    all[rolloutId] = { nodeId, context: ctx, at: new Date().toISOString() };
    this.writeStarters(all);
  }

  forgetStarter(rolloutId: string): void {
    const all = this.readStarters();
    if (!(rolloutId in all)) return;
    delete all[rolloutId];
    this.writeStarters(all);
  }

  /** Rollouts a deploy node started and that had not ended when it last ran. */
  startersFor(nodeId: string): Array<{ rolloutId: string; context: Record<string, unknown> }> {
    return Object.entries(this.readStarters())
      .filter(([, v]) => v.nodeId === nodeId)
      .map(([rolloutId, v]) => ({ rolloutId, context: v.context }));
  }

  private get startersFile(): string {
    return join(this.stateDir, "deploy-nodes.json");
  }

  private readStarters(): Record<string, { nodeId: string; context: Record<string, unknown>; at: string }> {
    try {
      return JSON.parse(readFileSync(this.startersFile, "utf8")) as Record<string, { nodeId: string; context: Record<string, unknown>; at: string }>;
    } catch {
      return {};
    }
  }

  private writeStarters(all: Record<string, unknown>): void {
    mkdirSync(this.stateDir, { recursive: true });
    const tmp = `${this.startersFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(all));
    renameSync(tmp, this.startersFile);
  }

  /** Hosts whose agents report `hold`, with the reason they gave. */
  heldHosts(): Array<{ host: string; reason?: string }> {
    return this.fleet
      .hosts()
      .filter((h) => h.info?.hold)
      .map((h) => ({ host: h.host, ...(h.info?.holdReason ? { reason: h.info.holdReason } : {}) }));
  }

  private async startFleet(opts: FleetConnectionOptions): Promise<void> {
    await this.fleet.start();
    await this.previews?.start();
    // Retained host and job states arrive right after subscribing; let them land before resuming.
    await new Promise((r) => setTimeout(r, opts.settleMs ?? 1000));
    if (this.closed) return;
    const resumed = await this.rollouts.resumeUnfinished();
    if (resumed.length) opts.logger.info({ resumed }, "resumed unfinished rollouts");
  }

  private setState(state: ConnectionState, detail?: string): void {
    this.stateValue = state;
    this.detail = detail;
    this.emit("state", state, detail);
  }

  /** Stop driving rollouts (they stay resumable), unsubscribe, disconnect; the hub's services stay up. */
  async close(): Promise<void> {
    this.closed = true;
    this.unfollow?.();
    if (this.shared) return;
    this.confirmer?.stop();
    this.previews?.stop();
    await this.rollouts.close();
    await this.fleet.stop();
    await this.client?.endAsync();
  }
}

/** The runtime lockstep-fleet node as other nodes see it. */
export interface FleetConfigNode extends Node {
  connection?: FleetConnection;
  /** The reason there is no connection (bad config), for the user nodes' status. */
  configError?: string;
  heldHosts(): Array<{ host: string; reason?: string }>;
  register(user: Node): void;
  deregister(user: Node): void;
}

/** The lockstep-github config node as the fleet node sees it: something that can revert a merge. */
export interface RevertProvider {
  connection?: { revertForRollout: RevertCallback };
}
