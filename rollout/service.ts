/**
 * The facade the Node-RED `deploy` node, the HTTP endpoint and the Home Assistant bridge use:
 * start a rollout from a spec and get its id at once, watch it through `events`, cancel it, list
 * them, and resume unfinished ones after a hub restart. One RolloutEngine per running rollout.
 */
import { EventEmitter } from "node:events";
import pino, { type Logger } from "pino";
import type { AuditEvent, RolloutHistoryEntry, RolloutProgress } from "../protocol/schemas.js";
import { RolloutEngine, type RevertCallback, type RolloutStorageFault } from "./engine.js";
import { RolloutConflictError, RolloutNotFoundError, RolloutPlanError } from "./errors.js";
import { isRolloutPublisher, type FleetPort, type RolloutPublisher } from "./fleet-port.js";
import { RolloutPlanner } from "./planner.js";
import { parseRolloutSpec, type RolloutPlan, type RolloutSpecInput } from "./spec.js";
import type { RolloutStore } from "./store.js";

export interface RolloutServiceEvents {
  progress: [RolloutProgress];
  audit: [AuditEvent];
  history: [RolloutHistoryEntry];
  done: [RolloutProgress];
  "storage-fault": [RolloutStorageFault];
}

export interface RolloutServiceOptions {
  fleet: FleetPort;
  store: RolloutStore;
  logger?: Logger;
  /** Opens a revert PR on GitHub when a spec asks for revertOnFailure. */
  revert?: RevertCallback;
  /** Where progress, history and audit events are published. Default: the fleet, when it can (FleetView does). */
  publisher?: RolloutPublisher;
  /** Passed to every engine. */
  progressIntervalMs?: number;
  resumeGraceMs?: number;
}

interface ActiveRollout {
  engine: RolloutEngine;
  hosts: Set<string>;
  done: Promise<RolloutProgress>;
}

export class RolloutService {
  /** progress / audit / history / done of every rollout this service runs. */
  readonly events = new EventEmitter<RolloutServiceEvents>();
  private readonly planner = new RolloutPlanner();
  private readonly active = new Map<string, ActiveRollout>();
  private readonly log: Logger;
  private readonly publisher?: RolloutPublisher;

  constructor(private readonly opts: RolloutServiceOptions) {
    this.log = opts.logger ?? pino({ level: "silent" });
    this.publisher = opts.publisher ?? (isRolloutPublisher(opts.fleet) ? opts.fleet : undefined);
  }

  /** Plan without running: what would happen, and which hosts are left out and why. */
  preview(spec: RolloutSpecInput | unknown, now: Date = new Date()): RolloutPlan {
    return this.planner.plan(parseRolloutSpec(spec), this.opts.fleet.hosts(), now);
  }

  /**
   * Everything start() checks, without starting anything: the spec, the plan against the fleet as
   * it is now, hosts named in the selection that no agent ever reported (a typo must not shrink a
   * rollout silently), and hosts busy in a running rollout. Merge-and-deploy calls this before it
   * merges, so a request it would refuse never merges a PR. Throws like start().
   */
  check(spec: RolloutSpecInput | unknown, now: Date = new Date()): RolloutPlan {
    const plan = this.preview(spec, now);
    this.opts.store.assertWritable();
    const unknown = plan.excluded.filter((e) => e.code === "unknown-host").map((e) => e.host);
    if (unknown.length > 0) {
      throw new RolloutPlanError(`unknown host(s): ${unknown.join(", ")}`, "name hosts whose agents have reported to the broker (see the fleet page), or name none to deploy to every host");
    }
    const hosts = plan.phases.flatMap((p) => p.hosts);
    for (const [id, a] of this.active) {
      const busy = hosts.filter((h) => a.hosts.has(h));
      if (busy.length > 0) throw new RolloutConflictError(id, busy);
    }
    return plan;
  }

  /**
   * Validate, plan and start a rollout in the background; returns its id at once.
   * Throws RolloutSpecError (bad spec), RolloutPlanError (nothing to deploy, unknown hosts) or
   * RolloutConflictError (a host is busy in another rollout) before anything is sent.
   */
  start(spec: RolloutSpecInput | unknown, requestedBy: string): string {
    const plan = this.check(spec);
    const hosts = new Set(plan.phases.flatMap((p) => p.hosts));
    const engine = this.newEngine();
    this.track(plan.id, engine, hosts, engine.run(plan, requestedBy));
    this.log.info({ rolloutId: plan.id, commit: plan.commit, requestedBy, hosts: hosts.size }, "rollout started");
    return plan.id;
  }

