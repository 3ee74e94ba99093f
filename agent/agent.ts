/**
 * lockstep-agent: one per host. Connects to the broker, publishes availability, info and the
 * five compartments (retained), and runs allow-listed commands as jobs, one at a time.
 *
 *   const agent = new Agent(config, logger);
 *   await agent.start();   // connects, resumes an in-flight job, publishes state
 *   await agent.stop();    // publishes offline, disconnects
 *   agent.on("restart-requested", ...)  // the `restart` command: the CLI exits for the supervisor
 *
 * This file only composes the parts (comin's pipeline, one concern per file):
 *   session.ts      MQTT session              publication.ts  compartments + info
 *   job-topics.ts   retained jobs/<id>        admission.ts    the per-op policy table
 *   job-runner.ts   commands -> jobs          ops/*.ts        one file per op
 *   activation.ts   switch runner + recovery  self-update/    the standalone nightly mode
 */
import { EventEmitter } from "node:events";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { FleetExpected, Topics, decodeJson, type JobState } from "../protocol/index.js";
import { Activation, resumeInflight } from "./activation.js";
import { bootCheckOnStart } from "./boot-rollback.js";
import { statePaths, type AgentConfig } from "./config.js";
import { childEnv, serialQueue, type AgentContext } from "./context.js";
import { GitCheckout, describeGitFailure } from "./git.js";
import { JobRunner } from "./job-runner.js";
import { JobTopics } from "./job-topics.js";
import { Refresher, fetchHead } from "./ops/refresh.js";
import { runProcess } from "./process.js";
import { StatePublisher } from "./publication.js";
import { AgentSession } from "./session.js";
import { InflightStore, StateStore } from "./state.js";
import { AGENT_VERSION } from "./version.js";

/**
 * Exit code the CLI uses after a `restart` command and after a switch or rollback that installed
 * another agent, so systemd's Restart=on-failure (or launchd's KeepAlive) starts the installed one.
 */
export const RESTART_EXIT_CODE = 75;

const PERIODIC_REFRESH_MS = 60_000;

export interface AgentOptions {
  version?: string;
  /** Path of the compiled switch-runner.js (default: next to this file). */
  runnerPath?: string;
}

export interface AgentEvents {
  "restart-requested": [];
  "job-finished": [JobState];
}

export class Agent extends EventEmitter<AgentEvents> {
  readonly topics: Topics;
  readonly host: string;
  readonly ctx: AgentContext;
  private readonly session: AgentSession;
  private readonly publisher: StatePublisher;
  private readonly jobTopics: JobTopics;
  private readonly activation: Activation;
  private readonly refresher: Refresher;
  readonly jobs: JobRunner;
  private expected: FleetExpected | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private fetching = false;

  constructor(
    readonly config: AgentConfig,
    private readonly log: Logger,
    opts: AgentOptions = {},
  ) {
    super();
    this.host = config.host;
    this.topics = new Topics(config.topicPrefix, config.haDiscoveryPrefix);
    const paths = statePaths(config.stateDir);
    mkdirSync(paths.jobsDir, { recursive: true });
    const env = childEnv(config);
    const startedAt = new Date().toISOString();
    const state = new StateStore(paths.state, (why) => log.error({ file: paths.state, why }, "state file was unreadable; moved aside, starting fresh"));
    const checkout = new GitCheckout({ dir: config.repo.checkoutDir, url: config.repo.url, branch: config.repo.branch, env, timeoutMs: config.timeouts.pullSeconds * 1000 });
    this.ctx = {
      config,
      host: config.host,
      log,
      env,
      paths,
      state,
      inflight: new InflightStore(paths.inflight, (why) => log.error({ why }, "in-flight job file was unreadable; moved aside")),
      checkout,
      withGit: serialQueue(),
      remeasure: () => this.publisher.remeasure(),
      stopping: () => this.stopped,
    };
    this.session = new AgentSession(config, this.topics, log);
    const publish = this.session.publish.bind(this.session);
    const version = opts.version ?? AGENT_VERSION;
    this.publisher = new StatePublisher({
      config,
      topics: this.topics,
      log,
      checkout,
      state,
      env,
      version,
      startedAt,
      publish,
      expected: () => this.expected,
      working: () => this.jobs.current?.touches ?? new Set(),
    });
    this.jobTopics = new JobTopics({
      host: this.host,
      topics: this.topics,
      log,
      keepJobs: config.keepJobs,
      file: paths.publishedJobs,
      publish,
      runningJobId: () => this.jobs.current?.id,
      stopping: () => this.stopped,
    });
    this.activation = new Activation(this.ctx, opts.runnerPath ?? join(__dirname, "switch-runner.js"));
    this.refresher = new Refresher(this.ctx, () => this.jobs.current !== undefined);
    this.jobs = new JobRunner({
      ctx: this.ctx,
      activation: this.activation,
      refresher: this.refresher,
      newReporter: (init) => this.jobTopics.newReporter(init),
      publishAgain: (id) => this.jobTopics.publishAgain(id),
      restartReason: () => this.publisher.restartReason(),
      publishAcked: (topic, payload, timeoutMs) => this.session.publishAcked(topic, payload, timeoutMs),
      jobTopic: (id) => this.topics.job(this.host, id),
      jobFinished: (s) => this.jobFinished(s),
      requestRestart: () => this.emit("restart-requested"),
    });
    if (!state.state.hold && config.hold) state.update((s) => (s.hold = { held: true, reason: "held in configuration", since: startedAt }));
  }

