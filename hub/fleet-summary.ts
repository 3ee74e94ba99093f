/**
 * Keeps the compact fleet summary (protocol/fleet-summary.ts) retained on `fleet/summary`, so a page
 * opened on a large fleet shows its counts and the hosts needing attention at once, before the
 * per-host topics have all arrived. Built once by the hub (hub/services.ts) on the fleet view's
 * host cache. Published at most once per `intervalMs` (the last change always goes out), only when
 * something other than the time changed, and again after a reconnect (a broker without
 * persistence has lost it).
 */
import type { MqttClient } from "mqtt";
import type { Logger } from "pino";
import { summarizeFleet, type FleetSummary } from "../protocol/fleet-summary.js";
import { encodeJson } from "../protocol/payload.js";
import type { Topics } from "../protocol/topics.js";
import type { FleetView } from "../rollout/fleet-view.js";

const SUMMARY_INTERVAL_MS = 1000;

export interface FleetSummaryOptions {
  fleet: Pick<FleetView, "hosts" | "onChange" | "onConnection">;
  client: MqttClient;
  topics: Topics;
  log: Logger;
  /** The least time between two publishes (default SUMMARY_INTERVAL_MS). */
  intervalMs?: number;
}

export class FleetSummaryPublisher {
  private timer: NodeJS.Timeout | undefined;
  private lastAt = 0;
  /** The last published summary without its time: an unchanged fleet is not published again. */
  private lastKey = "";
  private unfollow: Array<() => void> = [];
  private publishing: Promise<void> = Promise.resolve();

  constructor(private readonly opts: FleetSummaryOptions) {}

  start(): void {
    const offChange = this.opts.fleet.onChange((change) => change.kind !== "job" && this.schedule());
    const offConnection = this.opts.fleet.onConnection((up) => {
      if (!up) return;
      this.lastKey = "";
      this.schedule();
    });
    this.unfollow = [offChange, offConnection];
    this.schedule();
  }

  stop(): void {
    for (const off of this.unfollow) off();
    this.unfollow = [];
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Publish now what is pending (a test or the benchmark waits for it). */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.publish();
    await this.publishing;
  }

  private schedule(): void {
    if (this.timer) return;
    const wait = Math.max(0, this.lastAt + (this.opts.intervalMs ?? SUMMARY_INTERVAL_MS) - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.publish();
    }, wait);
  }

  private publish(): void {
    const summary = summarizeFleet(this.opts.fleet.hosts());
    const key = JSON.stringify({ ...summary, updatedAt: "" } satisfies FleetSummary);
    if (key === this.lastKey) return;
    this.lastKey = key;
    this.lastAt = Date.now();
    const { client, topics, log } = this.opts;
    this.publishing = client.publishAsync(topics.fleetSummary(), encodeJson(summary), { qos: 1, retain: true }).then(
      () => undefined,
      (err: unknown) => {
        // Lost with the connection: the reconnect publishes it again.
        this.lastKey = "";
        log.warn({ err }, "could not publish the fleet summary");
      },
    );
  }
}
