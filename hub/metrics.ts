/**
 * The hub's Prometheus metrics (prom-client; nothing hand-formatted). Two kinds of series:
 *
 * - read from the fleet view at scrape time (gauges with `collect`): hosts by compartment and
 *   status, online, current (system ok) and generation per host, lock age and pending update age;
 * - fed by events as they happen (counters, a histogram): finished rollouts by outcome and their
 *   duration, finished steps (agent jobs) by op and outcome, the last successful switch per host,
 *   and what the GitHub client and the logins report (requests, rate limit, authentication
 *   failures) through the record* methods;
 * - the embedded broker's own counts (clients, messages, bytes), read at scrape time.
 *
 * hub/start.ts builds one per hub and serves it on GET /metrics.
 *
 * Per-host series use the host id as the `host` label; every other label comes from a closed
 * list, so a misbehaving agent cannot grow the series count.
 */
import type { Logger } from "pino";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { BrokerStats } from "../broker/embedded.js";
import { FINAL_ROLLOUT_STATES } from "../protocol/enums.js";
import { COMMAND_OPS, COMPARTMENTS, STATUSES, TERMINAL_JOB_STATES, type FleetExpected, type JobState, type RolloutProgress } from "../protocol/schemas.js";
import type { FleetChange, HostSnapshot } from "../rollout/fleet-port.js";
import type { RolloutService } from "../rollout/service.js";
import type { LastSwitchFile } from "./last-switch-file.js";
import type { RequestHandler } from "./node-red.js";

/** What the metrics read from the fleet view (FleetView implements it). */
export interface MetricsFleet {
  hosts(): HostSnapshot[];
  expected(): FleetExpected | undefined;
  job(host: string, jobId: string): JobState | undefined;
  onChange(listener: (change: FleetChange) => void): () => void;
}

/** The rollout service's events (progress and done are read). */
export type MetricsRollouts = Pick<RolloutService, "events">;

export interface HubMetricsOptions {
  fleet: MetricsFleet;
  rollouts?: MetricsRollouts;
  /** The embedded broker's counts, read at scrape time (no broker series with an external broker). */
  broker?: () => BrokerStats;
  registry?: Registry;
  now?: () => Date;
  /** Where the last successful switch per host is kept across hub restarts (hub/last-switch-file.ts). */
  lastSwitchFile?: Pick<LastSwitchFile, "load" | "save">;
}

/** Ops a step label may have: the agent's commands and the standalone self-update; anything else is "other". */
const STEP_OPS: ReadonlySet<string> = new Set<string>([...COMMAND_OPS, "self-update"]);
const AUTH_PROTOCOLS = ["mqtt", "http"] as const;
/** How many counted job ids to remember (the fleet client keeps as many job states). */
const COUNTED_JOBS_MAX = 10_000;
export type AuthProtocol = (typeof AUTH_PROTOCOLS)[number];

const seconds = (iso: string | undefined): number | undefined => {
  const ms = iso === undefined ? NaN : Date.parse(iso);
  return Number.isFinite(ms) ? ms / 1000 : undefined;
};

/**
 * A successful switch job, or a successful nightly self-update that activated another generation
 * (one that found the system current switched nothing): hosts updated by their own timer count too.
 */
function switched(job: JobState): boolean {
  if (job.state !== "succeeded") return false;
  if (job.op === "switch") return true;
  return job.op === "self-update" && job.generationAfter !== undefined && job.generationAfter !== job.generationBefore;
}

export class HubMetrics {
  readonly registry: Registry;
  private readonly now: () => Date;
  private readonly startedAt: number;
  private readonly lastSwitch: Map<string, number>;
  /** Terminal jobs already counted (host/jobId); retained job states arrive again on reconnect. */
  private readonly countedJobs = new Set<string>();
  private readonly running = new Set<string>();
  private readonly unsubscribe: Array<() => void> = [];

  private readonly rolloutsTotal: Counter<"outcome">;
  private readonly rolloutDuration: Histogram<"outcome">;
  private readonly stepsTotal: Counter<"op" | "outcome">;
  private readonly githubRequests: Counter<"status">;
  private readonly githubRateLimit: Gauge;
  private readonly authFailures: Counter<"protocol">;

