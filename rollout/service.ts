/**
 * The facade the Node-RED `deploy` node, the HTTP endpoint and the Home Assistant bridge use:
 * start a rollout from a spec and get its id at once, watch it through `events`, cancel it, list
 * them, and resume unfinished ones after a hub restart. One RolloutEngine per running rollout.
 */
import { EventEmitter } from "node:events";
import pino, { type Logger } from "pino";
import type { AuditEvent, RolloutHistoryEntry, RolloutProgress } from "../protocol/schemas.js";
import { IGNORE_STORAGE, StorageFaultError, storageErrorCode, storageFaultHint, type StorageReporter } from "../protocol/storage.js";
import { RolloutEngine, type RevertCallback, type RolloutStorageFault } from "./engine.js";
import { RolloutConflictError, RolloutNotFoundError, RolloutPlanError, StepNotCancellableError } from "./errors.js";
import { isRolloutPublisher, type FleetPort, type RolloutPublisher } from "./fleet-port.js";
import { RolloutPlanner } from "./planner.js";
import { linkConvergence } from "./history-story.js";
import { mergeSpecLayers, parseRolloutSpec, type RolloutPlan, type RolloutSpecInput } from "./spec.js";
import type { RolloutStore } from "./store.js";

export interface RolloutServiceEvents {
  progress: [RolloutProgress];
  audit: [AuditEvent];
  history: [RolloutHistoryEntry];
  done: [RolloutProgress];
  "storage-fault": [RolloutStorageFault];
}

/**
 * The hub's storage health as the rollouts see it: new rollouts are refused while the data dir
 * cannot be written, a rollout whose record could not be written is held (shown, not failed).
 */
export interface RolloutStorage {
  /** Throws StorageFaultError while the data dir cannot be written. */
  assertWritable(): void;
  /** Where the rollout store's failures (and the retry's success) go. */
  reporter: StorageReporter;
  holdRollout(id: string): void;
  releaseRollout(id: string): void;
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
  /** The hub's storage health; without it a storage failure holds the rollout until retryHeld() or a restart. */
  storage?: RolloutStorage;
  /** The hub's rollout defaults (config.rollout): installOnHost's rollouts start from them, as the deploy node's do. */
  defaults?: Record<string, unknown>;
}

interface ActiveRollout {
  engine: RolloutEngine;
  hosts: Set<string>;
  done: Promise<RolloutProgress>;
  /** Its record could not be written: the engine stopped, unfinished; retryHeld() resumes it from the store. */
  held?: { since: string; error: string; resume?: () => void };
}

export class RolloutService {
  /** progress / audit / history / done of every rollout this service runs. */
  readonly events = new EventEmitter<RolloutServiceEvents>();
  private readonly planner = new RolloutPlanner();
  private readonly active = new Map<string, ActiveRollout>();
  private readonly log: Logger;
  private readonly publisher?: RolloutPublisher;
  private readonly storage?: RolloutStorage;
  private readonly reporter: StorageReporter;
  private closing = false;

