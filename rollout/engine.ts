/**
 * Executes one RolloutPlan against a FleetPort: canary phase, soak, waves with a parallelism limit,
 * per host pull -> switch -> test -> health gate, a failure budget and the failure policy (halt,
 * roll back the failed hosts, roll back every switched host, revert on GitHub).
 *
 * Durability: the whole state lives in one RolloutRecord. It is saved whole when the rollout
 * starts, resumes and ends; in between the store appends what changed (store.ts). A step is
 * recorded durably before its command goes out, and only that is waited for: results and host
 * states are appended without waiting for the disk, since a restart learns them again from the
 * agents' retained job states. Execution is written to be replayable: resume() runs the same code over the stored record,
 * and every step first looks in the record. A step with a result is not run again; a step that was
 * sent but has no result waits for the job's retained state instead of resending; a step whose fate
 * cannot be learned makes the host (and the rollout) "interrupted". So no host ever gets the same
 * step twice.
 */
import { EventEmitter, setMaxListeners } from "node:events";
import pino, { type Logger } from "pino";
import type {
  AuditEvent,
  CommandOp,
  HostRolloutState,
  HostRolloutStateName,
  RolloutHistoryEntry,
  RolloutProgress,
  RolloutStateName,
} from "../protocol/schemas.js";
import { RolloutNotFoundError, WaitAbortedError, WaitTimeoutError } from "./errors.js";
import { newCommandId, newId, waitForChange, type CommandArgsInput, type FleetChange, type FleetPort, type HostSnapshot } from "./fleet-port.js";
import type { RolloutPlan } from "./spec.js";
import { stepKey, type RolloutRecord, type RolloutStore, type StepRecord, type StepResult } from "./store.js";
import { JobStateLost, waitForStepJob } from "./step-wait.js";
import { describeWindow, isWithinWindow } from "../protocol/windows.js";
import { hostRunsStep, isFinalRolloutState } from "../protocol/enums.js";

export interface RolloutEngineEvents {
  /** Coalesced (at most every progressIntervalMs) plus immediately on phase changes and the end. */
  progress: [RolloutProgress];
  /** Every decision, as it is made. */
  audit: [AuditEvent];
  /** Once, when the rollout ends (not when it is interrupted by detach()). */
  history: [RolloutHistoryEntry];
  done: [RolloutProgress];
  /** Its state could not be stored: it stopped unfinished (resumed by the next start of the hub). */
  "storage-fault": [RolloutStorageFault];
}

export interface RolloutStorageFault {
  rolloutId: string;
  error: string;
  /** What the store threw (its cause chain has the file system's error code). */
  cause: unknown;
}

/** Opens a revert of the merge on GitHub; injected so the engine never imports github/. */
export type RevertCallback = (context: {
  rolloutId: string;
  commit: string;
  /** The update was merged as several PRs: the first one's merge commit (revert to before it). */
  firstMergeCommit?: string;
  prNumber?: number;
  reason: string;
}) => Promise<{ number: number; url: string; /** The revert commit, when it landed directly ("commit" mode). */ commit?: string }>;

export interface RolloutEngineOptions {
  fleet: FleetPort;
  store: RolloutStore;
  logger?: Logger;
  revert?: RevertCallback;
  /** Minimum gap between two "progress" events while hosts are busy. Default 250 ms. */
  progressIntervalMs?: number;
  /** On resume: how long to look for the retained job state of a command sent before the restart. Default 5 s. */
  resumeGraceMs?: number;
}

const TERMINAL_HOST_STATES: readonly HostRolloutStateName[] = ["succeeded", "failed", "skipped", "rolled-back", "interrupted"];
const short = (sha?: string) => (sha ? sha.slice(0, 8) : "none");
const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;
const isOnline = (h: HostSnapshot) => h.availability === "online";
/** The op a step record's key stands for ("evaluate" is a refresh, "restore-checkout" a pull). */
const opOfStep = (step: string): CommandOp => (step === "evaluate" ? "refresh" : step === "restore-checkout" ? "pull" : (step as CommandOp));


