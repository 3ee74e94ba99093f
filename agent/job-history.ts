/**
 * The agent's job history, kept in stateDir/published-jobs.json: the jobs whose final state this
 * agent published and has not cleared yet, oldest first, each with that final state and whether
 * the broker acknowledged it (QoS 1 PUBACK).
 *
 * A final state counts as delivered only once the broker acknowledged it: until then it is kept
 * here (across a restart too) and published again after every reconnect, so a connection cut
 * between the publish and its ack, or an agent restart meanwhile, cannot lose a job's outcome.
 * The agent keeps the newest `keepJobs` on the broker and clears older ones with an empty retained
 * payload on jobs/<id>; an id leaves this list only once the broker acknowledged that clear.
 */
import { z } from "zod";
import { JobState } from "../protocol/index.js";
import { readJsonFile, writeJsonAtomic } from "./state.js";

const Entry = z.object({
  id: z.string().min(1),
  at: z.string(),
  /** The job's final state as published (absent in files written before it was kept). */
  final: JobState.optional(),
  /** Did the broker acknowledge the final state? (Older files only listed acknowledged ones.) */
  acked: z.boolean().default(true),
});
type Entry = z.infer<typeof Entry>;

const PublishedJobs = z.object({ jobs: z.array(Entry).default([]) });

export class PublishedJobsStore {
  private jobs: Entry[];

  constructor(
    private readonly file: string,
    onBroken: (why: string) => void,
  ) {
    this.jobs = readJsonFile(file, PublishedJobs, onBroken)?.jobs ?? [];
  }

  get ids(): string[] {
    return this.jobs.map((j) => j.id);
  }

  /** A job's state became final: keep it, not yet acknowledged (a job reported again keeps its place). */
  recordFinal(state: JobState, at = new Date().toISOString()): void {
    const known = this.jobs.find((j) => j.id === state.id);
    if (known) Object.assign(known, { final: state, acked: false });
    else this.jobs.push({ id: state.id, at, final: state, acked: false });
    this.save();
  }

  /** The broker acknowledged this final state (a newer one recorded meanwhile stays unacknowledged). */
  markAcked(id: string, sent: JobState): void {
    const known = this.jobs.find((j) => j.id === id);
    if (!known || known.acked || JSON.stringify(known.final) !== JSON.stringify(sent)) return;
    known.acked = true;
    this.save();
  }

  /** Final states the broker has not acknowledged yet, oldest first. */
  unacked(): JobState[] {
    return this.jobs.filter((j) => !j.acked && j.final).map((j) => j.final!);
  }

  /** The final state of a job still in the history, if this agent kept it. */
  final(id: string): JobState | undefined {
    return this.jobs.find((j) => j.id === id)?.final;
  }

  /**
   * Ids beyond the newest `keep`, oldest first; never one in `exclude` (a running job) nor one
   * whose final state the broker has not acknowledged (it is still on its way).
   */
  excess(keep: number, exclude: ReadonlySet<string> = new Set()): string[] {
    const n = this.jobs.length - keep;
    if (n <= 0) return [];
    return this.jobs
      .slice(0, n)
      .filter((j) => j.acked && !exclude.has(j.id))
      .map((j) => j.id);
  }

  /** The broker acknowledged the clear of this job's topic. */
  remove(id: string): void {
    const before = this.jobs.length;
    this.jobs = this.jobs.filter((j) => j.id !== id);
    if (this.jobs.length !== before) this.save();
  }

  private save(): void {
    writeJsonAtomic(this.file, { jobs: this.jobs });
  }
}