  constructor(private readonly opts: HubMetricsOptions) {
    this.registry = opts.registry ?? new Registry();
    this.now = opts.now ?? (() => new Date());
    this.startedAt = this.now().getTime() / 1000;
    this.lastSwitch = opts.lastSwitchFile?.load() ?? new Map();
    const registers = [this.registry];
    const fleet = opts.fleet;
    const metrics = this;

    new Gauge({
      name: "lockstep_hosts",
      help: "Hosts by compartment and status (a compartment a host has not reported counts as unknown).",
      labelNames: ["compartment", "status"],
      registers,
      collect() {
        this.reset();
        const hosts = fleet.hosts();
        for (const compartment of COMPARTMENTS) {
          for (const status of STATUSES) this.set({ compartment, status }, hosts.filter((h) => (h.compartments[compartment]?.status ?? "unknown") === status).length);
        }
      },
    });
    new Gauge({
      name: "lockstep_host_online",
      help: "1 when the host's agent is online, 0 when offline or not seen yet.",
      labelNames: ["host"],
      registers,
      collect() {
        this.reset();
        for (const h of fleet.hosts()) this.set({ host: h.host }, h.availability === "online" ? 1 : 0);
      },
    });
    new Gauge({
      name: "lockstep_host_current",
      help: "1 when the host's system compartment is ok (it runs what the fleet's head builds to for it), else 0.",
      labelNames: ["host"],
      registers,
      collect() {
        this.reset();
        for (const h of fleet.hosts()) this.set({ host: h.host }, h.compartments.system?.status === "ok" ? 1 : 0);
      },
    });
    new Gauge({
      name: "lockstep_host_generation",
      help: "The host's current system generation, as its agent reports it.",
      labelNames: ["host"],
      registers,
      collect() {
        this.reset();
        for (const h of fleet.hosts()) if (h.info?.generation !== undefined) this.set({ host: h.host }, h.info.generation);
      },
    });
    new Gauge({
      name: "lockstep_host_last_successful_switch_timestamp_seconds",
      help: "When the host's last successful switch finished (Unix time): a switch job, or a self-update that switched to another generation.",
      labelNames: ["host"],
      registers,
      collect() {
        this.reset();
        // Hosts the fleet still has: a host whose retained state was cleared has no series.
        for (const h of fleet.hosts()) {
          const at = metrics.lastSwitch.get(h.host);
          if (at !== undefined) this.set({ host: h.host }, at);
        }
      },
    });
    // Labelled, so the series is absent (not 0) while there is nothing to measure.
    new Gauge({
      name: "lockstep_lock_age_seconds",
      help: "Age of the fleet's flake.lock on its branch (now minus its newest input's lastModified); absent until known.",
      labelNames: ["branch"],
      registers,
      collect() {
        this.reset();
        const expected = fleet.expected();
        if (expected?.lockLastModified !== undefined) this.set({ branch: expected.branch }, Math.max(0, metrics.nowSeconds() - expected.lockLastModified));
      },
    });
    new Gauge({
      name: "lockstep_pending_update_age_seconds",
      help: "How long the pending lock-update PR has been open; absent when there is none.",
      labelNames: ["pr"],
      registers,
      collect() {
        this.reset();
        const pending = fleet.expected()?.pendingUpdate;
        const opened = seconds(pending?.openedAt);
        if (pending && opened !== undefined) this.set({ pr: String(pending.number) }, Math.max(0, metrics.nowSeconds() - opened));
      },
    });
    new Gauge({
      name: "lockstep_rollouts_running",
      help: "Rollouts running now.",
      registers,
      collect() {
        this.set(metrics.running.size);
      },
    });
    if (opts.broker) {
      const broker = opts.broker;
      new Gauge({
        name: "lockstep_broker_clients",
        help: "MQTT clients connected to the embedded broker.",
        registers,
        collect() {
          this.set(broker().clients);
        },
      });
      // The broker counts since its start; a counter's value is set from that count when scraped.
      const counted = (name: string, help: string, read: (s: BrokerStats) => number) =>
        new Counter({
          name,
          help,
          registers,
          collect() {
            this.reset();
            this.inc(read(broker()));
          },
        });
      counted("lockstep_broker_messages_total", "MQTT messages clients published through the embedded broker.", (s) => s.messages);
      counted("lockstep_broker_bytes_total", "Payload bytes of the MQTT messages clients published through the embedded broker.", (s) => s.bytes);
      counted("lockstep_broker_queue_dropped_total", "Messages not queued for a persistent MQTT session that already held limits.maxQueuedMessages (one per session).", (s) => s.queueDropped);
    }

    this.rolloutsTotal = new Counter({ name: "lockstep_rollouts_total", help: "Finished rollouts by outcome (their final state).", labelNames: ["outcome"], registers });
    // Every outcome from 0: increase() sees the first failed rollout only if the series existed before it.
    for (const outcome of FINAL_ROLLOUT_STATES) this.rolloutsTotal.inc({ outcome }, 0);
    this.rolloutDuration = new Histogram({
      name: "lockstep_rollout_duration_seconds",
      help: "Duration of finished rollouts, from creation to their final state.",
      labelNames: ["outcome"],
      // A minute up to a day: canaries with soak times and maintenance windows take hours.
      buckets: [60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400],
      registers,
    });
    this.stepsTotal = new Counter({ name: "lockstep_steps_total", help: "Finished agent jobs (steps) by op and outcome.", labelNames: ["op", "outcome"], registers });
    this.githubRequests = new Counter({ name: "lockstep_github_requests_total", help: "GitHub API calls by the HTTP status of their answer, after retries (\"error\" when there was none).", labelNames: ["status"], registers });
    this.githubRateLimit = new Gauge({ name: "lockstep_github_rate_limit_remaining", help: "GitHub API requests left in the current rate-limit window (x-ratelimit-remaining).", registers });
    this.authFailures = new Counter({ name: "lockstep_auth_failures_total", help: "Rejected logins by protocol (MQTT CONNECT, HTTP API).", labelNames: ["protocol"], registers });
    for (const protocol of AUTH_PROTOCOLS) this.authFailures.inc({ protocol }, 0);

    this.unsubscribe.push(fleet.onChange((change) => change.kind === "job" && this.onJob(fleet.job(change.host, change.jobId))));
    if (opts.rollouts) {
      const events = opts.rollouts.events;
      const onProgress = (p: RolloutProgress) => this.running.add(p.id);
      const onDone = (p: RolloutProgress) => this.onRolloutDone(p);
      events.on("progress", onProgress);
      events.on("done", onDone);
      this.unsubscribe.push(() => events.off("progress", onProgress), () => events.off("done", onDone));
    }
  }

