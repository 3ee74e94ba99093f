/**
 * The one owner of the data dir's health. Every durable writer gets a StorageReporter
 * (`writer(name, retry)`) and reports each write: one failure makes the hub "fault" (ENOSPC, EROFS …
 * with the path), and it is "ok" again once every writer that failed has written again. The state
 * is published retained on hub/storage (protocol/storage.ts) and logged once per transition.
 *
 * While faulted, every `retryEveryMs` each failed writer's `retry` runs: it writes what it kept (the
 * audit log's pending events, a held rollout's record, automatic.json …) and reports the outcome.
 * A writer without a retry is cleared by a probe file written and removed in the data dir.
 *
 * Readers: the rollout service refuses new rollouts while faulted (assertWritable, HTTP 409), the
 * page shows a banner and Home Assistant a problem sensor from the topic.
 */
import { EventEmitter } from "node:events";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { newAuditEventId } from "../protocol/audit.js";
import type { AuditEvent } from "../protocol/schemas.js";
import {
  StorageFaultError,
  StorageHealthState,
  storageErrorCode,
  storageFaultHint,
  type StorageReporter,
  type StorageWriterFault,
} from "../protocol/storage.js";

export const PROBE_FILE = ".storage-probe";

export interface StorageHealthOptions {
  dataDir: string;
  log: Logger;
  /** Publish the state retained on hub/storage (failures are logged, the state is kept). */
  publish?: (state: StorageHealthState) => Promise<void>;
  /** How often failed writers retry while faulted (default 5 s). */
  retryEveryMs?: number;
  now?: () => Date;
}

export interface StorageHealthEvents {
  /** ok → fault, or fault → ok (once per transition), with the state it left. */
  transition: [state: StorageHealthState, previous: StorageHealthState];
}

interface Writer {
  retry?: () => unknown;
  fault?: StorageWriterFault;
}

export class StorageHealth extends EventEmitter<StorageHealthEvents> {
  private readonly writers = new Map<string, Writer>();
  private readonly held = new Set<string>();
  private current: StorageHealthState;
  private timer?: NodeJS.Timeout;
  private retrying = false;
  private stopped = false;
  private readonly now: () => Date;

  constructor(private readonly o: StorageHealthOptions) {
    super();
    this.now = o.now ?? (() => new Date());
    const at = this.now().toISOString();
    this.current = { state: "ok", since: at, dataDir: o.dataDir, faults: [], heldRollouts: [], updatedAt: at };
  }

  get state(): StorageHealthState {
    return structuredClone(this.current);
  }

  get faulted(): boolean {
    return this.current.state === "fault";
  }