  /**
   * Install one commit on one host (the Home Assistant "install" button): no canary, no soak, the
   * host's maintenance window is not enforced because someone asked for this host explicitly; a
   * held host is still refused. `overrides` may change any other spec field.
   */
  installOnHost(host: string, commit: string, requestedBy: string, overrides: Partial<RolloutSpecInput> = {}): string {
    const strategy = { canary: 0, soakMs: 0, ...(overrides.strategy ?? {}) };
    return this.start({ respectWindows: false, ...overrides, commit, selection: { hosts: [host] }, strategy }, requestedBy);
  }

  /** Current progress (live for running rollouts, stored otherwise). */
  async get(id: string): Promise<RolloutProgress | undefined> {
    const live = this.active.get(id)?.engine.progress;
    if (live) return live;
    return (await this.opts.store.load(id))?.progress;
  }

  /** Every stored rollout's progress, newest first. */
  async list(): Promise<RolloutProgress[]> {
    const stored = await this.opts.store.list();
    return stored.map((r) => this.active.get(r.id)?.engine.progress ?? r.progress);
  }

  history(): Promise<RolloutHistoryEntry[]> {
    return this.opts.store.history();
  }

  /** Resolves with the final progress of a running (or finished) rollout. */
  async wait(id: string): Promise<RolloutProgress> {
    const a = this.active.get(id);
    if (a) return a.done;
    const stored = await this.opts.store.load(id);
    if (!stored) throw new RolloutNotFoundError(id);
    return stored.progress;
  }

  /** Cancel a running rollout; false when it is not running here. */
  cancel(id: string, actor = "operator"): boolean {
    return this.active.get(id)?.engine.cancel(actor) ?? false;
  }

  isRunning(id: string): boolean {
    return this.active.has(id);
  }

  /** After a hub restart: continue every stored rollout that has not finished. Returns their ids. */
  async resumeUnfinished(): Promise<string[]> {
    const ids: string[] = [];
    for (const rec of await this.opts.store.listUnfinished()) {
      if (this.active.has(rec.id)) continue;
      const engine = this.newEngine();
      const hosts = new Set(rec.plan.phases.flatMap((p) => p.hosts));
      this.track(rec.id, engine, hosts, engine.resume(rec.id));
      this.log.info({ rolloutId: rec.id }, "resuming rollout after restart");
      ids.push(rec.id);
    }
    return ids;
  }

  /** Hub shutdown: stop driving rollouts but keep them resumable (their records stay unfinished). */
  async close(): Promise<void> {
    for (const a of this.active.values()) a.engine.detach();
    await Promise.allSettled([...this.active.values()].map((a) => a.done));
    this.active.clear();
    await this.opts.store.flush();
  }

  private newEngine(): RolloutEngine {
    const engine = new RolloutEngine({
      fleet: this.opts.fleet,
      store: this.opts.store,
      logger: this.log,
      revert: this.opts.revert,
      progressIntervalMs: this.opts.progressIntervalMs,
      resumeGraceMs: this.opts.resumeGraceMs,
    });
    const publish = (what: string, p: Promise<void> | undefined) =>
      p?.catch((e: unknown) => this.log.warn({ err: e, what }, "could not publish rollout state; it is kept in the store"));
    engine.on("progress", (p) => {
      publish("progress", this.publisher?.publishProgress(p));
      this.events.emit("progress", p);
    });
    engine.on("audit", (e) => {
      publish("audit", this.publisher?.publishAudit(e));
      this.events.emit("audit", e);
    });
    engine.on("history", (h) => {
      publish("history", this.publisher?.publishHistory(h));
      this.events.emit("history", h);
    });
    engine.on("done", (p) => this.events.emit("done", p));
    engine.on("storage-fault", (f) => this.events.emit("storage-fault", f));
    return engine;
  }

  private track(id: string, engine: RolloutEngine, hosts: Set<string>, run: Promise<RolloutProgress>): void {
    const done = run
      .catch((e: unknown) => {
        this.log.error({ err: e, rolloutId: id }, "rollout ended with an error");
        throw e;
      })
      .finally(() => this.active.delete(id));
    // A caller that never awaits wait() must not see an unhandled rejection.
    done.catch(() => undefined);
    this.active.set(id, { engine, hosts, done });
  }
}
