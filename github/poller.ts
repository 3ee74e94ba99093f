/**
 * UpdateWatcher: polls GitHub for the pending lock update and the base branch head, and says
 * when something changed. Checks run one at a time; `checkNow()` (a webhook arrived, a button was
 * pressed) runs a check right away, and calls that arrive during a check share one follow-up
 * check. Every GET is conditional (ETag), so polling an unchanged repository costs no rate limit
 * after the first poll.
 *
 * Events:
 *   "update"   (pending: PendingUpdate)  a new pending PR, or the pending PR changed (head, CI, mergeable, diff)
 *   "closed"   ({number, merged, mergeCommitSha})  the pending PR is no longer open
 *   "head"     ({sha, previous})  the base branch head moved (also on the first check: previous = null)
 *   "expected" (FleetExpected)  what the fleet should run changed: publish it retained on fleet/expected
 *   "checked"  (WatchState)  a check finished without an error (whether or not anything changed)
 *   "error"    (Error)  a check failed; the next one is still scheduled
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { FleetExpected, PendingUpdate } from "../protocol/index.js";
import type { GitHubClient } from "./client.js";
import type { GitHubConfig } from "./config.js";
import { detectPendingUpdate, fleetExpected, type Detection } from "./detect.js";

export interface PendingClosed {
  number: number;
  merged: boolean;
  mergeCommitSha: string | null;
}

export interface UpdateWatcherEvents {
  update: [PendingUpdate];
  closed: [PendingClosed];
  head: [{ sha: string; previous: string | null }];
  expected: [FleetExpected];
  checked: [WatchState];
  error: [Error];
}

export interface WatchState {
  pending: PendingUpdate | null;
  expected: FleetExpected | null;
  detection: Detection | null;
  lastCheckedAt: Date | null;
  lastError: Error | null;
  checks: number;
}

export interface UpdateWatcherOptions {
  /** Poll interval (default: config.pollIntervalMs). */
  intervalMs?: number;
  /** Expected agent version to put into FleetExpected. */
  agentVersion?: string;
  logger?: Logger;
}

export class UpdateWatcher extends EventEmitter<UpdateWatcherEvents> {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<WatchState> | null = null;
  private followUp: Promise<WatchState> | null = null;
  private stopped = true;
  private readonly log: Logger;
  private lastPendingKey: string | null = null;
  private lastExpectedKey: string | null = null;
  readonly state: WatchState = { pending: null, expected: null, detection: null, lastCheckedAt: null, lastError: null, checks: 0 };

  constructor(
    readonly client: GitHubClient,
    readonly config: GitHubConfig,
    private readonly opts: UpdateWatcherOptions = {},
  ) {
    super();
    this.log = (opts.logger ?? client.logger).child({ component: "update-watcher" });
  }

  get intervalMs(): number {
    return this.opts.intervalMs ?? this.config.pollIntervalMs;
  }

  /** Whether start() runs checks on a timer (then nobody else needs to poll). */
  get polling(): boolean {
    return !this.stopped;
  }

  /** Check now and then every interval until stop(). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.checkNow();
  }

  /** Stop polling; resolves when a running check has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await Promise.allSettled([this.running, this.followUp]);
  }

  /**
   * Run a check now (or, when one is running, right after it). Never rejects: a failed check is
   * reported as an "error" event and in `state.lastError`.
   */
  checkNow(): Promise<WatchState> {
    if (!this.running) {
      this.running = this.check().finally(() => {
        this.running = null;
        this.schedule();
      });
      return this.running;
    }
    this.followUp ??= this.running.then(() => {
      this.followUp = null;
      return this.checkNow();
    });
    return this.followUp;
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped || this.followUp) return;
    this.timer = setTimeout(() => void this.checkNow(), this.intervalMs);
  }

  private async check(): Promise<WatchState> {
    const started = performance.now();
    const s = this.state;
    try {
      const detection = await detectPendingUpdate(this.client, this.config);
      const previous = s.pending;
      const previousHead = s.detection?.baseHead ?? null;
      s.detection = detection;
      s.pending = detection.pending;
      s.checks++;
      s.lastCheckedAt = new Date();
      s.lastError = null;

      if (previousHead !== detection.baseHead) this.emit("head", { sha: detection.baseHead, previous: previousHead });

      if (previous && previous.number !== detection.pending?.number) {
        const pr = await this.client.getPull(previous.number);
        if (pr.state === "closed") {
          this.log.info({ pr: pr.number, merged: pr.merged }, `PR #${pr.number} ${pr.merged ? "merged" : "closed"}`);
          this.emit("closed", { number: pr.number, merged: pr.merged, mergeCommitSha: pr.merged ? pr.merge_commit_sha : null });
        }
      }

      const pendingKey = detection.pending ? JSON.stringify(detection.pending) : null;
      if (pendingKey !== this.lastPendingKey) {
        this.lastPendingKey = pendingKey;
        if (detection.pending) {
          this.log.info({ pr: detection.pending.number, head: detection.pending.headSha, ci: detection.pending.ci.state }, `pending update: PR #${detection.pending.number}`);
          this.emit("update", detection.pending);
        }
      }

      const expected = await fleetExpected(this.client, this.config, detection.pending, { baseHead: detection.baseHead, baseLock: detection.baseLock, agentVersion: this.opts.agentVersion, broken: detection.broken });
      const { updatedAt: _ignored, ...stable } = expected;
      const expectedKey = JSON.stringify(stable);
      if (expectedKey !== this.lastExpectedKey) {
        this.lastExpectedKey = expectedKey;
        s.expected = expected;
        this.emit("expected", expected);
      }
      this.log.debug({ ms: Math.round(performance.now() - started), requests: this.client.stats.requests, notModified: this.client.stats.notModified }, "check done");
      this.emit("checked", s);
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      s.lastError = err;
      this.log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, `GitHub check failed: ${err.message}`);
      // An "error" event without a listener would throw; the log line above is enough then.
      if (this.listenerCount("error") > 0) this.emit("error", err);
    }
    return s;
  }
}