  async start(): Promise<void> {
    if (!this.ctx.checkout.exists()) await this.initialClone();
    // Connect first so the resumed job's final state has a client to go out on (MQTT.js queues
    // it until connected); resumeInflight marks the host busy before any command can arrive.
    this.session.connect({
      onOnline: () => {
        this.publisher.forgetPublished();
        void this.publisher.remeasure();
        // Final job states the broker never acknowledged (cut off, or before a restart) go out again.
        this.jobTopics.deliverUnacked();
        this.jobTopics.prune();
      },
      onMessage: (topic, payload) => this.onMessage(topic, payload),
    });
    await resumeInflight(this.ctx, this.activation, {
      newReporter: (init) => this.jobTopics.newReporter(init),
      adopt: (job) => (this.jobs.current = job),
      finish: (job, end, compute, mayRestart) => this.jobs.finish(job, end, compute, mayRestart),
      jobFinished: (s) => this.jobFinished(s),
    });
    // A switch not confirmed yet when the previous process ended: its deadline still holds.
    this.jobs.watch.arm();
    // The first start after booting a generation that a switch installed but could not activate fully.
    if (!this.jobs.current) void this.bootCheck();
    this.timer = setInterval(() => void this.publisher.remeasure(), PERIODIC_REFRESH_MS);
    this.timer.unref();
    await this.publisher.remeasure();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.jobs.watch.disarm();
    // A refresh's `nix eval` runs in its own process group: it would outlive us (and its timeout).
    this.refresher.cancel();
    this.jobs.onAgentStop();
    await this.session.close();
  }

  /** Recompute compartments and info; publishes what changed. */
  remeasure(): Promise<void> {
    return this.publisher.remeasure();
  }

  private async bootCheck(): Promise<void> {
    try {
      await bootCheckOnStart(this.ctx, {
        newReporter: (init) => this.jobTopics.newReporter(init),
        adopt: (job) => (this.jobs.current = job),
        release: (job) => {
          if (this.jobs.current === job) this.jobs.current = undefined;
        },
        online: () => this.session.connected,
        jobFinished: (s) => this.jobFinished(s),
      });
    } catch (e) {
      this.log.error({ err: (e as Error).message }, "the boot check failed unexpectedly");
    }
  }

  private async initialClone(): Promise<void> {
    const { checkout, env, config } = this.ctx;
    const { args, cwd } = checkout.cloneArgs();
    mkdirSync(cwd, { recursive: true });
    this.log.info({ dir: checkout.dir }, "no checkout yet: cloning");
    const r = await runProcess(["git", ...args], { cwd, env, timeoutMs: config.timeouts.pullSeconds * 1000 }).done;
    if (r.exitCode !== 0) this.log.error({ error: describeGitFailure("clone", r) }, "initial clone failed; Git shows failed until a pull succeeds");
  }

  private onMessage(topic: string, payload: Buffer): void {
    const parsed = this.topics.parse(topic);
    if (parsed?.kind === "commands" && parsed.host === this.host) {
      this.jobs.onCommand(payload);
    } else if (parsed?.kind === "expected") {
      if (payload.length === 0) {
        this.expected = undefined;
      } else {
        const d = decodeJson(FleetExpected, payload);
        if (!d.ok) {
          this.log.warn({ topic, error: d.error }, "ignoring invalid fleet expectation");
          return;
        }
        this.expected = d.value;
        void this.fetchExpected(d.value.headCommit);
      }
      void this.publisher.remeasure();
    } else if (parsed?.kind === "hubAvailability" && payload.toString() === "online") {
      void this.publisher.remeasure();
    }
  }

  /** Fetch the fleet's head so Git can say "N commits behind"; only while idle (a fetch must not race a checkout). */
  private async fetchExpected(head: string): Promise<void> {
    if (this.fetching || this.jobs.current) return;
    this.fetching = true;
    let fetched = false;
    try {
      fetched = await fetchHead(this.ctx, head);
    } finally {
      this.fetching = false;
    }
    if (fetched) await this.publisher.remeasure();
  }

  private jobFinished(state: JobState): void {
    this.log.info({ job: state.id, op: state.op, state: state.state, summary: state.summary }, "job finished");
    this.emit("job-finished", state);
  }
}