  /** The exposition text and its content type, for GET /metrics. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  recordGitHubResponse(status: number | undefined, rateLimitRemaining?: number): void {
    this.githubRequests.inc({ status: status !== undefined && Number.isInteger(status) && status >= 100 && status <= 599 ? String(status) : "error" });
    if (rateLimitRemaining !== undefined && Number.isFinite(rateLimitRemaining)) this.githubRateLimit.set(rateLimitRemaining);
  }

  recordAuthFailure(protocol: AuthProtocol): void {
    this.authFailures.inc({ protocol });
  }

  stop(): void {
    for (const off of this.unsubscribe.splice(0)) off();
  }

  private nowSeconds(): number {
    return this.now().getTime() / 1000;
  }

  private onJob(job: JobState | undefined): void {
    if (!job || !TERMINAL_JOB_STATES.includes(job.state)) return;
    const finished = seconds(job.finishedAt) ?? seconds(job.acceptedAt);
    if (switched(job) && finished !== undefined && finished > (this.lastSwitch.get(job.host) ?? 0)) {
      this.lastSwitch.set(job.host, finished);
      this.opts.lastSwitchFile?.save(this.lastSwitch);
    }
    // Count each step once, and only steps that ended while this hub ran: retained job states
    // of earlier runs arrive again at every start.
    const key = `${job.host}/${job.id}`;
    if (this.countedJobs.has(key) || finished === undefined || finished < this.startedAt) return;
    this.countedJobs.add(key);
    if (this.countedJobs.size > COUNTED_JOBS_MAX) this.countedJobs.delete(this.countedJobs.values().next().value as string);
    this.stepsTotal.inc({ op: STEP_OPS.has(job.op) ? job.op : "other", outcome: job.state });
  }

  private onRolloutDone(p: RolloutProgress): void {
    this.running.delete(p.id);
    this.rolloutsTotal.inc({ outcome: p.state });
    const created = seconds(p.createdAt);
    const finished = seconds(p.finishedAt ?? p.updatedAt);
    if (created !== undefined && finished !== undefined) this.rolloutDuration.observe({ outcome: p.state }, Math.max(0, finished - created));
  }
}

/** `GET /metrics`: the exposition text; hub/start.ts puts the API's Basic auth in front. */
export function metricsHandler(metrics: Pick<HubMetrics, "scrape">, log: Logger): RequestHandler {
  return (_req, res) => {
    metrics.scrape().then(
      ({ contentType, body }) => {
        res.writeHead(200, { "content-type": contentType, "cache-control": "no-store" });
        res.end(body);
      },
      (err: unknown) => {
        log.error({ err }, "cannot collect the metrics");
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end("cannot collect the metrics; see the hub's log\n");
      },
    );
  };
}
