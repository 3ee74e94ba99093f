/**
 * Automatic mode pauses after a failed rollout: no further automatic merge until an operator
 * resumes it (page, API, Home Assistant's button, Node-RED's gate), or, with `resumeOnGreenPreview`, until a later PR's
 * preview builds on every host. The state survives restarts (a file in the hub's data dir) and is
 * published retained on fleet/automatic-pause for the page; each pause and resume is an audit event
 * ("automatic.paused" with the failed rollout's id, "automatic.resumed").
 *
 * Which rollouts pause it: one that ended halted, rolled back or failed, except a converge rollout
 * (the fleet's way back after Lockstep's revert). A cancelled or interrupted rollout is an
 * operator's or the hub's doing, not a verdict on the update.
 */
import { existsSync, readFileSync } from "node:fs";
import type { Logger } from "pino";
import type { AuditEvent, RolloutProgress, RolloutStateName } from "../protocol/schemas.js";
import { AutomaticPauseState as AutomaticState } from "../protocol/automatic.js";
import { newAuditEventId } from "../protocol/audit.js";

const PAUSING_STATES: readonly RolloutStateName[] = ["halted", "rolled-back", "failed"];

/** What the pause reads of the hub's previews (rollout/preview-service.ts). */
export interface PreviewVerdicts {
  onChange(listener: (pr: number) => void): () => void;
  state(pr: number): { summary: { headSha: string } } | undefined;
  mergeVerdict(pr: number, headSha: string, policy: "all"): { ok: boolean };
}

/**
 * Where the state is written: the hub gives a StorageFile (hub/storage-file.ts), which writes it whole,
 * reports to the storage health and keeps a state it could not write until the health's retry writes it.
 */
export interface AutomaticPauseStore {
  /** Replace the stored state with `text` (JSON); a failure is the store's to log, keep and retry. */
  write(text: string): unknown;
}

export interface AutomaticPauseOptions {
  /** <dataDir>/automatic.json, read at start (the state is written through `store`). */
  file: string;
  /** Writes <dataDir>/automatic.json on each pause and resume. */
  store: AutomaticPauseStore;
  log: Logger;
  /** Publish the state retained (fleet/automatic-pause). */
  publish: (state: AutomaticState) => Promise<void>;
  /** Where "automatic.paused" / "automatic.resumed" go (fleet/events). */
  audit: (event: AuditEvent) => void;
  /** A later PR's preview building on every host resumes automatic mode (automatic.resumeOnGreenPreview). */
  previews?: PreviewVerdicts;
  resumeOnGreenPreview?: boolean;
  now?: () => Date;
}

export class AutomaticPause {
  private current: AutomaticState;
  private unfollow?: () => void;

  constructor(private readonly o: AutomaticPauseOptions) {
    this.current = this.load();
  }

  get state(): AutomaticState {
    return structuredClone(this.current);
  }

  get paused(): boolean {
    return this.current.paused;
  }

  /** Publish the stored state and follow the previews (when a green preview may resume). */
  async start(): Promise<void> {
    await this.publish();
    if (this.o.previews && this.o.resumeOnGreenPreview) this.unfollow = this.o.previews.onChange((pr) => this.onPreview(pr));
  }

  stop(): void {
    this.unfollow?.();
  }

  /** A rollout ended: a failed update rollout pauses automatic mode. */
  rolloutEnded(p: RolloutProgress): void {
    if (!PAUSING_STATES.includes(p.state) || p.converges) return;
    if (this.current.paused && this.current.rolloutId === p.id) return;
    const now = this.now();
    this.set({
      paused: true,
      pausedAt: now,
      rolloutId: p.id,
      ...(p.prNumber !== undefined ? { prNumber: p.prNumber } : {}),
      reason: `rollout ${p.id} ${p.state}: ${p.summary}`.slice(0, 2000),
      updatedAt: now,
    });
    this.event("automatic.paused", "hub", { rolloutId: p.id, prNumber: p.prNumber, state: p.state });
    this.o.log.warn({ rolloutId: p.id, pr: p.prNumber }, "automatic updates paused after a failed rollout");
  }

  /** Resume automatic mode; false when it was not paused. */
  resume(by: string, why?: string): boolean {
    if (!this.current.paused) return false;
    const was = this.current;
    const now = this.now();
    this.set({ paused: false, resumedAt: now, resumedBy: by.slice(0, 200), updatedAt: now });
    this.event("automatic.resumed", by, { rolloutId: was.rolloutId, prNumber: was.prNumber, ...(why ? { why } : {}) });
    this.o.log.info({ by, why }, "automatic updates resumed");
    return true;
  }

  /** A later PR (not the one that failed) whose current head's preview builds on every host. */
  private onPreview(pr: number): void {
    const previews = this.o.previews;
    if (!this.current.paused || !previews || pr === this.current.prNumber) return;
    const head = previews.state(pr)?.summary.headSha;
    if (!head || !previews.mergeVerdict(pr, head, "all").ok) return;
    this.resume("lockstep previews", `the preview of PR #${pr} builds on every host`);
  }

  private set(state: AutomaticState): void {
    this.current = AutomaticState.parse(state);
    this.save();
    void this.publish();
  }

  private save(): void {
    this.o.store.write(JSON.stringify(this.current, null, 1) + "\n");
  }

  private load(): AutomaticState {
    const fresh: AutomaticState = { paused: false, updatedAt: this.now() };
    if (!existsSync(this.o.file)) return fresh;
    try {
      const r = AutomaticState.safeParse(JSON.parse(readFileSync(this.o.file, "utf8")));
      if (r.success) return r.data;
      this.o.log.error({ file: this.o.file }, "the stored automatic-mode state is invalid: starting paused until an operator resumes");
    } catch (err) {
      this.o.log.error({ err, file: this.o.file }, "cannot read the stored automatic-mode state: starting paused until an operator resumes");
    }
    // Unreadable state must not silently re-enable automatic merges.
    return { paused: true, pausedAt: this.now(), reason: "the stored automatic-mode state could not be read", updatedAt: this.now() };
  }

  private async publish(): Promise<void> {
    await this.o.publish(this.current).catch((err: unknown) => this.o.log.warn({ err }, "cannot publish fleet/automatic"));
  }

  private event(action: string, actor: string, details: Record<string, unknown>): void {
    const at = this.now();
    const clean = Object.fromEntries(Object.entries(details).filter(([, v]) => v !== undefined));
    this.o.audit({ id: newAuditEventId(new Date(at)), at, actor, action, target: "automatic", details: clean });
  }

  private now(): string {
    return (this.o.now?.() ?? new Date()).toISOString();
  }
}
