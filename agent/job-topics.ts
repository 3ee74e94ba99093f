/**
 * The retained jobs/<id> topics: a reporter per job, and pruning. The newest `keepJobs` final job
 * states stay on the broker; older ones are cleared with an empty retained payload (never the
 * running job). A clear leaves published-jobs.json only once the broker acknowledged it.
 */
import type { Logger } from "pino";
import type { JobState, Topics } from "../protocol/index.js";
import { PublishedJobsStore } from "./job-history.js";
import { JobReporter } from "./jobs.js";
import type { PublishOptions } from "./session.js";

export type JobInit = Omit<JobState, "host" | "summary" | "acceptedAt" | "state"> & { acceptedAt?: string };

export class JobTopics {
  private readonly published: PublishedJobsStore;
  /** Job topics whose clear is on its way to the broker. */
  private readonly clearing = new Set<string>();

  constructor(
    private readonly d: {
      host: string;
      topics: Topics;
      log: Logger;
      keepJobs: number;
      file: string;
      publish: (topic: string, payload: string, opts: PublishOptions, done?: (err?: Error) => void) => void;
      runningJobId: () => string | undefined;
      stopping: () => boolean;
    },
  ) {
    this.published = new PublishedJobsStore(d.file, (why) => d.log.error({ why }, "published-jobs file was unreadable; moved aside"));
  }

  newReporter(init: JobInit): JobReporter {
    const { acceptedAt, ...rest } = init;
    const stateTopic = this.d.topics.job(this.d.host, init.id);
    const reporter: JobReporter = new JobReporter(
      (t, p, o) => {
        this.d.publish(t, p, o);
        if (t === stateTopic && reporter.terminal) this.final(init.id);
      },
      stateTopic,
      this.d.topics.jobOutput(this.d.host, init.id),
      { ...rest, host: this.d.host, state: "accepted", summary: "accepted", acceptedAt: acceptedAt ?? new Date().toISOString() },
    );
    return reporter;
  }

  /** A job's retained state is final: remember it, and clear what is beyond the newest keepJobs. */
  private final(id: string): void {
    try {
      this.published.add(id);
    } catch (e) {
      this.d.log.warn({ err: (e as Error).message }, "could not record a published job");
    }
    this.prune();
  }

  /** Clear old retained jobs/<id> topics (empty retained payload); never the running job. */
  prune(): void {
    const runningId = this.d.runningJobId();
    const running = new Set(runningId ? [runningId] : []);
    for (const id of this.published.excess(this.d.keepJobs, running)) {
      if (this.clearing.has(id)) continue;
      this.clearing.add(id);
      this.d.publish(this.d.topics.job(this.d.host, id), "", { qos: 1, retain: true }, (err) => {
        this.clearing.delete(id);
        if (err) {
          if (!this.d.stopping()) this.d.log.warn({ job: id, err: err.message }, "clearing an old job topic failed; trying again later");
          return;
        }
        this.d.log.debug({ job: id }, "cleared an old retained job");
        try {
          this.published.remove(id);
        } catch (e) {
          this.d.log.warn({ err: (e as Error).message }, "could not record a cleared job");
        }
      });
    }
  }
}