  constructor(private readonly opts: RolloutServiceOptions) {
    this.log = opts.logger ?? pino({ level: "silent" });
    this.publisher = opts.publisher ?? (isRolloutPublisher(opts.fleet) ? opts.fleet : undefined);
    this.storage = opts.storage;
    this.reporter = opts.storage?.reporter ?? IGNORE_STORAGE;
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
    this.assertWritable();
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

  /** A rollout must not start that could not record its steps: refused (409) while the data dir cannot be written. */
  private assertWritable(): void {
    this.storage?.assertWritable();
    try {
      this.opts.store.assertWritable();
    } catch (e) {
      const code = storageErrorCode(e);
      const path = (e as { path?: unknown }).path;
      const where = typeof path === "string" ? path : this.opts.store.dataDir;
      this.reporter.failed(e, where);
      throw new StorageFaultError(code, where, storageFaultHint(code, this.opts.store.dataDir));
    }
  }

  /**
   * Validate, plan and start a rollout in the background; returns its id at once.
   * Throws RolloutSpecError (bad spec), RolloutPlanError (nothing to deploy, unknown hosts) or
   * RolloutConflictError (a host is busy in another rollout) before anything is sent.
   */
  start(spec: RolloutSpecInput | unknown, requestedBy: string): string {
    const plan = this.check(spec);
    const hosts = new Set(plan.phases.flatMap((p) => p.hosts));
    this.track(plan.id, hosts, (engine) => engine.run(plan, requestedBy));
    this.log.info({ rolloutId: plan.id, commit: plan.commit, requestedBy, hosts: hosts.size }, "rollout started");
    return plan.id;
  }

  /**
   * Install one commit on one host (the Home Assistant "install" button): no canary, no soak, the
   * host's maintenance window is not enforced because someone asked for this host explicitly; a
   * held host is still refused. Every other field (step timeouts, health gate, when to ask the host...)
   * comes from the hub's rollout defaults.
   */
  installOnHost(host: string, commit: string, requestedBy: string): string {
    const fixed = { respectWindows: false, commit, selection: { hosts: [host] }, strategy: { canary: 0, soakMs: 0 } };
    return this.start(mergeSpecLayers(this.opts.defaults ?? {}, fixed) as RolloutSpecInput, requestedBy);
  }

  /** Current progress (live for running rollouts, stored otherwise). */
  async get(id: string): Promise<RolloutProgress | undefined> {
    const a = this.active.get(id);
    // A held rollout's engine state was not stored: show what was.
    const live = a && !a.held ? a.engine.progress : undefined;
    if (live) return live;
    return (await this.opts.store.load(id))?.progress;
  }

  /** Every stored rollout's progress, newest first. */
  async list(): Promise<RolloutProgress[]> {
    const stored = await this.opts.store.list();
    return stored.map((r) => {
      const a = this.active.get(r.id);
      return (a && !a.held ? a.engine.progress : undefined) ?? r.progress;
    });
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

  /**
   * Cancel the step `host` runs in rollout `id` (RolloutEngine.cancelStep: the host fails, the
   * failure policy applies). Throws RolloutNotFoundError, or StepNotCancellableError (not running here,
   * or the host runs no step).
   */
  async cancelStep(id: string, host: string, actor: string): Promise<void> {
    const a = this.active.get(id);
    if (!a) {
      if (!(await this.opts.store.load(id))) throw new RolloutNotFoundError(id);
      throw new StepNotCancellableError(`rollout ${id} is not running`);
    }
    const why = a.engine.cancelStep(host, actor);
    if (why) throw new StepNotCancellableError(why);
    this.log.info({ rolloutId: id, host, actor }, "rollout step cancelled");
  }

  isRunning(id: string): boolean {
    return this.active.has(id);
  }

  /** After a hub restart: continue every stored rollout that has not finished. Returns their ids. */
  async resumeUnfinished(): Promise<string[]> {
    const ids: string[] = [];
    for (const rec of await this.opts.store.listUnfinished()) {
      if (this.active.has(rec.id)) continue;
      const hosts = new Set(rec.plan.phases.flatMap((p) => p.hosts));
      this.track(rec.id, hosts, (engine) => engine.resume(rec.id));
      this.log.info({ rolloutId: rec.id }, "resuming rollout after restart");
      ids.push(rec.id);
    }
    return ids;
  }

  /** Ids of rollouts held because their state could not be stored. */
  held(): string[] {
    return [...this.active].filter(([, a]) => a.held).map(([id]) => id);
  }

  /**
   * Resume held rollouts once the store can be written again (the hub's storage health calls this
   * while faulted). Each continues from its stored record, like after a hub restart: a step sent
   * but not recorded as finished is learnt from the host's retained job, never sent again.
   */
  async retryHeld(): Promise<void> {
    const held = [...this.active.values()].filter((a) => a.held);
    try {
      this.opts.store.assertWritable();
    } catch (e) {
      const path = (e as { path?: unknown }).path;
      this.reporter.failed(e, typeof path === "string" ? path : this.opts.store.dataDir);
      return;
    }
    // A write the stopped engine queued must not land after the resumed one's.
    await this.opts.store.flush();
    this.reporter.ok();
    for (const a of held) a.held?.resume?.();
  }

  /** Hub shutdown: stop driving rollouts but keep them resumable (their records stay unfinished). */
  async close(): Promise<void> {
    this.closing = true;
    for (const a of this.active.values()) {
      a.engine.detach();
      a.held?.resume?.();
    }
    await Promise.allSettled([...this.active.values()].map((a) => a.done));
    this.active.clear();
    await this.opts.store.flush();
  }

  /** A converge rollout ended: the failed rollout's history entry records it (rollout/history-story.ts). */
  private async tellAsOneStory(converge: RolloutHistoryEntry): Promise<void> {
    try {
      const linked = await linkConvergence(this.opts.store, converge);
      if (!linked) return;
      await this.publisher?.publishHistory(linked);
      this.events.emit("history", linked);
    } catch (err) {
      this.log.warn({ err, rolloutId: converge.rolloutId, converges: converge.converges }, "cannot link the convergence to the failed rollout's history entry");
    }
  }

  private newEngine(onStorageFault: (f: RolloutStorageFault) => void): RolloutEngine {
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
      if (h.converges) void this.tellAsOneStory(h);
    });
    engine.on("done", (p) => this.events.emit("done", p));
    engine.on("storage-fault", (f) => {
      onStorageFault(f);
      this.events.emit("storage-fault", f);
    });
    return engine;
  }

  /**
   * Run a rollout (first: run or resume) and, while its record cannot be written, hold it: the
   * engine stops unfinished and publishes nothing more; retryHeld() resumes it from the store.
   */
  private track(id: string, hosts: Set<string>, first: (engine: RolloutEngine) => Promise<RolloutProgress>): void {
    const entry = { hosts } as ActiveRollout;
    const onStorageFault = (f: RolloutStorageFault) => {
      const path = (f.cause as { path?: unknown } | undefined)?.path;
      this.reporter.failed(f.cause, typeof path === "string" ? path : this.opts.store.dataDir);
      entry.held = { since: new Date().toISOString(), error: f.error };
      this.storage?.holdRollout(id);
      this.log.warn({ rolloutId: id, err: f.error }, "rollout held: its state cannot be stored; it resumes when the data dir can be written");
    };
    const drive = async (): Promise<RolloutProgress> => {
      entry.engine = this.newEngine(onStorageFault);
      let progress = await first(entry.engine);
      while (entry.held && !this.closing) {
        const held = entry.held;
        await new Promise<void>((resolve) => (held.resume = resolve));
        if (this.closing) break;
        entry.held = undefined;
        this.storage?.releaseRollout(id);
        this.log.info({ rolloutId: id, heldSince: held.since }, "resuming a held rollout: its state can be stored again");
        entry.engine = this.newEngine(onStorageFault);
        progress = await entry.engine.resume(id);
      }
      return progress;
    };
    const done = drive()
      .catch((e: unknown) => {
        this.log.error({ err: e, rolloutId: id }, "rollout ended with an error");
        throw e;
      })
      .finally(() => this.active.delete(id));
    // A caller that never awaits wait() must not see an unhandled rejection.
    done.catch(() => undefined);
    entry.done = done;
    this.active.set(id, entry);
  }
}