  /** Publish the current state (at start, and after a broker reconnect). */
  publishNow(): Promise<void> {
    return this.publish();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The reporter for one durable writer; `retry` writes what it kept once more (while faulted). */
  writer(name: string, retry?: () => unknown): StorageReporter {
    const w: Writer = this.writers.get(name) ?? {};
    if (retry) w.retry = retry;
    this.writers.set(name, w);
    return {
      ok: () => {
        if (w.fault) this.clear(name, w);
      },
      failed: (error, path) => this.fail(name, w, error, path),
    };
  }

  /** Throws StorageFaultError (HTTP 409) while the data dir cannot be written. */
  assertWritable(): void {
    const first = this.current.faults[0];
    if (first) throw new StorageFaultError(first.code, first.path, this.current.hint ?? storageFaultHint(first.code, this.o.dataDir));
  }

  /** A rollout waits for storage (its record could not be written); shown in the state until released. */
  holdRollout(id: string): void {
    if (this.held.has(id)) return;
    this.held.add(id);
    this.refresh();
  }

  releaseRollout(id: string): void {
    if (this.held.delete(id)) this.refresh();
  }

  /** Run every failed writer's retry once (the timer does this while faulted; tests may call it). */
  async retryNow(): Promise<void> {
    if (this.retrying) return;
    this.retrying = true;
    try {
      for (const [name, w] of this.writers) {
        if (!w.fault || this.stopped) continue;
        try {
          if (w.retry) await w.retry();
          else this.probe(name, w);
        } catch (err) {
          // A retry reports its own outcome; one that throws instead still counts as failed.
          this.fail(name, w, err, w.fault.path);
        }
      }
    } finally {
      this.retrying = false;
    }
  }

  private probe(name: string, w: Writer): void {
    const file = join(this.o.dataDir, PROBE_FILE);
    try {
      writeFileSync(file, "probe\n");
      rmSync(file, { force: true });
    } catch (err) {
      this.fail(name, w, err, file);
      return;
    }
    this.clear(name, w);
  }

  private fail(name: string, w: Writer, error: unknown, path: string): void {
    const code = storageErrorCode(error);
    const message = (error instanceof Error ? error.message : String(error)).slice(0, 1000);
    if (w.fault && w.fault.code === code && w.fault.path === path) return; // still the same fault
    w.fault = { writer: name, code, path: path.slice(0, 1000), message, since: w.fault?.since ?? this.now().toISOString() };
    if (!this.faulted) this.o.log.error({ writer: name, code, path, err: message }, `the hub cannot write its data dir (${code}): it keeps running, holds rollouts and refuses new ones until it can`);
    this.refresh();
  }

  private clear(name: string, w: Writer): void {
    this.o.log.info({ writer: name }, "storage writer can write again");
    w.fault = undefined;
    this.refresh();
  }

  /** Recompute and publish the state; log and emit a transition. */
  private refresh(): void {
    const faults = [...this.writers.values()].flatMap((w) => (w.fault ? [w.fault] : [])).sort((a, b) => (a.since < b.since ? -1 : a.since > b.since ? 1 : 0));
    const at = this.now().toISOString();
    const previous = this.current;
    const was = previous.state;
    const state = faults.length > 0 ? "fault" : "ok";
    const first = faults[0];
    this.current = {
      state,
      since: state === was ? this.current.since : at,
      dataDir: this.o.dataDir,
      ...(first ? { code: first.code, path: first.path, hint: storageFaultHint(first.code, this.o.dataDir) } : {}),
      faults,
      heldRollouts: [...this.held].slice(0, 1000),
      updatedAt: at,
    };
    if (state !== was) {
      if (state === "ok") this.o.log.warn({ faultSince: this.current.since }, "the hub can write its data dir again");
      this.followRetries();
      this.emit("transition", this.state, structuredClone(previous));
    }
    void this.publish();
  }

  private followRetries(): void {
    if (this.faulted && !this.timer && !this.stopped) {
      this.timer = setInterval(() => void this.retryNow(), this.o.retryEveryMs ?? 5000);
      this.timer.unref();
    } else if (!this.faulted && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private async publish(): Promise<void> {
    if (!this.o.publish || this.stopped) return;
    const state = StorageHealthState.parse(this.current);
    await this.o.publish(state).catch((err: unknown) => this.o.log.warn({ err }, "cannot publish the storage state (hub/storage)"));
  }
}

/**
 * The audit event of a transition: "storage.fault" (at the fault's start, with what failed) or
 * "storage.recovered". While faulted the audit log keeps events in memory, so both reach the file
 * once the data dir can be written, in order with what happened in between.
 */
export function storageTransitionEvent(state: StorageHealthState, previous?: StorageHealthState, now = new Date()): AuditEvent {
  const at = state.state === "fault" ? new Date(state.since) : now;
  const details: Record<string, unknown> =
    state.state === "fault"
      ? { code: state.code, path: state.path, hint: state.hint, writers: state.faults.map((f) => f.writer), message: state.faults[0]?.message }
      : { faultSince: previous?.since, code: previous?.code, path: previous?.path, writers: previous?.faults.map((f) => f.writer) };
  return { id: newAuditEventId(at), at: at.toISOString(), actor: "hub", action: state.state === "fault" ? "storage.fault" : "storage.recovered", target: state.dataDir, details };
}
