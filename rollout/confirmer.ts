/**
 * Confirms switches that no rollout owns (by hand, from the page, Node-RED or Home Assistant):
 * an agent with magic rollback keeps a switch only once the hub confirms it (`confirmBy` on the
 * switch's job). The rollout engine confirms its own switches after their health gate; every other
 * switch is confirmed here as soon as its host is back online and has published all its
 * compartments since the switch ended — the proof that the host can still reach the hub. A
 * standalone self-update run (op "self-update") publishes its job over a connection it opened
 * after switching and waits on it for the confirmation: that job arriving is the proof (such a
 * host may run no agent daemon, so nothing else would ever come).
 */
import type { Logger } from "pino";
import { COMPARTMENTS, type JobState } from "../protocol/index.js";
import type { FleetChange, FleetPort, HostSnapshot } from "./fleet-port.js";

export const CONFIRMED_BY = "lockstep hub (switch confirmation)";
/** The standalone self-update's job op (agent/self-update/report.ts; rollout/ cannot import agent/). */
const SELF_UPDATE_OP = "self-update";
const CONFIRMED_OPS = new Set(["switch", SELF_UPDATE_OP]);

/**
 * Is the host back after the switch: online, reporting the new generation, every compartment
 * computed. The agent publishes its info for the new generation only after the activation ended,
 * so seeing it proves the host still reaches the broker.
 */
export function backAfterSwitch(snap: HostSnapshot | undefined, job: JobState): boolean {
  if (!snap || snap.availability !== "online" || job.generationAfter === undefined) return false;
  if (snap.info?.generation !== job.generationAfter) return false;
  return COMPARTMENTS.every((name) => snap.compartments[name] !== undefined);
}

export class SwitchConfirmer {
  /** Switch jobs waiting for their host to come back, per host. */
  private readonly waiting = new Map<string, Map<string, JobState>>();
  /** Jobs already confirmed (a retained job state is seen again after a reconnect). */
  private readonly sent = new Set<string>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly fleet: FleetPort,
    private readonly log: Logger,
  ) {
    this.unsubscribe = fleet.onChange((c) => this.onChange(c));
  }

  stop(): void {
    this.unsubscribe();
    this.waiting.clear();
  }

  private onChange(c: FleetChange): void {
    if (c.kind === "job") {
      const job = this.fleet.job(c.host, c.jobId);
      if (!job || !CONFIRMED_OPS.has(job.op) || job.state !== "succeeded" || !job.confirmBy || job.rolloutId || this.sent.has(job.id)) return;
      if (Date.parse(job.confirmBy) <= Date.now()) return; // too late: the agent rolls back (or has)
      const forHost = this.waiting.get(c.host) ?? new Map<string, JobState>();
      forHost.set(job.id, job);
      this.waiting.set(c.host, forHost);
    }
    this.check(c.host);
  }

  private check(host: string): void {
    const forHost = this.waiting.get(host);
    if (!forHost) return;
    const snap = this.fleet.host(host);
    for (const job of [...forHost.values()]) {
      if (Date.parse(job.confirmBy!) <= Date.now()) {
        forHost.delete(job.id);
        this.log.warn({ host, job: job.id, confirmBy: job.confirmBy }, "a switch's host did not come back in time: the agent rolls it back");
        continue;
      }
      if (job.op !== SELF_UPDATE_OP && !backAfterSwitch(snap, job)) continue;
      forHost.delete(job.id);
      this.sent.add(job.id);
      this.fleet
        .sendCommand(host, "confirm", { job: job.id }, { expiresAt: new Date(job.confirmBy!), requestedBy: CONFIRMED_BY })
        .then(
          () => this.log.info({ host, job: job.id }, "confirmed a switch: its host is back online"),
          (e: unknown) => {
            // Try again on the host's next change (the deadline still bounds it).
            this.sent.delete(job.id);
            forHost.set(job.id, job);
            this.waiting.set(host, forHost);
            this.log.warn({ host, job: job.id, err: (e as Error).message }, "sending a switch confirmation failed");
          },
        );
    }
    if (forHost.size === 0) this.waiting.delete(host);
  }
}