/** "wave-1: 3/9 hosts switched, 1 failed, 2 skipped" */
export function summarizeProgress(p: RolloutProgress): string {
  const hosts = Object.values(p.hosts);
  const count = (s: HostRolloutStateName) => hosts.filter((h) => h.state === s).length;
  const skipped = count("skipped");
  const pulledOnly = hosts.filter((h) => h.state === "succeeded" && h.pullOnly).length;
  const parts = [`${count("succeeded")}/${hosts.length - skipped} hosts switched${pulledOnly ? ` (${pulledOnly} pulled only: system already matched)` : ""}`];
  const failed = count("failed") + count("interrupted");
  if (failed) parts.push(`${failed} failed`);
  if (count("rolled-back")) parts.push(`${count("rolled-back")} rolled back`);
  if (skipped) parts.push(`${skipped} skipped`);
  const prefix =
    p.state === "running" ? (p.currentPhase ? `${p.currentPhase}: ` : "") : p.state === "soaking" ? "soaking canary: " : `${p.state}: `;
  return prefix + parts.join(", ");
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new WaitAbortedError("the soak time"));
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    const onAbort = () => {
      clearTimeout(t);
      reject(new WaitAbortedError("the soak time"));
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

export class RolloutEngine extends EventEmitter<RolloutEngineEvents> {
  private readonly fleet: FleetPort;
  private readonly store: RolloutStore;
  private readonly log: Logger;
  private readonly revert?: RevertCallback;
  private readonly progressIntervalMs: number;
  private readonly resumeGraceMs: number;
  private readonly abort = new AbortController();
  private rec?: RolloutRecord;
  private detached = false;
  private cancelledBy?: string;
  private progressTimer?: NodeJS.Timeout;
  /** Hosts and steps changed since the store last heard of them. */
  private readonly unsaved = { hosts: new Set<string>(), steps: new Set<string>() };
  private countsStale = true;
  /**
   * Per host: aborts that host's waits when an operator cancels its step (cancelStep), and the
   * signal its waits listen on (made once per host: AbortSignal.any is not free, and a host waits
   * three to five times per rollout).
   */
  private readonly hostWaits = new Map<string, { cancel: AbortController; signal: AbortSignal }>();
  /** Step cancels not handled yet: host -> who cancelled. */
  private readonly stepCancels = new Map<string, string>();

  constructor(opts: RolloutEngineOptions) {
    super();
    this.fleet = opts.fleet;
    this.store = opts.store;
    this.log = opts.logger ?? pino({ level: "silent" });
    this.revert = opts.revert;
    this.progressIntervalMs = opts.progressIntervalMs ?? 250;
    this.resumeGraceMs = opts.resumeGraceMs ?? 5000;
    // Every wait of every host in flight listens on this one signal: hundreds is expected, not a leak.
    setMaxListeners(0, this.abort.signal);
  }

  get id(): string | undefined {
    return this.rec?.id;
  }

  /** A copy of the current progress, or undefined before run()/resume(). */
  get progress(): RolloutProgress | undefined {
    if (!this.rec) return undefined;
    this.refreshCounts();
    return structuredClone(this.rec.progress);
  }

  /** Execute a fresh plan; resolves with the final progress. */
  run(plan: RolloutPlan, requestedBy: string): Promise<RolloutProgress> {
    if (this.rec) throw new Error("a RolloutEngine runs one rollout; create a new engine");
    const now = new Date().toISOString();
    const hosts: Record<string, HostRolloutState> = {};
    for (const phase of plan.phases) {
      for (const h of phase.hosts) {
        hosts[h] = { host: h, phase: phase.name, state: "pending", jobIds: [], generationBefore: plan.generationsAtPlan[h] };
        const commitBefore = plan.commitsAtPlan[h];
        if (commitBefore !== undefined) hosts[h].commitBefore = commitBefore;
        const pullOnly = plan.pullOnly[h];
        if (pullOnly !== undefined) hosts[h].pullOnly = pullOnly;
        const reboot = plan.reboot[h];
        if (reboot !== undefined) hosts[h].reboot = reboot;
      }
    }
    // Hosts that were selected but cannot take part are shown, with why; unselected ones only in the plan.
    for (const e of plan.excluded) {
      if (e.code !== "not-selected") hosts[e.host] = { host: e.host, phase: "excluded", state: "skipped", reason: e.reason, jobIds: [] };
    }
    const progress: RolloutProgress = {
      id: plan.id,
      commit: plan.commit,
      state: "planned",
      summary: "",
      requestedBy,
      prNumber: plan.spec.prNumber,
      lockDiff: plan.spec.lockDiff,
      ...(plan.spec.converges ? { converges: plan.spec.converges } : {}),
      phases: plan.phases.map((p) => ({ name: p.name, hosts: p.hosts })),
      hosts,
      counts: { total: 0, succeeded: 0, failed: 0, skipped: 0 },
      createdAt: now,
      updatedAt: now,
    };
    this.rec = { version: 1, id: plan.id, commit: plan.commit, requestedBy, plan, progress, steps: {}, rollbackFailed: [], finished: false };
    this.countsStale = true;
    this.refreshCounts();
    return this.execute(false);
  }

  /** Continue a stored rollout after a hub restart; resolves with the final progress. */
  async resume(id: string): Promise<RolloutProgress> {
    if (this.rec) throw new Error("a RolloutEngine runs one rollout; create a new engine");
    const rec = await this.store.load(id);
    if (!rec) throw new RolloutNotFoundError(id);
    this.rec = rec;
    if (rec.finished) return this.progress!;
    return this.execute(true);
  }

  /** Stop launching hosts and stop waiting; hosts mid-step are reported interrupted. */
  cancel(actor = "operator"): boolean {
    const rec = this.rec;
    if (!rec || rec.finished || this.abort.signal.aborted) return false;
    this.cancelledBy = actor;
    rec.stop ??= { reason: "cancelled", detail: `cancelled by ${actor}`, at: new Date().toISOString() };
    this.audit("rollout.cancel", undefined, {}, actor);
    this.abort.abort();
    this.stopStepsInFlight(actor);
    return true;
  }

  /**
   * Cancel the step a host is running in this rollout (docs/architecture.md, "Cancelling a step"):
   * stop waiting for it, ask the agent to stop the job where that is safe (never an activation),
   * record the step as cancelled (audit `step.cancelled` with who), and let the host fail, so the
   * rollout's normal failure policy applies. Returns why it cannot, or undefined once cancelled.
   */
  cancelStep(host: string, actor = "operator"): string | undefined {
    const rec = this.rec;
    if (!rec || rec.finished || this.abort.signal.aborted) return "the rollout is not running";
    const hs = rec.progress.hosts[host];
    if (!hs) return `host ${host} is not part of this rollout`;
    if (!hostRunsStep(hs.state)) return `host ${host} runs no step (it is ${hs.state})`;
    if (this.stepCancels.has(host)) return `the step of ${host} is being cancelled already`;
    this.stepCancels.set(host, actor);
    this.hostWaits.get(host)?.cancel.abort();
    return undefined;
  }

  /** Everything one host waits for: aborted by a rollout cancel, a hub stop, or a cancel of its step. */
  private hostSignal(host: string): AbortSignal {
    let w = this.hostWaits.get(host);
    if (!w) {
      const cancel = new AbortController();
      if (this.stepCancels.has(host)) cancel.abort(); // cancelled between two waits: the next one ends at once
      w = { cancel, signal: AbortSignal.any([this.abort.signal, cancel.signal]) };
      this.hostWaits.set(host, w);
    }
    return w.signal;
  }

  /** Who cancelled this host's step, if an operator did (and the rollout goes on); handled once. */
  private takeStepCancel(host: string): string | undefined {
    if (this.abort.signal.aborted) return undefined;
    const by = this.stepCancels.get(host);
    if (by === undefined) return undefined;
    this.stepCancels.delete(host);
    this.hostWaits.delete(host);
    return by;
  }

  /**
   * A cancel also stops what hosts are doing for this rollout: a pull or a test in flight gets a
   * `stop`. A switch or rollback is left to finish: cutting an activation short is worse than
   * letting it end, and its outcome is reported (the host shows "interrupted" here).
   */
  private stopStepsInFlight(actor: string): void {
    const rec = this.rec!;
    for (const step of Object.values(rec.steps)) {
      if (step.result || (step.step !== "pull" && step.step !== "test")) continue;
      const expiresAt = new Date(Date.now() + 15_000);
      // Recorded in the audit log by the fleet port (FleetView), like every command. It names its job: never a later one.
      this.fleet.sendCommand(step.host, "stop", { job: step.commandId }, { rolloutId: rec.id, expiresAt, requestedBy: actor }).catch((e: unknown) => this.log.warn({ err: e, host: step.host }, "could not send stop after cancel"));
    }
  }

  /**
   * Stop driving this rollout without touching its durable state (hub shutdown). The stored
   * record stays unfinished, so a later resume() picks it up.
   */
  detach(): void {
    this.detached = true;
    if (this.progressTimer) clearTimeout(this.progressTimer);
    this.abort.abort();
  }

  // ------------------------------------------------------------------------------------------
  // The run

  private async execute(resuming: boolean): Promise<RolloutProgress> {
    const rec = this.rec!;
    try {
      this.setRolloutState(rec.soakUntil && !rec.soakFinishedAt ? "soaking" : "running");
      await this.saveWhole();
      if (resuming) {
        this.audit("rollout.resumed", undefined, { commit: rec.commit }, "hub");
      } else {
        const converges = rec.plan.spec.converges ? { converges: rec.plan.spec.converges, pullOnly: Object.keys(rec.plan.pullOnly) } : {};
        this.audit("rollout.started", undefined, { commit: rec.commit, prNumber: rec.plan.spec.prNumber, phases: rec.progress.phases, ...converges }, rec.requestedBy);
        for (const e of rec.plan.excluded) this.audit("host.excluded", e.host, { code: e.code, reason: e.reason });
        const warning = this.expectationWarning();
        if (warning) {
          this.log.warn({ rolloutId: rec.id }, warning);
          this.audit("rollout.warning", undefined, { warning });
        }
      }
      this.flushProgress();
      // Hosts that were mid-step when the hub stopped are finished first, even if the rollout had
      // already stopped launching new hosts: their commands are out, so their results must be learnt.
      if (resuming) await this.finishInFlight();
      if (!rec.stop) await this.runPhases();
      if (this.detached) return this.progress!;
      if (rec.stop && (rec.stop.reason === "canary-failed" || rec.stop.reason === "budget-exceeded") && !this.cancelledBy) {
        await this.applyFailurePolicy();
      } else if (!rec.stop && !this.cancelledBy) {
        await this.rollBackFailuresWithinBudget();
      }
      if (this.detached) return this.progress!;
      return await this.finish();
    } catch (e) {
      if (this.detached) return this.progress!;
      // A cancel during the soak (or any other wait outside a host) ends here: that is not an error.
      if (this.cancelledBy && e instanceof WaitAbortedError) return this.finish();
      // Something outside the plan broke (e.g. the data dir became unwritable): end honestly.
      this.log.error({ err: e, rolloutId: rec.id }, "rollout aborted by an unexpected error");
      rec.stop ??= { reason: "interrupted", detail: `internal error: ${(e as Error).message}`, at: new Date().toISOString() };
      return this.finish().catch(() => this.progress!);
    }
  }

  private async runPhases(): Promise<void> {
    const rec = this.rec!;
    const hasCanary = rec.plan.phases.some((p) => p.kind === "canary");
    for (const phase of rec.plan.phases) {
      if (rec.stop || this.detached) return;
      if (phase.kind !== "canary" && hasCanary && !rec.soakFinishedAt) {
        await this.soak();
        if (rec.stop || this.detached) return;
      }
      rec.progress.currentPhase = phase.name;
      this.setRolloutState("running");
      this.audit("phase.started", undefined, { phase: phase.name, hosts: phase.hosts });
      this.flushProgress();
      // Queued hosts mostly wait for their host to come back: waiting costs nothing, so no limit.
      const limit = phase.kind === "queued" ? phase.hosts.length : rec.plan.spec.strategy.parallelism;
      await this.pool(phase.hosts, limit, () => !rec.stop && !this.detached, (h) => this.runHost(h));
      if (this.detached) return;
      this.audit("phase.finished", undefined, { phase: phase.name });
      // Canaries that were all skipped (offline, held meanwhile) proved nothing: do not go on unguarded.
      if (phase.kind === "canary" && !phase.hosts.some((h) => rec.progress.hosts[h]!.state === "succeeded")) {
        this.stop("canary-failed", "no canary host could be deployed, so the waves have nothing to go by");
      }
    }
  }

  private async finishInFlight(): Promise<void> {
    const rec = this.rec!;
    // A checkout being put back when the hub stopped: its host's outcome is final, only the note is missing.
    const restoring = Object.values(rec.steps).filter((s) => s.step === "restore-checkout" && !s.result).map((s) => s.host);
    await this.pool(restoring, restoring.length, () => !this.detached, (h) => this.restoreCheckout(h));
    const inFlight = Object.values(rec.progress.hosts)
      .filter((h) => !TERMINAL_HOST_STATES.includes(h.state) && h.state !== "rolling-back")
      .filter((h) => this.sentSomething(h.host))
      .map((h) => h.host);
    if (inFlight.length === 0) return;
    this.audit("rollout.recovering", undefined, { hosts: inFlight });
    await this.pool(inFlight, inFlight.length, () => !this.detached, (h) => this.runHost(h));
  }

  /** Canary soak: wait, then require every canary to still be healthy. */
  private async soak(): Promise<void> {
    const rec = this.rec!;
    const canaries = rec.plan.phases.find((p) => p.kind === "canary")?.hosts ?? [];
    if (!rec.soakUntil) {
      rec.soakUntil = new Date(Date.now() + rec.plan.spec.strategy.soakMs).toISOString();
      this.audit("soak.started", undefined, { until: rec.soakUntil, canaries });
    }
    this.setRolloutState("soaking");
    await this.persist();
    this.flushProgress();
    await sleep(Date.parse(rec.soakUntil) - Date.now(), this.abort.signal);
    for (const h of canaries) {
      const hs = rec.progress.hosts[h]!;
      if (hs.state !== "succeeded") continue;
      const problems = this.healthProblems(h, this.fleet.host(h));
      if (problems.length > 0) this.failHost(h, `unhealthy after the soak: ${problems.join("; ")}`);
    }
    rec.soakFinishedAt = new Date().toISOString();
    if (!rec.stop) this.audit("soak.finished", undefined, { canaries });
    this.setRolloutState("running");
    await this.persist();
  }

  private async pool(hosts: string[], limit: number, keepGoing: () => boolean, fn: (host: string) => Promise<void>): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < hosts.length && keepGoing()) await fn(hosts[next++]!);
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, hosts.length)) }, worker));
  }

  // ------------------------------------------------------------------------------------------
  // One host

  private async runHost(host: string): Promise<void> {
    const rec = this.rec!;
    const hs = rec.progress.hosts[host]!;
    if (TERMINAL_HOST_STATES.includes(hs.state)) return;
    try {
      let queued = false;
      if (!this.sentSomething(host)) {
        const gate = await this.preflight(host);
        if ("skip" in gate) return this.skipHost(host, gate.skip);
        queued = gate.queued;
      }
      await this.deploy(host, queued);
    } catch (e) {
      if (this.detached) return;
      const by = e instanceof WaitAbortedError ? this.takeStepCancel(host) : undefined;
      if (by !== undefined) return this.cancelledOutsideAStep(host, by);
      if (this.abort.signal.aborted || e instanceof WaitAbortedError) {
        if (this.sentSomething(host)) this.endHost(host, "interrupted", `rollout cancelled while ${hs.state}`);
        else this.endHost(host, "skipped", "not started: the rollout was cancelled");
        return;
      }
      this.log.error({ err: e, host, rolloutId: rec.id }, "unexpected error while deploying a host");
      this.failHost(host, `unexpected error: ${(e as Error).message}`);
    }
  }

  /** Cancelled while waiting outside a job (for the host to come online, or its health gate). */
  private cancelledOutsideAStep(host: string, by: string): void {
    const rec = this.rec!;
    const hs = rec.progress.hosts[host]!;
    this.audit("step.cancelled", host, { state: hs.state }, by);
    if (!this.sentSomething(host)) return this.skipHost(host, `cancelled by ${by} before it started`);
    this.failHost(host, `cancelled by ${by} while ${hs.state}`);
  }

  /** Right before a host's turn: is it still allowed, and is it reachable? */
  private async preflight(host: string): Promise<{ skip: string } | { queued: boolean }> {
    const spec = this.rec!.plan.spec;
    const snap = this.fleet.host(host);
    if (snap?.info?.hold) return { skip: `held${snap.info.holdReason ? `: ${snap.info.holdReason}` : ""} (since the rollout was planned)` };
    const w = snap?.info?.maintenanceWindow;
    if (spec.respectWindows && w) {
      let inside = false;
      try {
        inside = isWithinWindow(w, new Date());
      } catch {
        inside = false;
      }
      if (!inside) return { skip: `maintenance window ${describeWindow(w)} closed before its turn` };
    }
    if (snap && isOnline(snap)) return this.rememberGeneration(host, snap);
    const policy = spec.offline;
    if (policy === "skip") return { skip: snap?.lastSeen ? `offline since ${snap.lastSeen}` : "offline" };
    if ("wait" in policy) {
      this.audit("host.waiting", host, { waitMs: policy.wait });
      try {
        const back = await this.fleet.waitForHost(host, isOnline, policy.wait, this.hostSignal(host));
        return this.rememberGeneration(host, back);
      } catch (e) {
        if (e instanceof WaitTimeoutError) return { skip: `offline; waited ${seconds(policy.wait)}` };
        throw e;
      }
    }
    this.audit("host.queued", host, { expiresInMs: policy.queue });
    return { queued: true };
  }

  private rememberGeneration(host: string, snap: HostSnapshot): { queued: false } {
    const hs = this.rec!.progress.hosts[host]!;
    if (snap.info?.generation !== undefined) hs.generationBefore = snap.info.generation;
    if (snap.info?.commit !== undefined) hs.commitBefore = snap.info.commit;
    this.changed(host);
    return { queued: false };
  }

  private async deploy(host: string, queuedNow: boolean): Promise<void> {
    const rec = this.rec!;
    const spec = rec.plan.spec;
    const t = spec.strategy.stepTimeouts;
    const hs = rec.progress.hosts[host]!;
    hs.startedAt ??= new Date().toISOString();

    const queueMs = typeof spec.offline === "object" && "queue" in spec.offline ? spec.offline.queue : 0;
    const wasQueued = queuedNow || rec.steps[`${host}/pull`]?.queued === true;
    this.setHostState(host, wasQueued && !rec.steps[`${host}/pull`]?.result ? "queued" : "pulling");
    const pull = await this.step(host, "pull", "pull", { commit: rec.commit }, wasQueued
      ? { timeoutMs: queueMs + t.pull, expiresInMs: queueMs, queued: true }
      : { timeoutMs: t.pull, expiresInMs: t.pull });
    if (pull.state !== "succeeded") {
      const pullStep = rec.steps[`${host}/pull`];
      if (pullStep?.queued && (pull.state === "timeout" || pull.state === "rejected") && Date.now() >= Date.parse(pullStep.expiresAt)) {
        return this.skipHost(host, `offline; the queued pull expired at ${pullStep.expiresAt}`);
      }
      return this.stepFailed(host, "pull", pull);
    }

    const matches = await this.systemAlreadyMatches(host);
    if (!matches) {
      this.setHostState(host, "switching");
      const sw = await this.step(host, "switch", "switch", { commit: rec.commit }, { timeoutMs: t.switch, expiresInMs: t.switch, onlineTimeoutMs: spec.strategy.healthTimeoutMs });
      if (sw.generationBefore !== undefined) hs.generationBefore = sw.generationBefore;
      if (sw.generationAfter !== undefined) hs.generationAfter = sw.generationAfter;
      if (sw.state !== "succeeded") return this.stepFailed(host, "switch", sw);
    }

    // A host the preview showed not affected runs what it ran: its tests of that generation still hold.
    if (!(matches && rec.plan.notAffected.includes(host))) {
      // The agent may restart during a switch: the test command waits until it is back.
      this.setHostState(host, "testing");
      const test = await this.step(host, "test", "test", {}, { timeoutMs: t.test, expiresInMs: t.test, onlineTimeoutMs: spec.strategy.healthTimeoutMs });
      if (test.state !== "succeeded") return this.stepFailed(host, "test", test);
    }

    this.setHostState(host, "verifying");
    let problems: string[];
    try {
      const snap = await this.fleet.waitForHost(host, (s) => this.healthProblems(host, s).length === 0, spec.strategy.healthTimeoutMs, this.hostSignal(host));
      hs.generationAfter ??= snap.info?.generation;
      problems = [];
    } catch (e) {
      if (!(e instanceof WaitTimeoutError)) throw e;
      problems = this.healthProblems(host, this.fleet.host(host));
      if (problems.length === 0) problems = [`not healthy within ${seconds(spec.strategy.healthTimeoutMs)}`];
    }
    if (problems.length > 0) {
      const hint = this.expectationWarning();
      return this.failHost(host, `health gate: ${problems.join("; ")}${hint ? ` (${hint})` : ""}`);
    }
    const unconfirmed = await this.confirmSwitch(host);
    if (unconfirmed) return this.failHost(host, unconfirmed);
    this.endHost(host, "succeeded", hs.pullOnly);
    this.audit("host.succeeded", host, { generationBefore: hs.generationBefore, generationAfter: hs.generationAfter, ...(hs.pullOnly ? { pullOnly: true } : {}) });
    this.note();
  }

  /**
   * A host planned "pull only" (plan.pullOnly): after the pull its agent evaluates the checked-out
   * commit (`refresh`); when that is the system it runs, no switch is needed. Anything else (the
   * evaluation differs or fails) drops the plan's promise and the host switches like any other.
   */
  private async systemAlreadyMatches(host: string): Promise<boolean> {
    const rec = this.rec!;
    const hs = rec.progress.hosts[host]!;
    if (!hs.pullOnly || rec.steps[`${host}/switch`]) return false;
    const t = rec.plan.spec.strategy.stepTimeouts;
    this.setHostState(host, "verifying");
    const r = await this.step(host, "evaluate", "refresh", {}, { timeoutMs: t.switch, expiresInMs: t.pull, onlineTimeoutMs: rec.plan.spec.strategy.healthTimeoutMs });
    const system = this.fleet.host(host)?.compartments.system;
    const running = system?.detail?.currentSystemPath;
    const evaluated = system?.detail?.expectedSystemPath;
    const matches = r.state === "succeeded" && this.fleet.host(host)?.info?.commit === rec.commit && typeof running === "string" && running === evaluated;
    if (matches) {
      this.audit("host.pull-only", host, { reason: hs.pullOnly, systemPath: running });
      return true;
    }
    const why = r.state !== "succeeded" ? `evaluation ${r.state}: ${r.summary}` : evaluated ? `the commit evaluates to ${String(evaluated)}, the host runs ${String(running ?? "?")}` : "the commit could not be evaluated";
    this.audit("host.switch-needed", host, { planned: hs.pullOnly, why });
    delete hs.pullOnly;
    this.changed(host);
    return false;
  }

  /**
   * Magic rollback: an agent keeps a switch only once the hub confirms it (`confirmBy` on the
   * switch's job), so the health gate's pass is sent as a `confirm`, recorded before it is sent
   * like every step. Returns why the host failed, or undefined (confirmed, or nothing to confirm).
   */
  private async confirmSwitch(host: string): Promise<string | undefined> {
    const rec = this.rec!;
    const switchId = rec.steps[`${host}/switch`]?.commandId;
    const confirmBy = switchId ? this.fleet.job(host, switchId)?.confirmBy : undefined;
    if (!switchId || !confirmBy) return undefined;
    // After the deadline the agent has rolled back by itself: a confirmation would mean nothing.
    const leftMs = Math.max(1000, Date.parse(confirmBy) - Date.now());
    const r = await this.step(host, "confirm", "confirm", { job: switchId }, { timeoutMs: leftMs + 30_000, expiresInMs: leftMs });
    return r.state === "succeeded" ? undefined : `confirm ${r.state}: ${r.summary}`;
  }

  /**
   * Git and lock are judged against fleet/expected. When it names another head (or still shows the
   * merged PR as pending), those compartments cannot turn green for this commit: say so up front.
   */
  private expectationWarning(): string | undefined {
    const rec = this.rec!;
    const gate = rec.plan.spec.strategy.healthCompartments;
    if (!gate.some((c) => c === "git" || c === "lock" || c === "system")) return undefined;
    const expected = this.fleet.expected?.();
    if (!expected) return undefined;
    if (expected.headCommit !== rec.commit) {
      return `fleet/expected names ${short(expected.headCommit)} as head, not ${short(rec.commit)}: the health gate waits until it is updated (publish the merged commit as head, or leave git/lock/system out of healthCompartments)`;
    }
    if (expected.pendingUpdate) {
      return `fleet/expected still shows update PR #${expected.pendingUpdate.number} as pending: lock and system stay "outdated" until it is cleared`;
    }
    return undefined;
  }

  /** What keeps the host from passing its health gate; empty when it passes. */
  private healthProblems(host: string, snap: HostSnapshot | undefined): string[] {
    if (!snap) return ["host unknown"];
    const rec = this.rec!;
    const hs = rec.progress.hosts[host]!;
    const problems: string[] = [];
    const info = snap.info;
    if (!isOnline(snap)) problems.push("agent offline");
    if (info?.commit !== rec.commit) problems.push(`at commit ${short(info?.commit)}, not ${short(rec.commit)}`);
    if (hs.generationAfter !== undefined && info?.generation !== hs.generationAfter) {
      problems.push(`running generation ${info?.generation ?? "?"}, not ${hs.generationAfter}`);
    }
    // A host the preview showed not affected ran no tests: what it runs did not change, nor does its Tests compartment.
    const untested = hs.pullOnly !== undefined && rec.plan.notAffected.includes(host);
    for (const name of rec.plan.spec.strategy.healthCompartments) {
      if (name === "tests" && untested) continue;
      const c = snap.compartments[name];
      if (!c) problems.push(`${name} compartment not reported`);
      else if (c.status !== "ok") problems.push(`${name} ${c.status}: ${c.summary}`);
      else if (name === "tests" && c.generation !== undefined && info?.generation !== undefined && c.generation !== info.generation) {
        problems.push(`tests ran on generation ${c.generation}, not ${info.generation}`);
      }
    }
    return problems;
  }

  private stepFailed(host: string, op: string, r: StepResult): void {
    if (r.state === "unknown") {
      this.endHost(host, "interrupted", `${op}: ${r.summary}`);
      this.stop("interrupted", `the result of ${op} on ${host} is unknown: ${r.summary}`);
      return;
    }
    this.failHost(host, `${op} ${r.state === "timeout" ? "timed out" : r.state}: ${r.summary}`);
  }

  private failHost(host: string, reason: string): void {
    const rec = this.rec!;
    const phase = rec.progress.hosts[host]!.phase;
    this.endHost(host, "failed", reason);
    this.audit("host.failed", host, { reason, phase });
    if (rec.plan.phases.find((p) => p.name === phase)?.kind === "canary") {
      this.stop("canary-failed", `canary ${host} failed: ${reason}`);
      return;
    }
    const failed = Object.values(rec.progress.hosts).filter((h) => h.state === "failed").length;
    const allowed = this.budgetAllowed();
    if (failed > allowed) this.stop("budget-exceeded", `${failed} host(s) failed, the failure budget allows ${allowed}`);
  }

  private skipHost(host: string, reason: string): void {
    this.endHost(host, "skipped", reason);
    this.audit("host.skipped", host, { reason });
  }

  private endHost(host: string, state: HostRolloutStateName, reason: string | undefined): void {
    const hs = this.rec!.progress.hosts[host]!;
    // A cancel that came as the host finished anyway must not cancel a later step (a policy rollback).
    this.stepCancels.delete(host);
    this.hostWaits.delete(host);
    hs.state = state;
    if (reason !== undefined) hs.reason = reason;
    hs.finishedAt = new Date().toISOString();
    this.changed(host);
  }

  private setHostState(host: string, state: HostRolloutStateName): void {
    this.rec!.progress.hosts[host]!.state = state;
    this.changed(host);
  }

  private budgetAllowed(): number {
    const rec = this.rec!;
    const b = rec.plan.spec.failureBudget;
    if (typeof b === "number") return b;
    if ("count" in b) return b.count;
    const deployable = rec.plan.phases.reduce((n, p) => n + p.hosts.length, 0);
    return Math.floor((deployable * b.percent) / 100);
  }

  private stop(reason: NonNullable<RolloutRecord["stop"]>["reason"], detail: string): void {
    const rec = this.rec!;
    if (rec.stop) return;
    rec.stop = { reason, detail, at: new Date().toISOString() };
    this.audit(`rollout.${reason}`, undefined, { detail, policy: rec.plan.spec.onFailure });
    this.flushProgress();
  }

  // ------------------------------------------------------------------------------------------
  // Steps: record, send once, wait

  private async step<O extends CommandOp>(
    host: string,
    key: string,
    op: O,
    args: CommandArgsInput<O>,
    o: { timeoutMs: number; expiresInMs: number; onlineTimeoutMs?: number; queued?: boolean },
  ): Promise<StepResult> {
    const rec = this.rec!;
    const k = `${host}/${key}`;
    const existing = rec.steps[k];
    if (existing?.result) return existing.result;
    if (existing) return this.recover(existing);

    if (o.onlineTimeoutMs !== undefined) {
      try {
        await this.fleet.waitForHost(host, isOnline, o.onlineTimeoutMs, this.hostSignal(host));
      } catch (e) {
        if (!(e instanceof WaitTimeoutError)) throw e;
        return { state: "timeout", summary: `the host was not online within ${seconds(o.onlineTimeoutMs)}, so ${op} was not sent`, at: new Date().toISOString() };
      }
    }
    const id = newCommandId();
    const sentAt = new Date();
    const expiresAt = new Date(sentAt.getTime() + o.expiresInMs);
    const record: StepRecord = { host, step: key, commandId: id, sentAt: sentAt.toISOString(), expiresAt: expiresAt.toISOString(), timeoutMs: o.timeoutMs };
    if (o.queued) record.queued = true;
    rec.steps[k] = record;
    rec.progress.hosts[host]!.jobIds.push(id);
    this.unsaved.steps.add(k);
    this.changed(host);
    await this.persist(); // recorded before it is sent: see the file comment
    if (this.abort.signal.aborted) throw new WaitAbortedError(`${op} on ${host}`);
    // The fleet port records the command in the audit log ("command.sent"), as for every sender.
    await this.fleet.sendCommand(host, op, args, { id, rolloutId: rec.id, expiresAt, requestedBy: rec.requestedBy });
    return this.awaitResult(record, o.timeoutMs);
  }

  /**
   * The step's job's terminal state, asking the host when it is missing (step-wait.ts); a step an
   * operator cancels ends here as "cancelled".
   */
  private async awaitResult(step: StepRecord, timeoutMs: number, askNow = false): Promise<StepResult> {
    const rec = this.rec!;
    const now = () => new Date().toISOString();
    let result: StepResult;
    try {
      const job = await waitForStepJob({
        fleet: this.fleet,
        host: step.host,
        jobId: step.commandId,
        op: opOfStep(step.step),
        timeoutMs,
        askEveryMs: rec.plan.spec.strategy.askHostMs,
        askNow: askNow && this.fleet.host(step.host)?.availability === "online",
        signal: this.hostSignal(step.host),
        rolloutId: rec.id,
        requestedBy: `rollout:${rec.id}`,
        onAsk: (reason, reportId) => this.audit("step.asked", step.host, { step: step.step, commandId: step.commandId, reportId, reason }),
        onAskFailed: (err) => this.log.warn({ err, host: step.host, rolloutId: rec.id }, "could not ask the host for its job state"),
      });
      const summary = job.error && !job.summary.includes(job.error) ? `${job.summary} (${job.error})` : job.summary;
      result = { state: job.state, summary, at: job.finishedAt ?? now() };
      if (job.generationBefore !== undefined) result.generationBefore = job.generationBefore;
      if (job.generationAfter !== undefined) result.generationAfter = job.generationAfter;
    } catch (e) {
      const by = e instanceof WaitAbortedError ? this.takeStepCancel(step.host) : undefined;
      if (by !== undefined) return this.stepCancelled(step, by);
      if (e instanceof JobStateLost) result = { state: "unknown", summary: e.message, at: now() };
      else if (e instanceof WaitTimeoutError) result = { state: "timeout", summary: `no result within ${seconds(timeoutMs)}`, at: now() };
      else throw e;
    }
    step.result = result;
    this.unsaved.steps.add(stepKey(step));
    this.audit("command.finished", step.host, { step: step.step, commandId: step.commandId, state: result.state, summary: result.summary });
    this.note();
    return result;
  }

  /**
   * An operator cancelled the step: recorded as cancelled, and the agent asked to stop the job. An
   * activation (switch, rollback) is not cut short (half an activation is worse than one that ends):
   * it finishes on the host and stays in its job history; the hub no longer waits for it.
   */
  private stepCancelled(step: StepRecord, by: string): StepResult {
    const rec = this.rec!;
    const op = opOfStep(step.step);
    const stoppable = op !== "switch" && op !== "rollback";
    const result: StepResult = { state: "cancelled", summary: `cancelled by ${by}${stoppable ? "" : ` (the ${op} itself is left to finish on the host)`}`, at: new Date().toISOString() };
    step.result = result;
    this.unsaved.steps.add(stepKey(step));
    this.audit("step.cancelled", step.host, { step: step.step, commandId: step.commandId, stopSent: stoppable }, by);
    this.note();
    if (stoppable) {
      const expiresAt = new Date(Date.now() + 15_000);
      this.fleet.sendCommand(step.host, "stop", { job: step.commandId }, { rolloutId: rec.id, expiresAt, requestedBy: by }).catch((e: unknown) => this.log.warn({ err: e, host: step.host }, "could not send stop after a step cancel"));
    }
    return result;
  }

  /** A step recorded before a restart without a result: learn its fate from the retained job, never resend. */
  private async recover(step: StepRecord): Promise<StepResult> {
    const seen = this.fleet.job(step.host, step.commandId) ?? (await this.waitForAnyJobState(step.host, step.commandId, this.resumeGraceMs));
    if (!seen) {
      const result: StepResult = {
        state: "unknown",
        summary: `command ${step.commandId} was recorded before the hub stopped, but the host never reported it; it was not sent again`,
        at: new Date().toISOString(),
      };
      step.result = result;
      this.unsaved.steps.add(stepKey(step));
      this.audit("command.unknown", step.host, { step: step.step, commandId: step.commandId });
      this.note();
      return result;
    }
    this.audit("command.recovered", step.host, { step: step.step, commandId: step.commandId, state: seen.state });
    const remaining = Date.parse(step.sentAt) + step.timeoutMs - Date.now();
    // The hub was away: the job's final state may have gone missing meanwhile. Ask the host at once.
    return this.awaitResult(step, Math.max(remaining, this.resumeGraceMs), true);
  }

  /** The job's state once the host reports it (or as it is after `ms`); undefined when the rollout stops. */
  private waitForAnyJobState(host: string, jobId: string, ms: number): Promise<ReturnType<FleetPort["job"]>> {
    const job = () => this.fleet.job(host, jobId);
    const relevant = (c: FleetChange) => c.kind === "job" && c.host === host && c.jobId === jobId;
    return waitForChange(this.fleet, `job ${jobId} on ${host}`, job, relevant, ms, this.abort.signal).catch((e: unknown) => (e instanceof WaitTimeoutError ? job() : undefined));
  }

  // ------------------------------------------------------------------------------------------
  // Failure policy

  private async applyFailurePolicy(): Promise<void> {
    const rec = this.rec!;
    const spec = rec.plan.spec;
    if (spec.onFailure !== "halt") {
      const wanted: HostRolloutStateName[] = spec.onFailure === "rollback-all" ? ["failed", "succeeded", "rolling-back"] : ["failed", "rolling-back"];
      const targets = Object.values(rec.progress.hosts)
        .filter((h) => wanted.includes(h.state) && rec.steps[`${h.host}/switch`] !== undefined)
        .map((h) => h.host);
      this.setRolloutState("rolling-back");
      this.audit("policy.rollback", undefined, { policy: spec.onFailure, hosts: targets });
      this.flushProgress();
      await this.rollBackHosts(targets, this.pulledButNotSwitched());
    }
    if (spec.revertOnFailure && !this.detached && !this.cancelledBy) await this.requestRevert();
  }

  /**
   * The budget decides whether the rollout goes on, not whether a broken host stays broken: under a
   * rollback policy a host that switched and then failed (e.g. its tests) goes back to its previous
   * generation even when the rollout completes. rollback-all within the budget touches only those.
   */
  private async rollBackFailuresWithinBudget(): Promise<void> {
    const rec = this.rec!;
    const spec = rec.plan.spec;
    if (spec.onFailure === "halt") return;
    const failed = Object.values(rec.progress.hosts)
      .filter((h) => h.state === "failed" && rec.steps[`${h.host}/switch`] !== undefined)
      .map((h) => h.host);
    const unswitched = this.pulledButNotSwitched();
    if (failed.length === 0 && unswitched.length === 0) return;
    if (failed.length > 0) this.audit("policy.rollback", undefined, { policy: spec.onFailure, hosts: failed, withinBudget: true });
    await this.rollBackHosts(failed, unswitched);
  }

  /** Roll back `switched` hosts (system, then checkout); put back only the checkout of `unswitched` ones. */
  private async rollBackHosts(switched: string[], unswitched: string[]): Promise<void> {
    const limit = this.rec!.plan.spec.strategy.parallelism;
    const goOn = () => !this.detached && !this.cancelledBy;
    await this.pool(switched, limit, goOn, (h) => this.rollbackHost(h));
    await this.pool(unswitched, limit, goOn, (h) => this.restoreCheckout(h));
  }

  /**
   * Put a rolled-back host's checkout back at its commit from before the rollout, so that what it
   * runs is what its checkout builds: a later switch (by hand, from Home Assistant) must not bring
   * the rolled-back update back. Where the checkout ended up is added to the host's reason.
   */
  private async restoreCheckout(host: string): Promise<void> {
    const rec = this.rec!;
    const hs = rec.progress.hosts[host]!;
    const before = hs.commitBefore;
    if (before === undefined || before === rec.commit || rec.steps[`${host}/pull`]?.result?.state !== "succeeded") return;
    if (rec.steps[`${host}/restore-checkout`]?.result) return; // done (and noted) before a restart
    const t = rec.plan.spec.strategy;
    let note: string;
    try {
      const r = await this.step(host, "restore-checkout", "pull", { commit: before }, { timeoutMs: t.stepTimeouts.pull, expiresInMs: t.stepTimeouts.pull, onlineTimeoutMs: t.healthTimeoutMs });
      if (r.state === "succeeded") {
        this.audit("host.checkout-restored", host, { commit: before });
        note = `checkout back at ${short(before)}`;
      } else {
        this.audit("host.checkout-restore-failed", host, { commit: before, state: r.state, summary: r.summary });
        note = `its checkout is still at ${short(rec.commit)} (putting it back at ${short(before)}: ${r.state}, ${r.summary})`;
      }
    } catch (e) {
      if (this.detached) return;
      const why = this.abort.signal.aborted || e instanceof WaitAbortedError ? "the rollout was cancelled" : (e as Error).message;
      this.audit("host.checkout-restore-failed", host, { commit: before, error: why });
      note = `its checkout is still at ${short(rec.commit)} (not put back at ${short(before)}: ${why})`;
    }
    // The host's outcome is already final; this only adds where its checkout ended up.
    hs.reason = hs.reason ? `${hs.reason}; ${note}` : note;
    this.changed(host);
  }

  /** Failed hosts that pulled the update but were never sent a switch: only their checkout goes back. */
  private pulledButNotSwitched(): string[] {
    const rec = this.rec!;
    return Object.values(rec.progress.hosts)
      .filter((h) => h.state === "failed" && rec.steps[`${h.host}/pull`]?.result?.state === "succeeded" && rec.steps[`${h.host}/switch`] === undefined)
      .map((h) => h.host);
  }

  private async rollbackHost(host: string): Promise<void> {
    const rec = this.rec!;
    const hs = rec.progress.hosts[host]!;
    const spec = rec.plan.spec;
    const target = hs.generationBefore;
    const before = hs.state === "rolling-back" ? hs.reason : hs.reason ?? "switched in this rollout";
    try {
      if (!rec.steps[`${host}/rollback`]) {
        await this.untilCancelledSwitchEnds(host);
        const current = this.fleet.host(host)?.info?.generation;
        const switched = rec.steps[`${host}/switch`]?.result?.generationAfter;
        const untouched = target !== undefined ? current === target && (switched === undefined || switched === target) : rec.steps[`${host}/switch`]?.result?.state !== "succeeded";
        if (untouched) {
          this.audit("host.rollback-not-needed", host, { generation: current });
          hs.reason = `${before}; still on generation ${current ?? "?"}, nothing to roll back`;
          this.changed(host);
          await this.restoreCheckout(host);
          return;
        }
      }
      this.setHostState(host, "rolling-back");
      hs.reason = before;
      this.changed(host);
      const r = await this.step(host, "rollback", "rollback", target !== undefined ? { generation: target } : {}, {
        timeoutMs: spec.strategy.stepTimeouts.switch,
        expiresInMs: spec.strategy.stepTimeouts.switch,
        onlineTimeoutMs: spec.strategy.healthTimeoutMs,
      });
      if (r.state !== "succeeded") {
        rec.rollbackFailed.push(host);
        this.endHost(host, "failed", `${before}; rollback ${r.state}: ${r.summary}`);
        this.audit("host.rollback-failed", host, { summary: r.summary });
        return;
      }
      if (target !== undefined) {
        try {
          await this.fleet.waitForHost(host, (s) => s.info?.generation === target, spec.strategy.healthTimeoutMs, this.hostSignal(host));
        } catch (e) {
          if (!(e instanceof WaitTimeoutError)) throw e;
          const now = this.fleet.host(host)?.info?.generation;
          rec.rollbackFailed.push(host);
          this.endHost(host, "failed", `${before}; rollback ran but the host reports generation ${now ?? "?"}, not ${target}`);
          this.audit("host.rollback-failed", host, { generation: now, expected: target });
          return;
        }
      }
      this.audit("host.rolled-back", host, { generation: target });
      this.endHost(host, "rolled-back", `${before}; rolled back to generation ${target ?? "previous"}`);
      await this.restoreCheckout(host);
    } catch (e) {
      if (this.detached) return;
      const by = e instanceof WaitAbortedError ? this.takeStepCancel(host) : undefined;
      if (by !== undefined) {
        this.audit("step.cancelled", host, { state: "rolling-back" }, by);
        rec.rollbackFailed.push(host);
        this.endHost(host, "failed", `${before}; rollback cancelled by ${by}`);
        return;
      }
      if (this.abort.signal.aborted || e instanceof WaitAbortedError) {
        this.endHost(host, "interrupted", `${before}; rollout cancelled during rollback`);
        return;
      }
      rec.rollbackFailed.push(host);
      this.endHost(host, "failed", `${before}; rollback error: ${(e as Error).message}`);
    }
  }

  /**
   * A cancelled switch was left to finish on the host (stepCancelled): whether there is anything to
   * roll back, and whether the host takes a rollback at all, is known only once it has ended.
   */
  private async untilCancelledSwitchEnds(host: string): Promise<void> {
    const rec = this.rec!;
    const sw = rec.steps[`${host}/switch`];
    if (sw?.result?.state !== "cancelled") return;
    const left = Date.parse(sw.sentAt) + sw.timeoutMs - Date.now();
    this.audit("host.waiting-for-cancelled-switch", host, { commandId: sw.commandId });
    try {
      await waitForStepJob({
        fleet: this.fleet,
        host,
        jobId: sw.commandId,
        op: "switch",
        timeoutMs: Math.max(left, this.resumeGraceMs),
        askEveryMs: rec.plan.spec.strategy.askHostMs,
        signal: this.hostSignal(host),
        rolloutId: rec.id,
        requestedBy: `rollout:${rec.id}`,
      });
      await this.fleet.waitForHost(host, isOnline, rec.plan.spec.strategy.healthTimeoutMs, this.hostSignal(host)).catch((e: unknown) => {
        if (!(e instanceof WaitTimeoutError)) throw e;
      });
    } catch (e) {
      if (e instanceof WaitAbortedError) throw e;
      // Timed out or lost: the rollback is tried anyway (the agent refuses it while still busy).
    }
  }

  private async requestRevert(): Promise<void> {
    const rec = this.rec!;
    if (!this.revert) {
      this.audit("revert.unavailable", undefined, { detail: "revertOnFailure is set but no revert callback was configured" });
      return;
    }
    if (rec.revertRequestedAt) {
      // Requested before a restart: never open a second revert. Whether the first one exists is for GitHub to tell.
      if (!rec.progress.revertPr) this.audit("revert.unknown", undefined, { requestedAt: rec.revertRequestedAt });
      return;
    }
    rec.revertRequestedAt = new Date().toISOString();
    await this.persist(); // never call it twice, even across a crash
    try {
      const spec = rec.plan.spec;
      const pr = await this.revert({ rolloutId: rec.id, commit: rec.commit, ...(spec.firstMergeCommit ? { firstMergeCommit: spec.firstMergeCommit } : {}), prNumber: spec.prNumber, reason: rec.stop?.detail ?? "rollout failed" });
      rec.progress.revertPr = { number: pr.number, url: pr.url, ...(pr.commit ? { commit: pr.commit } : {}) };
      this.audit("revert.opened", undefined, { number: pr.number, url: pr.url, ...(pr.commit ? { commit: pr.commit } : {}) });
    } catch (e) {
      this.log.error({ err: e, rolloutId: rec.id }, "revert callback failed");
      this.audit("revert.failed", undefined, { error: (e as Error).message });
    }
    this.changed();
  }

  // ------------------------------------------------------------------------------------------
  // The end

  private async finish(): Promise<RolloutProgress> {
    const rec = this.rec!;
    const stop = rec.stop;
    const notStarted = stop
      ? {
          "canary-failed": "not started: a canary failed",
          "budget-exceeded": "not started: the failure budget was exceeded",
          interrupted: "not started: the rollout was interrupted",
          cancelled: "not started: the rollout was cancelled",
        }[stop.reason]
      : "not started";
    for (const hs of Object.values(rec.progress.hosts)) {
      if (hs.state === "pending") this.endHost(hs.host, "skipped", notStarted);
      else if (!TERMINAL_HOST_STATES.includes(hs.state)) {
        // Still mid-step (e.g. after an internal error): say so rather than leave "switching" forever.
        this.endHost(hs.host, "interrupted", `the rollout ended while the host was ${hs.state}`);
      }
    }
    let state: RolloutStateName;
    if (this.cancelledBy || stop?.reason === "cancelled") state = "cancelled";
    else if (!stop) state = "completed";
    else if (stop.reason === "interrupted") state = "interrupted";
    else if (rec.plan.spec.onFailure === "halt") state = "halted";
    else state = rec.rollbackFailed.length > 0 ? "failed" : "rolled-back";

    const now = new Date().toISOString();
    rec.progress.finishedAt = now;
    this.setRolloutState(state);
    this.refreshCounts();
    const entry: RolloutHistoryEntry = {
      rolloutId: rec.id,
      commit: rec.commit,
      state,
      summary: rec.progress.summary,
      requestedBy: rec.requestedBy,
      startedAt: rec.progress.createdAt,
      finishedAt: now,
      hosts: Object.values(rec.progress.hosts).map((h) => ({
        host: h.host,
        state: h.state,
        reason: h.reason,
        generationBefore: h.generationBefore,
        generationAfter: h.generationAfter,
        ...(h.state === "succeeded" && h.pullOnly ? { pullOnly: true } : {}),
      })),
    };
    if (rec.plan.spec.converges) entry.converges = rec.plan.spec.converges;
    if (rec.plan.spec.prNumber !== undefined) entry.prNumber = rec.plan.spec.prNumber;
    if (rec.plan.spec.lockDiff) entry.lockDiff = rec.plan.spec.lockDiff;
    if (rec.progress.revertPr) entry.revertPr = rec.progress.revertPr;
    // The history entry first, then the record that says "finished": should the second write fail,
    // the resumed rollout ends again with the same state and writes the same entry, instead of a
    // finished record whose history entry (and final publication) is lost.
    try {
      await this.store.saveHistory(entry);
    } catch (e) {
      this.storageFailed(e);
      throw e;
    }
    rec.finished = true;
    await this.saveWhole();
    this.audit("rollout.finished", undefined, { state, summary: rec.progress.summary, stop: stop?.detail });
    this.flushProgress();
    this.emit("history", entry);
    const final = this.progress!;
    this.emit("done", final);
    return final;
  }

  // ------------------------------------------------------------------------------------------
  // Bookkeeping

  /** Store the record whole (start, resume, end). */
  private async saveWhole(): Promise<void> {
    this.refreshCounts();
    if (this.detached) return;
    this.unsaved.hosts.clear();
    this.unsaved.steps.clear();
    try {
      await this.store.save(this.rec!);
    } catch (e) {
      this.storageFailed(e);
      throw e;
    }
  }

  /** Append what changed and wait until it is on disk (a command is about to go out, a revert to be asked for). */
  private async persist(): Promise<void> {
    if (this.detached) return;
    try {
      await this.appendChanges(true);
    } catch (e) {
      this.storageFailed(e);
      throw e;
    }
  }

  /**
   * Append what changed without waiting for the disk: the next persist() makes it durable. A
   * failed write stops the rollout like a failed persist().
   */
  private note(): void {
    if (this.detached) return;
    this.appendChanges(false).catch((e: unknown) => this.storageFailed(e));
  }

  private appendChanges(durable: boolean): Promise<void> {
    const changes = { hosts: [...this.unsaved.hosts], steps: [...this.unsaved.steps] };
    this.unsaved.hosts.clear();
    this.unsaved.steps.clear();
    return this.store.append(this.rec!, changes, { durable });
  }

  /**
   * The state could not be stored (full or read-only data dir). What is not stored must not be
   * published, or the broker and the file would tell two stories and a restart would finish the
   * rollout a second time: stop here like a hub shutdown (nothing more is sent or published; the
   * record stays unfinished) and let the next start resume it from what was stored.
   */
  private storageFailed(e: unknown): void {
    if (this.detached) return;
    const rolloutId = this.rec!.id;
    this.log.error({ err: e, rolloutId }, "cannot store the rollout's state: it stops here unfinished and resumes when the hub restarts with a writable data dir");
    this.detach();
    this.emit("storage-fault", { rolloutId, error: (e as Error).message, cause: e });
  }

  /** A step was recorded for the host (and so may have been sent): step() adds its command id to jobIds with it. */
  private sentSomething(host: string): boolean {
    return (this.rec!.progress.hosts[host]?.jobIds.length ?? 0) > 0;
  }

  private setRolloutState(state: RolloutStateName): void {
    this.rec!.progress.state = state;
    this.changed();
  }

  /**
   * Counts and summary are recomputed (over every host) only when someone looks: a progress
   * event, the record saved whole. Log lines in between carry the last ones computed.
   */
  private refreshCounts(): void {
    if (!this.countsStale) return;
    this.countsStale = false;
    const p = this.rec!.progress;
    const hosts = Object.values(p.hosts);
    p.counts = {
      total: hosts.length,
      succeeded: hosts.filter((h) => h.state === "succeeded").length,
      failed: hosts.filter((h) => h.state === "failed" || h.state === "interrupted").length,
      skipped: hosts.filter((h) => h.state === "skipped").length,
    };
    p.summary = summarizeProgress(p);
  }

  /** Progress changed (of `host`, if given): emit it at most every progressIntervalMs. */
  private changed(host?: string): void {
    if (host !== undefined) this.unsaved.hosts.add(host);
    this.countsStale = true;
    this.rec!.progress.updatedAt = new Date().toISOString();
    if (this.progressTimer || this.detached) return;
    this.progressTimer = setTimeout(() => {
      this.progressTimer = undefined;
      if (this.detached) return;
      // A final state goes out only from finish(), once it is stored (record first, publish after).
      if (isFinalRolloutState(this.rec!.progress.state)) return;
      this.refreshCounts();
      this.emit("progress", structuredClone(this.rec!.progress));
    }, this.progressIntervalMs);
  }

  private flushProgress(): void {
    if (this.progressTimer) clearTimeout(this.progressTimer);
    this.progressTimer = undefined;
    if (this.detached) return;
    this.refreshCounts();
    this.emit("progress", structuredClone(this.rec!.progress));
  }

  private audit(action: string, target: string | undefined, details: Record<string, unknown>, actor = `rollout:${this.rec!.id}`): void {
    const ev: AuditEvent = { id: newId("e"), at: new Date().toISOString(), actor, action, details: { rolloutId: this.rec!.id, ...details } };
    if (target !== undefined) ev.target = target;
    this.log.info({ rolloutId: this.rec!.id, action, target, ...details }, action);
    this.emit("audit", ev);
  }
}
