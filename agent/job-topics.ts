/**
 * The retained jobs/<id> topics: a reporter per job, delivery of final states, and pruning.
 *
 * A job's final state is kept in the job history (job-history.ts) before it is published and counts
 * as delivered only once the broker acknowledged it (QoS 1 PUBACK); until then it goes out again
 * after every (re)connect, also from a restarted agent. The newest `keepJobs` final job states stay
 * on the broker; older ones are cleared with an empty retained payload (never the running job, never
 * one not acknowledged yet). A clear leaves published-jobs.json only once the broker acknowledged it.
 */
import type { Logger } from "pino";
import type { JobState, Topics } from "../protocol/index.js";
import { PublishedJobsStore } from "./job-history.js";
import { JobReporter } from "./jobs.js";
import type { PublishOptions } from "./session.js";

export type JobInit = Omit<JobState, "host" | "summary" | "acceptedAt" | "state"> & {
  acceptedAt?: string;
  /** Its state is an answer, not history (a `report`): published unretained, never kept. */
  transient?: boolean;
};

export class JobTopics {
  private readonly published: PublishedJobsStore;
  /** Job topics whose clear is on its way to the broker. */
  private readonly clearing = new Set<string>();
  /** Final states on their way to the broker (MQTT.js re-sends these itself after a reconnect). */
  private readonly delivering = new Set<string>();
  /** Jobs whose state is not final yet (exclusive and quick ones), by id. */
  private readonly live = new Map<string, JobReporter>();

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
    const { acceptedAt, transient, ...rest } = init;
    const stateTopic = this.d.topics.job(this.d.host, init.id);
    const reporter: JobReporter = new JobReporter(
      (t, p, o) => {
        if (transient) return this.d.publish(t, p, { ...o, retain: false });
        if (t !== stateTopic) return this.d.publish(t, p, o);
        if (!reporter.terminal) {
          this.live.set(init.id, reporter);
          return this.d.publish(t, p, o);
        }
        this.live.delete(init.id);
        this.finalState(reporter.state);
      },
      stateTopic,
      this.d.topics.jobOutput(this.d.host, init.id),
      { ...rest, host: this.d.host, state: "accepted", summary: "accepted", acceptedAt: acceptedAt ?? new Date().toISOString() },
    );
    return reporter;
  }

  /**
   * Publish a job's state again (the hub asked: `report`): a job still running as it is now, a
   * finished one from the job history. Undefined when this agent keeps no state of it.
   */
  publishAgain(id: string): JobState | undefined {
    const running = this.live.get(id);
    if (running) {
      this.d.publish(this.d.topics.job(this.d.host, id), JSON.stringify(running.state), { qos: 1, retain: true });
      return running.state;
    }
    const final = this.published.final(id);
    if (!final) return undefined;
    // Published again even when acknowledged once: the broker may have lost what it acknowledged.
    this.deliver(final);
    return final;
  }

  /** After every (re)connect: final states the broker has not acknowledged go out again. */
  deliverUnacked(): void {
    for (const state of this.published.unacked()) this.deliver(state);
  }

  /** A job's state is final: kept on disk first, then published until the broker acknowledged it. */
  private finalState(state: JobState): void {
    try {
      this.published.recordFinal(state);
    } catch (e) {
      this.d.log.warn({ job: state.id, err: (e as Error).message }, "could not keep a job's final state on disk; it is published, but an agent restart before the broker's ack would lose it");
    }
    this.deliver(state);
  }

  private deliver(state: JobState): void {
    if (this.delivering.has(state.id)) return;
    this.delivering.add(state.id);
    this.d.publish(this.d.topics.job(this.d.host, state.id), JSON.stringify(state), { qos: 1, retain: true }, (err) => {
      this.delivering.delete(state.id);
      if (err) {
        if (!this.d.stopping()) this.d.log.warn({ job: state.id, err: err.message }, "a job's final state was not acknowledged; publishing it again after the next connect");
        return;
      }
      try {
        this.published.markAcked(state.id, state);
      } catch (e) {
        this.d.log.warn({ job: state.id, err: (e as Error).message }, "could not record the broker's ack of a job's final state");
      }
      // A newer final state of the same job was recorded while this one was on its way.
      const latest = this.published.final(state.id);
      if (latest && JSON.stringify(latest) !== JSON.stringify(state)) return this.deliver(latest);
      this.prune();
    });
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
