/**
 * The jobs whose retained state this agent published and has not cleared yet, oldest first, kept
 * in stateDir/published-jobs.json. The agent keeps the newest `keepJobs` on the broker and clears
 * older ones with an empty retained payload on jobs/<id>; an id leaves this list only once the
 * broker acknowledged that, so a clear lost to a restart or an outage is tried again.
 */
import { z } from "zod";
import { readJsonFile, writeJsonAtomic } from "./state.js";

const PublishedJobs = z.object({
  jobs: z.array(z.object({ id: z.string().min(1), at: z.string() })).default([]),
});

export class PublishedJobsStore {
  private jobs: Array<{ id: string; at: string }>;

  constructor(
    private readonly file: string,
    onBroken: (why: string) => void,
  ) {
    this.jobs = readJsonFile(file, PublishedJobs, onBroken)?.jobs ?? [];
  }

  get ids(): string[] {
    return this.jobs.map((j) => j.id);
  }

  /** A job's retained state became final: remember it (once). */
  add(id: string, at = new Date().toISOString()): void {
    if (this.jobs.some((j) => j.id === id)) return;
    this.jobs.push({ id, at });
    this.save();
  }

  /** Ids beyond the newest `keep`, oldest first, never one in `exclude` (a running job). */
  excess(keep: number, exclude: ReadonlySet<string> = new Set()): string[] {
    const n = this.jobs.length - keep;
    if (n <= 0) return [];
    return this.jobs
      .slice(0, n)
      .map((j) => j.id)
      .filter((id) => !exclude.has(id));
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
