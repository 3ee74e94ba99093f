/**
 * The fleet as the rollout engine sees it. The engine drives only this interface, so it runs the
 * same against the MQTT FleetView (fleet-view.ts) and the in-memory fake used in unit tests
 * (test/support/fake-fleet.ts).
 */
import { newId } from "../protocol/ids.js";
import { WaitAbortedError, WaitTimeoutError } from "./errors.js";
import { TERMINAL_JOB_STATES } from "../protocol/schemas.js";
import type { z } from "zod";
import type {
  AuditEvent,
  CommandArgs,
  CommandOp,
  Compartment,
  CompartmentName,
  FleetExpected,
  HostInfo,
  JobState,
  RolloutHistoryEntry,
  RolloutProgress,
} from "../protocol/schemas.js";

/** Everything known about one host, from its retained topics. */
export interface HostSnapshot {
  host: string;
  /** Undefined until the host published its info. */
  info?: HostInfo;
  /** "unknown" until the availability topic was seen. */
  availability: "online" | "offline" | "unknown";
  compartments: Partial<Record<CompartmentName, Compartment>>;
  /** ISO time of the last message from this host. */
  lastSeen?: string;
}

export interface CommandMeta {
  /** The command id; give one when it must be recorded before sending (the engine does). */
  id?: string;
  rolloutId?: string;
  /** The agent refuses the command after this time (e.g. queued while the host was offline). */
  expiresAt: Date;
  requestedBy: string;
}

export type CommandArgsInput<O extends CommandOp> = z.input<(typeof CommandArgs)[O]>;

export type FleetChange =
  | { kind: "availability" | "info" | "compartment"; host: string }
  | { kind: "job"; host: string; jobId: string };

export interface FleetPort {
  /** All hosts seen so far. */
  hosts(): HostSnapshot[];
  host(host: string): HostSnapshot | undefined;
  /** Publish a command (QoS 1); resolves with its id once the broker has it. */
  sendCommand<O extends CommandOp>(host: string, op: O, args: CommandArgsInput<O>, meta: CommandMeta): Promise<string>;
  /** The latest known state of a job, if any was seen. */
  job(host: string, jobId: string): JobState | undefined;
  /**
   * Resolve with the job's terminal state (succeeded, failed, rejected, interrupted, cancelled).
   * Rejects with WaitTimeoutError after timeoutMs, WaitAbortedError when the signal aborts.
   */
  waitForJob(host: string, jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<JobState>;
  /** Resolve as soon as predicate(snapshot) holds (checked now and on every change of that host). */
  waitForHost(host: string, predicate: (h: HostSnapshot) => boolean, timeoutMs: number, signal?: AbortSignal): Promise<HostSnapshot>;
  /** Called on every state change; returns the unsubscribe function. */
  onChange(listener: (change: FleetChange) => void): () => void;
  /** The fleet's retained expectation (head commit, pending PR), when the port knows it. */
  expected?(): FleetExpected | undefined;
}

/** Where rollout progress, history and audit events go (retained topics and the events topic on MQTT). */
export interface RolloutPublisher {
  publishProgress(progress: RolloutProgress): Promise<void>;
  publishHistory(entry: RolloutHistoryEntry): Promise<void>;
  publishAudit(event: AuditEvent): Promise<void>;
}

export function isRolloutPublisher(x: unknown): x is RolloutPublisher {
  const p = x as Partial<RolloutPublisher> | null;
  return !!p && typeof p.publishProgress === "function" && typeof p.publishHistory === "function" && typeof p.publishAudit === "function";
}

/** The one id generator (protocol/ids.ts): "c-lz3k9q-1a2b3c4d5e6f". */
export { newId };

export const newCommandId = (): string => newId("c");

/**
 * Resolve when check() returns a value: now, or after a relevant change. Shared by every FleetPort
 * (FleetView and the fake fleet in tests), so timeouts and aborts behave the same everywhere.
 */
export function waitForChange<T>(
  port: Pick<FleetPort, "onChange">,
  what: string,
  check: () => T | undefined,
  relevant: (c: FleetChange) => boolean,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) return reject(new WaitAbortedError(what));
    const now = check();
    if (now !== undefined) return resolve(now);
    const cleanup = () => {
      clearTimeout(timer);
      unsubscribe();
      signal?.removeEventListener("abort", onAbort);
    };
    const onAbort = () => {
      cleanup();
      reject(new WaitAbortedError(what));
    };
    const unsubscribe = port.onChange((c) => {
      if (!relevant(c)) return;
      const v = check();
      if (v !== undefined) {
        cleanup();
        resolve(v);
      }
    });
    const timer = setTimeout(() => {
      cleanup();
      reject(new WaitTimeoutError(what, timeoutMs));
    }, timeoutMs);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** FleetPort.waitForJob for any port: the job's terminal state, from its cache or when it arrives. */
export function waitForTerminalJob(port: Pick<FleetPort, "onChange" | "job">, host: string, jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<JobState> {
  return waitForChange(
    port,
    `job ${jobId} on ${host}`,
    () => {
      const j = port.job(host, jobId);
      return j && TERMINAL_JOB_STATES.includes(j.state) ? j : undefined;
    },
    (c) => c.kind === "job" && c.host === host && c.jobId === jobId,
    timeoutMs,
    signal,
  );
}

/** FleetPort.waitForHost for any port: the host's snapshot once `predicate` holds. */
export function waitForHostState(port: Pick<FleetPort, "onChange" | "host">, host: string, predicate: (h: HostSnapshot) => boolean, timeoutMs: number, signal?: AbortSignal): Promise<HostSnapshot> {
  return waitForChange(
    port,
    `host ${host}`,
    () => {
      const h = port.host(host);
      return h && predicate(h) ? h : undefined;
    },
    (c) => c.host === host,
    timeoutMs,
    signal,
  );
}
