/**
 * lockstep-agent: one per host. Connects to the broker, publishes availability, info and the
 * five compartments (retained), and runs allow-listed commands as jobs, one at a time.
 *
 *   const agent = new Agent(config, logger);
 *   await agent.start();   // connects, resumes an in-flight job, publishes state
 *   await agent.stop();    // publishes offline, disconnects
 *   agent.on("restart-requested", ...)  // the `restart` command: the CLI exits for the supervisor
 */
import { spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readSync, rmSync, statSync, writeFileSync, readFileSync, accessSync, constants, realpathSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import type { Logger } from "pino";
import {
  Command,
  CommitSha,
  FleetExpected,
  ID_PATTERN,
  Topics,
  decodeJson,
  diffLocks,
  formatLockDiff,
  isEmptyDiff,
  type CommandOf,
  type CommandOp,
  type Compartment,
  type CompartmentName,
  type HostInfo,
  type JobState,
} from "../protocol/index.js";
import { selfCheckPathOf, statePaths, type AgentConfig } from "./config.js";
import { selfUpdateInProgress } from "./self-update-lock.js";
import { measure } from "./facts.js";
import { GitCheckout, describeGitFailure, gitSshCommand } from "./git.js";
import { InstalledAgentProbe, installedDiffers, type InstalledAgent } from "./installed.js";
import { PublishedJobsStore } from "./job-history.js";
import { JobReporter } from "./jobs.js";
import { evalArgv, profilePathOf, rollbackSteps, switchSteps, updateInputsArgv, type Step } from "./os-profiles.js";
import { runProcess, meaningfulErrorLine, killGroup, processAlive, LineSplitter, type RunOptions, type RunResult } from "./process.js";
import { listGenerations, readProfile } from "./profile.js";
import { InflightStore, StateStore, type InflightJob } from "./state.js";
import { RunnerResult, type RunnerLogLine, type RunnerPlan } from "./switch-runner.js";
import { AGENT_VERSION } from "./version.js";

/**
 * Exit code the CLI uses after a `restart` command and after a switch or rollback that installed
 * another agent, so systemd's Restart=on-failure (or launchd's KeepAlive) starts the installed one.
 */
export const RESTART_EXIT_CODE = 75;

/** Ops that may run while another job is busy (they do not touch the system). */
const CONCURRENT_OPS: ReadonlySet<CommandOp> = new Set(["stop", "refresh", "hold", "release"]);
/** Ops refused while the host is on hold: they would change what the host runs. */
const HELD_OPS: ReadonlySet<CommandOp> = new Set(["pull", "switch", "update-inputs"]);
const TOUCHES: Record<CommandOp, CompartmentName[]> = {
  refresh: [],
  pull: ["git", "lock"],
  switch: ["system"],
  test: ["tests"],
  rollback: ["system"],
  stop: [],
  restart: ["agent"],
  "update-inputs": ["lock"],
  hold: [],
  release: [],
};
const PERIODIC_REFRESH_MS = 60_000;
/** Runner logs and results of this many recent activations stay in stateDir/jobs for post-mortems. */
const JOB_FILES_KEPT = 20;
const RUNNER_POLL_MS = 200;
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 30_000;

export interface AgentOptions {
  version?: string;
  /** Path of the compiled switch-runner.js (default: next to this file). */
  runnerPath?: string;
}

/** What one exclusive job returns when it ends without being cancelled. */
interface Outcome {
  state: "succeeded" | "failed";
  summary: string;
  error?: string;
  exitCode?: number;
  generationBefore?: number;
  generationAfter?: number;
  commit?: string;
}

interface RunningJob {
  id: string;
  op: CommandOp | string;
  reporter: JobReporter;
  touches: Set<CompartmentName>;
  cancelled: boolean;
  cancel: () => void;
  finished: Promise<void>;
}

class Rejection extends Error {}

export interface AgentEvents {
  "restart-requested": [];
  "job-finished": [JobState];
}

export class Agent extends EventEmitter<AgentEvents> {
  readonly topics: Topics;
  readonly host: string;
  private client: MqttClient | undefined;
  private readonly state: StateStore;
  private readonly inflight: InflightStore;
  private readonly checkout: GitCheckout;
  private readonly env: NodeJS.ProcessEnv;
  private readonly paths: ReturnType<typeof statePaths>;
  private readonly version: string;
  private readonly runnerPath: string;
  private readonly startedAt = new Date().toISOString();
  private expected: FleetExpected | undefined;
  private current: RunningJob | undefined;
  private lastPublished = new Map<string, string>();
  private measuring: Promise<void> = Promise.resolve();
  private remeasureQueued = false;
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  private fetching = false;
  /** The `nix eval` of a refresh, while it runs. */
  private refreshEvaluation?: ReturnType<typeof runProcess>;
  private gitQueue: Promise<void> = Promise.resolve();
  private info: Partial<HostInfo> = {};
  private readonly selfCheck: InstalledAgentProbe | undefined;
  /** Where this agent's code lives (a Nix store path in a packaged agent). */
  private readonly runningDir: string;
  private lastSelfCheckError: string | undefined;
  private readonly publishedJobs: PublishedJobsStore;
  /** Job topics whose clear is on its way to the broker. */
  private readonly clearing = new Set<string>();

  constructor(
    readonly config: AgentConfig,
    private readonly log: Logger,
    opts: AgentOptions = {},
  ) {
    super();
    this.host = config.host;
    this.topics = new Topics(config.topicPrefix, config.haDiscoveryPrefix);
    this.paths = statePaths(config.stateDir);
    mkdirSync(this.paths.jobsDir, { recursive: true });
    this.state = new StateStore(this.paths.state, (why) => log.error({ file: this.paths.state, why }, "state file was unreadable; moved aside, starting fresh"));
    this.inflight = new InflightStore(this.paths.inflight, (why) => log.error({ why }, "in-flight job file was unreadable; moved aside"));
    this.version = opts.version ?? AGENT_VERSION;
    this.runnerPath = opts.runnerPath ?? join(__dirname, "switch-runner.js");
    this.env = this.childEnv();
    const selfCheckPath = selfCheckPathOf(config);
    this.selfCheck = selfCheckPath ? new InstalledAgentProbe(selfCheckPath, config.selfCheck.timeoutSeconds * 1000, this.env) : undefined;
    this.runningDir = safeRealpath(__dirname);
    this.publishedJobs = new PublishedJobsStore(this.paths.publishedJobs, (why) => log.error({ why }, "published-jobs file was unreadable; moved aside"));
    this.checkout = new GitCheckout({
      dir: config.repo.checkoutDir,
      url: config.repo.url,
      branch: config.repo.branch,
      env: this.env,
      timeoutMs: config.timeouts.pullSeconds * 1000,
    });
    if (!this.state.state.hold && config.hold) this.state.update((s) => (s.hold = { held: true, reason: "held in configuration", since: this.startedAt }));
  }

  /** Environment for git, nix and test scripts: ours + config.env + git identity + ssh key. */
  private childEnv(): NodeJS.ProcessEnv {
    const c = this.config;
    const name = c.git.authorName ?? "Lockstep agent";
    const email = c.git.authorEmail ?? `lockstep@${c.host}`;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      GIT_AUTHOR_NAME: name,
      GIT_AUTHOR_EMAIL: email,
      GIT_COMMITTER_NAME: name,
      GIT_COMMITTER_EMAIL: email,
      GIT_TERMINAL_PROMPT: "0",
      // Nix and test scripts read the checkout while a job may write it: reads take no index lock.
      GIT_OPTIONAL_LOCKS: "0",
      ...c.env,
    };
    if (c.repo.sshKeyFile) env.GIT_SSH_COMMAND = gitSshCommand(c.repo.sshKeyFile);
    return env;
  }

  // -------------------------------------------------------------------------------------------
  // lifecycle

  async start(): Promise<void> {
    if (!this.checkout.exists()) await this.initialClone();
    // Connect first so the resumed job's final state has a client to go out on (MQTT.js queues
    // it until connected); resumeInflight marks the host busy before any command can arrive.
    this.connect();
    await this.resumeInflight();
    this.timer = setInterval(() => this.remeasure(), PERIODIC_REFRESH_MS);
    this.timer.unref();
    await this.remeasure();
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    // A refresh's `nix eval` runs in its own process group: it would outlive us (and its timeout).
    this.refreshEvaluation?.cancel();
    const job = this.current;
    // A job in the detached runner keeps going; the next start reports it. Others end here.
    if (job && !job.op.match(/^(switch|rollback|restart)$/)) {
      job.cancelled = true;
      job.cancel();
      job.reporter.set("interrupted", { summary: "agent stopped while the job ran" });
      this.inflight.clear();
    }
    job?.reporter.flush();
    const client = this.client;
    if (!client) return;
    await new Promise<void>((resolve) => {
      client.publish(this.topics.availability(this.host), "offline", { qos: 1, retain: true }, () => resolve());
      setTimeout(resolve, 2000).unref();
    });
    await new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
  }

  private async initialClone(): Promise<void> {
    const { args, cwd } = this.checkout.cloneArgs();
    mkdirSync(cwd, { recursive: true });
    this.log.info({ dir: this.checkout.dir }, "no checkout yet: cloning");
    const r = await runProcess(["git", ...args], { cwd, env: this.env, timeoutMs: this.config.timeouts.pullSeconds * 1000 }).done;
    if (r.exitCode !== 0) this.log.error({ error: describeGitFailure("clone", r) }, "initial clone failed; Git shows failed until a pull succeeds");
  }

  // -------------------------------------------------------------------------------------------
  // MQTT

  private connect(): void {
    const c = this.config;
    const client = mqtt.connect(c.broker.url, {
      clientId: c.broker.clientId ?? `lockstep-agent-${c.host}`,
      clean: false,
      username: c.broker.username ?? c.host,
      ...(c.brokerPassword !== undefined ? { password: c.brokerPassword } : {}),
      keepalive: c.broker.keepaliveSeconds,
      protocolVersion: 4,
      reconnectPeriod: RECONNECT_MIN_MS,
      connectTimeout: 10_000,
      will: { topic: this.topics.availability(c.host), payload: Buffer.from("offline"), qos: 1, retain: true },
      ...(c.broker.caFile ? { ca: readFileSync(c.broker.caFile) } : {}),
    });
    this.client = client;
    client.on("connect", (connack) => {
      client.options.reconnectPeriod = RECONNECT_MIN_MS;
      this.log.info({ url: c.broker.url, sessionPresent: connack.sessionPresent }, "connected to broker");
      client.subscribe(
        [
          { topic: this.topics.commands(c.host), qos: 1 },
          { topic: this.topics.expected(), qos: 1 },
          { topic: this.topics.hubAvailability(), qos: 0 },
          // Our own availability: a previous connection's "offline" (its will after a session
          // takeover, or a slow clean stop) can land after our "online"; we answer it below.
          { topic: this.topics.availability(c.host), qos: 1 },
        ].reduce<Record<string, { qos: 0 | 1 }>>((acc, s) => ((acc[s.topic] = { qos: s.qos as 0 | 1 }), acc), {}),
        (err, granted) => {
          if (err) this.log.error({ err: err.message }, "subscribe failed");
          for (const g of granted ?? []) if (g.qos === 128) this.log.error({ topic: g.topic }, "broker refused subscription (check the ACL for this host)");
        },
      );
      this.publishOnline();
    });
    client.on("close", () => {
      // Back off: 0.5 s, 1 s, 2 s … 30 s between attempts while the broker is away.
      client.options.reconnectPeriod = Math.min(RECONNECT_MAX_MS, (client.options.reconnectPeriod ?? RECONNECT_MIN_MS) * 2);
    });
    client.on("error", (err) => this.log.warn({ err: err.message }, "mqtt error"));
    client.on("message", (topic, payload) => this.onMessage(topic, payload));
  }

  private publish(topic: string, payload: string, opts: { qos: 0 | 1; retain: boolean }): void {
    this.client?.publish(topic, payload, opts, (err) => {
      if (err && !this.stopping) this.log.warn({ topic, err: err.message }, "publish failed");
    });
  }

  private publishOnline(): void {
    this.lastPublished.clear();
    this.publish(this.topics.availability(this.host), "online", { qos: 1, retain: true });
    void this.remeasure();
    this.pruneJobTopics();
  }

  private onMessage(topic: string, payload: Buffer): void {
    this.log.debug({ topic, bytes: payload.length }, "message");
    const parsed = this.topics.parse(topic);
    if (parsed?.kind === "commands" && parsed.host === this.host) {
      this.onCommand(payload);
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
      void this.remeasure();
    } else if (parsed?.kind === "hubAvailability" && payload.toString() === "online") {
      void this.remeasure();
    } else if (parsed?.kind === "availability" && parsed.host === this.host && payload.toString() === "offline" && !this.stopping && this.client?.connected) {
      this.log.info("our availability reads offline while we are connected (an earlier connection's last word): publishing online again");
      this.publish(this.topics.availability(this.host), "online", { qos: 1, retain: true });
    }
  }

  /**
   * Fetch when the fleet's head is not in the checkout yet, so Git can say "N commits behind".
   * Only while idle: a running pull fetches anyway, and a fetch must not race a checkout.
   */
  private async fetchExpected(head: string): Promise<void> {
    if (this.fetching || this.current || !this.checkout.exists() || (await this.checkout.hasCommit(head))) return;
    this.fetching = true;
    try {
      const r = await this.withGit(() => this.checkout.run(this.checkout.fetchArgs()).done);
      if (r.exitCode !== 0) this.log.warn({ error: describeGitFailure("fetch", r) }, "fetching the fleet head failed");
    } finally {
      this.fetching = false;
    }
    await this.remeasure();
  }

  // -------------------------------------------------------------------------------------------
  // state publication

  /** Recompute compartments and info; publishes what changed. Serialised, coalesced. */
  remeasure(): Promise<void> {
    if (this.remeasureQueued) return this.measuring;
    this.remeasureQueued = true;
    this.measuring = this.measuring.then(async () => {
      this.remeasureQueued = false;
      try {
        await this.measureAndPublish();
      } catch (e) {
        this.log.error({ err: (e as Error).message }, "measuring the host failed");
      }
    });
    return this.measuring;
  }

  private async measureAndPublish(): Promise<void> {
    const installed = await this.readInstalled();
    const m = await measure({
      checkout: this.checkout,
      profile: profilePathOf(this.config),
      state: this.state.state,
      ...(this.expected ? { expected: this.expected } : {}),
      version: this.version,
      ...(installed?.version ? { onDiskVersion: installed.version } : {}),
      working: this.current?.touches ?? new Set(),
    });
    for (const [name, comp] of Object.entries(m.compartments) as Array<[CompartmentName, Compartment]>) {
      this.publishIfChanged(this.topics.compartment(this.host, name), comp, (v) => ({ ...v, checkedAt: "" }));
    }
    const c = this.config;
    const hold = this.state.state.hold;
    const info: HostInfo = {
      host: c.host,
      hostname: hostname(),
      os: c.os.kind,
      agentVersion: this.version,
      repo: redactUrl(c.repo.url),
      branch: c.repo.branch,
      ...(m.head ? { commit: m.head } : {}),
      ...(m.lockHash ? { lockHash: m.lockHash } : {}),
      ...(m.generation !== undefined ? { generation: m.generation } : {}),
      ...(m.systemPath ? { systemPath: m.systemPath } : {}),
      tags: c.tags,
      ...(c.location ? { location: c.location } : {}),
      priority: c.priority,
      canary: c.canary,
      hold: hold?.held ?? false,
      ...(hold?.held && hold.reason ? { holdReason: hold.reason } : {}),
      ...(c.maintenanceWindow ? { maintenanceWindow: c.maintenanceWindow } : {}),
      startedAt: this.startedAt,
      updatedAt: new Date().toISOString(),
    };
    this.info = info;
    this.publishIfChanged(this.topics.info(this.host), info, (v) => ({ ...v, updatedAt: "" }));
  }

  private publishIfChanged<T>(topic: string, value: T, normalise: (v: T) => unknown): void {
    const key = JSON.stringify(normalise(value));
    if (this.lastPublished.get(topic) === key) return;
    this.lastPublished.set(topic, key);
    this.publish(topic, JSON.stringify(value), { qos: 1, retain: true });
  }

  // -------------------------------------------------------------------------------------------
  // commands

  private newReporter(init: Omit<JobState, "host" | "summary" | "acceptedAt" | "state"> & { acceptedAt?: string }): JobReporter {
    const { acceptedAt, ...rest } = init;
    const stateTopic = this.topics.job(this.host, init.id);
    const reporter: JobReporter = new JobReporter(
      (t, p, o) => {
        this.publish(t, p, o);
        if (t === stateTopic && reporter.terminal) this.jobTopicFinal(init.id);
      },
      stateTopic,
      this.topics.jobOutput(this.host, init.id),
      { ...rest, host: this.host, state: "accepted", summary: "accepted", acceptedAt: acceptedAt ?? new Date().toISOString() },
    );
    return reporter;
  }

  // -------------------------------------------------------------------------------------------
  // retained job topics

  /** A job's retained state is final: remember it, and clear what is beyond the newest keepJobs. */
  private jobTopicFinal(id: string): void {
    try {
      this.publishedJobs.add(id);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, "could not record a published job");
    }
    this.pruneJobTopics();
  }

  /** Clear old retained jobs/<id> topics (empty retained payload); never the running job. */
  private pruneJobTopics(): void {
    const client = this.client;
    if (!client) return;
    const running = new Set(this.current ? [this.current.id] : []);
    for (const id of this.publishedJobs.excess(this.config.keepJobs, running)) {
      if (this.clearing.has(id)) continue;
      this.clearing.add(id);
      client.publish(this.topics.job(this.host, id), "", { qos: 1, retain: true }, (err) => {
        this.clearing.delete(id);
        if (err) {
          if (!this.stopping) this.log.warn({ job: id, err: err.message }, "clearing an old job topic failed; trying again later");
          return;
        }
        this.log.debug({ job: id }, "cleared an old retained job");
        try {
          this.publishedJobs.remove(id);
        } catch (e) {
          this.log.warn({ err: (e as Error).message }, "could not record a cleared job");
        }
      });
    }
  }

  // -------------------------------------------------------------------------------------------
  // the installed agent

  /** The installed agent (selfCheck), or undefined without one; a failure is logged when it changes. */
  private async readInstalled(): Promise<InstalledAgent | undefined> {
    if (!this.selfCheck) return undefined;
    const installed = await this.selfCheck.read();
    if (installed.error !== this.lastSelfCheckError) {
      if (installed.error) this.log.warn({ error: installed.error }, "cannot tell the installed agent's version");
      this.lastSelfCheckError = installed.error;
    }
    return installed;
  }

  /** After a successful switch or rollback: why the agent should restart now, if it should. */
  private async restartReason(): Promise<string | undefined> {
    const mode = this.config.restartAfterSwitch;
    if (mode === "never") return undefined;
    const installed = await this.readInstalled();
    const differs = installed ? installedDiffers(installed, { version: this.version, dir: this.runningDir }) : undefined;
    if (differs) return differs;
    return mode === "always" ? "restartAfterSwitch is always" : undefined;
  }

  /**
   * The switch's final state is out; now exit for the supervisor to start the installed agent.
   * The host stays busy until the process is gone. The in-flight record is kept until the broker
   * acknowledged the final state: otherwise the next agent reports it again from the runner's result.
   */
  private async restartAfterActivation(job: RunningJob, why: string): Promise<void> {
    this.current = { id: job.id, op: "restart", reporter: job.reporter, touches: new Set(), cancelled: false, cancel: () => undefined, finished: new Promise(() => undefined) };
    this.jobFinished(job.reporter.state);
    // Publishes the Agent compartment "running X but Y is installed: restart the agent" on the way out.
    await this.remeasure();
    this.log.info({ why }, "exiting so the supervisor starts the installed agent");
    const acked = await this.publishAcked(this.topics.job(this.host, job.id), JSON.stringify(job.reporter.state), 5000);
    if (acked) this.inflight.clear();
    else this.log.warn({ job: job.id }, "the broker did not confirm the job's final state; the restarted agent reports it again");
    this.emit("restart-requested");
  }

  /** Publish retained at QoS 1; true once the broker acknowledged it within timeoutMs. */
  private publishAcked(topic: string, payload: string, timeoutMs: number): Promise<boolean> {
    const client = this.client;
    if (!client) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      t.unref();
      client.publish(topic, payload, { qos: 1, retain: true }, (err) => {
        clearTimeout(t);
        resolve(!err);
      });
    });
  }

  private onCommand(payload: Buffer): void {
    const decoded = decodeJson(Command, payload);
    if (!decoded.ok) {
      const { id, op } = readLooseIdentity(payload);
      if (!id) {
        this.log.warn({ error: decoded.error }, "ignoring a command without a usable id");
        return;
      }
      if (this.state.hasSeen(id)) return;
      this.state.markSeen(id);
      this.log.warn({ id, error: decoded.error }, "rejected malformed command");
      this.newReporter({ id, op: op ?? "unknown" }).set("rejected", { summary: "malformed command", error: decoded.error });
      return;
    }
    const cmd = decoded.value;
    if (this.state.hasSeen(cmd.id)) {
      this.log.info({ id: cmd.id, op: cmd.op }, "command id seen before: not running it again");
      return;
    }
    this.state.markSeen(cmd.id);
    const reporter = this.newReporter({
      id: cmd.id,
      op: cmd.op,
      requestedBy: cmd.requestedBy,
      ...(cmd.rolloutId ? { rolloutId: cmd.rolloutId } : {}),
      ...(cmd.op === "pull" || (cmd.op === "switch" && cmd.args.commit) ? { commit: cmd.args.commit } : {}),
    });
    const log = this.log.child({ job: cmd.id, op: cmd.op });
    const reject = (why: string) => {
      log.info({ why }, "command rejected");
      reporter.set("rejected", { summary: why, error: why });
    };
    if (Date.parse(cmd.expiresAt) <= Date.now()) return reject(`expired at ${cmd.expiresAt}: not run`);
    if (this.stopping) return reject("agent is stopping: send the command again once it is back online");
    if (!CONCURRENT_OPS.has(cmd.op) && this.current) return reject(`busy with ${this.current.op} ${this.current.id}`);
    const selfUpdate = CONCURRENT_OPS.has(cmd.op) || cmd.op === "restart" ? undefined : this.selfUpdateBusy();
    if (selfUpdate) return reject(selfUpdate);
    const hold = this.state.state.hold;
    if (hold?.held && HELD_OPS.has(cmd.op)) return reject(`host is on hold${hold.reason ? ` (${hold.reason})` : ""}: send release first`);
    log.info("command accepted");
    reporter.set("accepted");
    // A refresh's evaluation only fills a cache: it must not hold up a job that changes the checkout.
    if (!CONCURRENT_OPS.has(cmd.op)) this.refreshEvaluation?.cancel();
    switch (cmd.op) {
      case "refresh":
        return void this.quickJob(reporter, () => this.opRefresh());
      case "hold":
        return void this.quickJob(reporter, async () => this.opHold(cmd));
      case "release":
        return void this.quickJob(reporter, async () => this.opRelease());
      case "stop":
        return void this.quickJob(reporter, () => this.opStop());
      case "restart":
        return this.opRestart(cmd, reporter);
      default:
        return void this.exclusiveJob(cmd, reporter);
    }
  }

  private jobFinished(state: JobState): void {
    this.log.info({ job: state.id, op: state.op, state: state.state, summary: state.summary }, "job finished");
    this.emit("job-finished", state);
  }

  /** Git operations that fetch or move the checkout run one at a time (ref locks, index lock). */
  private withGit<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.gitQueue.then(fn, fn);
    this.gitQueue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** A job that runs alongside others and touches nothing on the system. */
  private async quickJob(reporter: JobReporter, body: () => Promise<string>): Promise<void> {
    reporter.set("running");
    try {
      reporter.set("succeeded", { summary: await body(), exitCode: 0 });
    } catch (e) {
      reporter.set(e instanceof Rejection ? "rejected" : "failed", { summary: (e as Error).message, error: (e as Error).message });
    }
    this.jobFinished(reporter.state);
  }

  /**
   * Fetch, evaluate what the checkout builds to (exact System check), re-measure. While another
   * job runs, only re-measures: a fetch or evaluation must not race a checkout.
   */
  private async opRefresh(): Promise<string> {
    const notes: string[] = [];
    if (!this.current && this.checkout.exists()) {
      const r = await this.withGit(() => this.checkout.run(this.checkout.fetchArgs()).done);
      if (r.exitCode !== 0) notes.push(describeGitFailure("fetch", r));
      // In the git queue too: a pull arriving meanwhile must not move the tree under the evaluation
      // (the result would be recorded for a commit it was not computed from). The evaluation is
      // only a cache, so a job that arrives cancels it instead of waiting (see onCommand).
      await this.withGit(async () => {
        const head = await this.checkout.head();
        if (!head || this.state.state.evaluated?.commit === head || this.current) return;
        const r = await this.evaluate();
        if (r.path) this.state.update((s) => (s.evaluated = { commit: head, path: r.path! }));
        else notes.push(r.cancelled ? "evaluation stopped: a job started" : "could not evaluate the checked-out configuration (see the agent log)");
      });
    }
    await this.remeasure();
    return notes.length ? `refreshed; ${notes.join("; ")}` : "refreshed";
  }

  /** What the checkout builds to (`nix eval`); cancelled when a job arrives meanwhile. */
  private async evaluate(): Promise<{ path?: string; cancelled: boolean }> {
    let out = "";
    const p = runProcess(evalArgv(this.config), {
      cwd: this.checkout.dir,
      env: this.env,
      timeoutMs: this.config.timeouts.switchSeconds * 1000,
      onLine: (stream, text) => {
        if (stream === "stdout") out += text;
      },
    });
    this.refreshEvaluation = p;
    const r = await p.done.finally(() => (this.refreshEvaluation = undefined));
    const path = out.trim();
    if (r.exitCode === 0 && path.startsWith("/")) return { path, cancelled: false };
    if (!r.cancelled) this.log.warn({ exitCode: r.exitCode, error: meaningfulErrorLine(r.tail) }, "evaluating the checked-out configuration failed");
    return { cancelled: r.cancelled };
  }

  private opHold(cmd: CommandOf<"hold">): string {
    this.state.update((s) => (s.hold = { held: true, since: new Date().toISOString(), ...(cmd.args.reason ? { reason: cmd.args.reason } : {}) }));
    void this.remeasure();
    return cmd.args.reason ? `held: ${cmd.args.reason}` : "held";
  }

  private opRelease(): string {
    this.state.update((s) => delete s.hold);
    void this.remeasure();
    return "released";
  }

  private async opStop(): Promise<string> {
    const job = this.current;
    if (!job) return "nothing to stop";
    job.cancelled = true;
    job.cancel();
    await Promise.race([job.finished, new Promise((r) => setTimeout(r, 15_000).unref())]);
    return `cancelled ${job.op} ${job.id}`;
  }

  private opRestart(cmd: CommandOf<"restart">, reporter: JobReporter): void {
    const now = new Date().toISOString();
    this.inflight.write({ id: cmd.id, op: "restart", acceptedAt: reporter.state.acceptedAt, startedAt: now, requestedBy: cmd.requestedBy, agentPid: process.pid });
    // The host is busy until the process exits: no other job may start in between.
    this.current = { id: cmd.id, op: "restart", reporter, touches: new Set(["agent"]), cancelled: false, cancel: () => undefined, finished: new Promise(() => undefined) };
    reporter.set("running", { summary: "restarting the agent" });
    this.log.info("restart requested: exiting for the supervisor to start the agent again");
    let requested = false;
    const exit = () => {
      if (requested) return;
      requested = true;
      this.emit("restart-requested");
    };
    // Let the running state reach the broker before exiting (but do not wait forever for it).
    this.client?.publish(this.topics.job(this.host, cmd.id), JSON.stringify(reporter.state), { qos: 1, retain: true }, exit);
    setTimeout(exit, 5000).unref();
  }

  /** Why a job must wait for a running `lockstep-agent self-update`, if one runs. */
  private selfUpdateBusy(): string | undefined {
    const run = selfUpdateInProgress(this.paths.selfUpdateLock);
    return run ? `busy with a self-update run${run.pid ? ` (pid ${run.pid})` : ""}: send the command again when it has finished` : undefined;
  }

  /** Run a job that needs the host to itself; persists it as in-flight while it runs. */
  private async exclusiveJob(cmd: Command, reporter: JobReporter): Promise<void> {
    let endJob!: () => void;
    const job: RunningJob = {
      id: cmd.id,
      op: cmd.op,
      reporter,
      touches: new Set(TOUCHES[cmd.op]),
      cancelled: false,
      cancel: () => undefined,
      finished: new Promise<void>((r) => (endJob = r)),
    };
    this.current = job;
    try {
      await this.precheck(cmd);
    } catch (e) {
      this.current = undefined;
      endJob();
      reporter.set(e instanceof Rejection ? "rejected" : "failed", { summary: (e as Error).message, error: (e as Error).message });
      this.jobFinished(reporter.state);
      return;
    }
    const startedAt = new Date().toISOString();
    const record: InflightJob = {
      id: cmd.id,
      op: cmd.op,
      acceptedAt: reporter.state.acceptedAt,
      startedAt,
      requestedBy: cmd.requestedBy,
      ...(cmd.rolloutId ? { rolloutId: cmd.rolloutId } : {}),
      agentPid: process.pid,
    };
    this.inflight.write(record);
    // A self-update takes its lock and then looks for our in-flight record; we write that record and
    // then look for its lock. Whichever comes second sees the other: the two never both run.
    const selfUpdate = this.selfUpdateBusy();
    if (selfUpdate) {
      this.inflight.clear();
      this.current = undefined;
      endJob();
      reporter.set("rejected", { summary: selfUpdate, error: selfUpdate });
      this.jobFinished(reporter.state);
      return;
    }
    reporter.set("running", { summary: `${cmd.op} running`, startedAt });
    void this.remeasure();
    let outcome: Outcome | undefined;
    let failure: { state: "failed" | "rejected"; message: string } | undefined;
    try {
      switch (cmd.op) {
        case "pull":
          outcome = await this.withGit(() => this.opPull(cmd, job));
          break;
        case "switch":
          outcome = await this.opSwitch(job, record);
          break;
        case "rollback":
          outcome = await this.opRollback(cmd, job, record);
          break;
        case "test":
          outcome = await this.opTest(job);
          break;
        case "update-inputs":
          outcome = await this.withGit(() => this.opUpdateInputs(cmd, job));
          break;
        default:
          failure = { state: "rejected", message: `op ${cmd.op} cannot run as a job` };
      }
    } catch (e) {
      failure = { state: e instanceof Rejection ? "rejected" : "failed", message: (e as Error).message };
      if (e instanceof InterruptedJob && !job.cancelled) {
        // Only reachable if the runner died without a result (it was killed from outside).
        failure = undefined;
        reporter.set("interrupted", { summary: e.message, ...e.generations });
      }
    }
    if (this.stopping) return; // stop() already reported it (or the runner's result will be read on start)
    // A switch or rollback may have installed another agent: say so, and restart into it below.
    let restartWhy: string | undefined;
    if (!job.cancelled && !failure && outcome?.state === "succeeded" && (cmd.op === "switch" || cmd.op === "rollback")) {
      restartWhy = await this.restartReason();
      if (restartWhy) outcome = { ...outcome, summary: `${outcome.summary}; restarting the agent (${restartWhy})` };
    }
    if (this.stopping) return;
    if (job.cancelled) reporter.set("cancelled", { summary: `${cmd.op} cancelled by stop` });
    else if (failure) reporter.set(failure.state, { summary: failure.message, error: failure.message });
    else if (outcome) {
      const { state, ...rest } = outcome;
      reporter.set(state, rest);
    }
    if (restartWhy && !job.cancelled) {
      endJob();
      return this.restartAfterActivation(job, restartWhy);
    }
    this.inflight.clear();
    this.current = undefined;
    endJob();
    await this.remeasure();
    this.jobFinished(reporter.state);
  }

  /** Run one process as part of a job: output goes to the job, `stop` cancels it. */
  private async step(job: RunningJob, argv: string[], opts: Omit<RunOptions, "onLine"> = {}): Promise<RunResult> {
    if (job.cancelled) return { exitCode: null, signal: null, timedOut: false, cancelled: true, tail: [] };
    job.reporter.line("info", `$ ${argv.join(" ")}`);
    const p = runProcess(argv, { env: this.env, ...opts, onLine: (s, t) => job.reporter.line(s, t) });
    job.cancel = () => p.cancel();
    const r = await p.done;
    if (r.spawnError) job.reporter.line("stderr", r.spawnError);
    return r;
  }

  private async opPull(cmd: CommandOf<"pull">, job: RunningJob): Promise<Outcome> {
    const commit = cmd.args.commit;
    const timeoutMs = this.config.timeouts.pullSeconds * 1000;
    if (!this.checkout.exists()) {
      const { args, cwd } = this.checkout.cloneArgs();
      mkdirSync(cwd, { recursive: true });
      const r = await this.step(job, ["git", ...args], { cwd, timeoutMs });
      if (r.exitCode !== 0) return fail(describeGitFailure("clone", r), r);
    }
    const before = await this.checkout.head();
    const fetch = await this.step(job, ["git", ...this.checkout.fetchArgs()], { cwd: this.checkout.dir, timeoutMs });
    if (fetch.exitCode !== 0) return fail(describeGitFailure("fetch", fetch), fetch);
    if (!(await this.checkout.hasCommit(commit))) return fail(`commit ${short(commit)} is not on branch ${this.config.repo.branch}: origin/${this.config.repo.branch} does not contain it`);
    if (!(await this.checkout.onBranch(commit))) return fail(`commit ${short(commit)} is not on branch ${this.config.repo.branch}: refusing to check it out`);
    // Older than a whole pull may take: no git of ours holds it (pulls run one at a time).
    const staleLockAge = this.checkout.clearStaleIndexLock(timeoutMs);
    if (staleLockAge !== undefined) job.reporter.line("info", `removed a stale .git/index.lock (${Math.round(staleLockAge / 60_000)} min old, left by a git that was killed)`);
    const co = await this.step(job, ["git", ...this.checkout.checkoutArgs(commit)], { cwd: this.checkout.dir, timeoutMs });
    if (co.exitCode !== 0) return fail(describeGitFailure("checkout", co), co);
    const summary = before === commit ? `already at ${short(commit)}` : `checked out ${short(commit)} (was ${before ? short(before) : "nothing"})`;
    return { state: "succeeded", summary, exitCode: 0, commit };
  }

  private async opTest(job: RunningJob): Promise<Outcome> {
    const profile = readProfile(profilePathOf(this.config));
    const base = join(this.checkout.dir, this.config.testsDir);
    const scripts: Array<{ name: string; path: string }> = [];
    for (const dir of ["common", this.host]) {
      let entries: string[] = [];
      try {
        entries = readdirSync(join(base, dir)).sort();
      } catch {
        continue;
      }
      for (const e of entries) {
        const path = join(base, dir, e);
        if (isExecutableFile(path)) scripts.push({ name: `${dir}/${e}`, path });
      }
    }
    const failed: string[] = [];
    const output: string[] = [];
    for (const s of scripts) {
      const r = await this.step(job, [s.path], {
        cwd: this.checkout.dir,
        timeoutMs: this.config.timeouts.testSeconds * 1000,
        env: {
          ...this.env,
          LOCKSTEP_HOST: this.host,
          LOCKSTEP_SYSTEM: profile.path ?? "",
          ...(profile.generation !== undefined ? { LOCKSTEP_GENERATION: String(profile.generation) } : {}),
        },
      });
      if (job.cancelled) break;
      const ok = r.exitCode === 0;
      job.reporter.line("info", `${s.name}: ${ok ? "passed" : r.timedOut ? "timed out" : `failed (exit ${r.exitCode ?? r.signal})`}`);
      if (!ok) {
        failed.push(s.name);
        output.push(`${s.name}: ${meaningfulErrorLine(r.tail) ?? (r.timedOut ? "timed out" : `exit ${r.exitCode}`)}`);
      }
    }
    if (job.cancelled) return { state: "failed", summary: "cancelled" };
    const passed = failed.length === 0;
    this.state.update((s) => {
      s.lastTest = {
        ...(profile.generation !== undefined ? { generation: profile.generation } : {}),
        passed,
        failed,
        total: scripts.length,
        at: new Date().toISOString(),
        ...(output.length ? { output: output.join("\n") } : {}),
      };
    });
    const gen = profile.generation !== undefined ? ` on generation ${profile.generation}` : "";
    if (passed) return { state: "succeeded", summary: `${scripts.length}/${scripts.length} passed${gen}`, exitCode: 0 };
    return { state: "failed", summary: `${failed.length}/${scripts.length} failed${gen}: ${output.join("; ")}`.slice(0, 1000), exitCode: 1, error: output.join("\n") };
  }

  private async opUpdateInputs(cmd: CommandOf<"update-inputs">, job: RunningJob): Promise<Outcome> {
    const dir = this.checkout.dir;
    const lockFile = join(dir, "flake.lock");
    const before = existsSync(lockFile) ? readFileSync(lockFile, "utf8") : "";
    const timeoutMs = this.config.timeouts.updateInputsSeconds * 1000;
    const upd = await this.step(job, updateInputsArgv(cmd.args.inputs), { cwd: dir, timeoutMs });
    if (upd.exitCode !== 0) return fail(`nix flake update failed: ${meaningfulErrorLine(upd.tail) ?? `exit ${upd.exitCode}`}`, upd);
    const after = existsSync(lockFile) ? readFileSync(lockFile, "utf8") : "";
    if (after === before) return { state: "succeeded", summary: "inputs already current: flake.lock unchanged", exitCode: 0 };
    const diff = before ? diffLocks(before, after) : undefined;
    const diffText = diff && !isEmptyDiff(diff) ? formatLockDiff(diff, { separator: "\n" }) : "flake.lock rewritten";
    const commit = await this.step(job, ["git", "commit", "-q", "-m", "flake.lock: Update", "-m", diffText, "--", "flake.lock"], { cwd: dir, timeoutMs });
    if (commit.exitCode !== 0) return fail(describeGitFailure("commit", commit), commit);
    const sha = (await this.checkout.head()) ?? "";
    const oneLine = diff && !isEmptyDiff(diff) ? formatLockDiff(diff, { max: 3 }) : "flake.lock rewritten";
    if (!cmd.args.push) return { state: "succeeded", summary: `committed ${short(sha)} locally (not pushed): ${oneLine}`, exitCode: 0, ...(CommitSha.safeParse(sha).success ? { commit: sha } : {}) };
    const branch = cmd.args.branch ?? this.config.repo.branch;
    const push = await this.step(job, ["git", "push", "-q", "origin", `HEAD:refs/heads/${branch}`], { cwd: dir, timeoutMs });
    if (push.exitCode !== 0) return fail(describeGitFailure("push", push), push);
    return { state: "succeeded", summary: `pushed ${short(sha)} to ${branch}: ${oneLine}`, exitCode: 0, ...(CommitSha.safeParse(sha).success ? { commit: sha } : {}) };
  }

  // -------------------------------------------------------------------------------------------
  // activation (switch, rollback) in the detached runner

  /** Checks that turn a command into "rejected" before it starts (nothing has been touched yet). */
  private async precheck(cmd: Command): Promise<void> {
    if (cmd.op === "pull" && this.checkout.exists()) {
      // A checkout must not silently carry local edits into (or lose them to) another commit.
      const dirty = await this.checkout.dirtyFiles();
      if (dirty.length > 0) {
        const names = dirty.slice(0, 10).join(", ") + (dirty.length > 10 ? ` and ${dirty.length - 10} more` : "");
        throw new Rejection(`checkout has uncommitted changes in ${names}: commit or discard them first`);
      }
    }
    if (cmd.op === "switch") {
      const head = await this.checkout.head();
      if (!head) throw new Rejection("no checkout: pull a commit first");
      if (cmd.args.commit && cmd.args.commit !== head) throw new Rejection(`checkout is at ${short(head)}, not ${short(cmd.args.commit)}: pull it first`);
    }
    if (cmd.op === "rollback") {
      const profile = profilePathOf(this.config);
      const gens = listGenerations(profile);
      const current = readProfile(profile).generation;
      const target = cmd.args.generation;
      if (target !== undefined && !gens.some((g) => g.generation === target)) {
        throw new Rejection(`generation ${target} does not exist (have ${gens.map((g) => g.generation).join(", ") || "none"})`);
      }
      if (target !== undefined && target === current) throw new Rejection(`generation ${target} is already current`);
      if (target === undefined && !gens.some((g) => current !== undefined && g.generation < current)) {
        throw new Rejection(`no generation before ${current ?? "the current one"} to roll back to`);
      }
    }
  }

  private async opSwitch(job: RunningJob, record: InflightJob): Promise<Outcome> {
    const head = await this.checkout.head();
    if (!head) throw new Error("the checkout has no HEAD");
    return this.activate(job, { ...record, commit: head }, switchSteps(this.config));
  }

  private async opRollback(cmd: CommandOf<"rollback">, job: RunningJob, record: InflightJob): Promise<Outcome> {
    return this.activate(job, record, rollbackSteps(this.config, cmd.args.generation));
  }

  private async activate(job: RunningJob, record: InflightJob, steps: Step[]): Promise<Outcome> {
    const id = record.id;
    const files = {
      plan: join(this.paths.jobsDir, `${id}.plan.json`),
      result: join(this.paths.jobsDir, `${id}.result.json`),
      log: join(this.paths.jobsDir, `${id}.log`),
    };
    rmSync(files.result, { force: true });
    writeFileSync(files.log, "");
    const plan: RunnerPlan = { jobId: id, steps, logFile: files.log, resultFile: files.result, timeoutMs: this.config.timeouts.switchSeconds * 1000 };
    writeFileSync(files.plan, JSON.stringify(plan), { mode: 0o600 });
    const generationBefore = readProfile(profilePathOf(this.config)).generation;
    const runner = spawn(process.execPath, [this.runnerPath, files.plan], { detached: true, stdio: "ignore", env: this.env });
    const exited = new Promise<void>((r) => runner.once("exit", () => r()));
    runner.unref();
    if (runner.pid === undefined) throw new Error("could not start the switch runner");
    // Persist before anything is activated: a restarted agent must find this record.
    const inflight: InflightJob = {
      ...record,
      ...(generationBefore !== undefined ? { generationBefore } : {}),
      runnerPid: runner.pid,
      resultFile: files.result,
      logFile: files.log,
    };
    this.inflight.write(inflight);
    const runnerPid = runner.pid;
    job.cancel = () => killGroup(runnerPid, "SIGTERM");
    await this.followRunner(job, inflight, exited);
    const outcome = this.activationOutcome(inflight);
    pruneJobFiles(this.paths.jobsDir, JOB_FILES_KEPT);
    return outcome;
  }

  /** Stream the runner's log into the job until the runner ends. */
  private async followRunner(job: RunningJob, inflight: InflightJob, exited: Promise<void> | undefined, fromStart = true): Promise<void> {
    const logFile = inflight.logFile!;
    let offset = fromStart ? 0 : safeSize(logFile);
    const lines = new LineSplitter((l) => {
      try {
        const o = JSON.parse(l) as RunnerLogLine;
        job.reporter.line(o.s, o.x, o.t);
      } catch {
        // a torn line from a killed runner: skip it
      }
    });
    const drain = () => {
      const size = safeSize(logFile);
      if (size <= offset) return;
      const fd = openSync(logFile, "r");
      const buf = Buffer.alloc(size - offset);
      readSync(fd, buf, 0, buf.length, offset);
      closeSync(fd);
      offset = size;
      lines.push(buf);
    };
    let done = false;
    void exited?.then(() => (done = true));
    while (!done && !this.stopping) {
      drain();
      if (exited === undefined && !processAlive(inflight.runnerPid!)) break;
      if (existsSync(inflight.resultFile!) && exited === undefined) break;
      await new Promise((r) => setTimeout(r, RUNNER_POLL_MS));
    }
    drain();
  }

  /** The true outcome of an activation, from the runner's result or, failing that, the profile. */
  private activationOutcome(inflight: InflightJob): Outcome {
    const profile = readProfile(profilePathOf(this.config));
    const genBefore = inflight.generationBefore;
    const genAfter = profile.generation;
    const gens = { ...(genBefore !== undefined ? { generationBefore: genBefore } : {}), ...(genAfter !== undefined ? { generationAfter: genAfter } : {}) };
    // nix-env --set with the path that is already current creates no new generation: say so.
    const moved = genBefore !== undefined && genBefore === genAfter ? `generation ${genAfter} unchanged (already this system)` : `generation ${genBefore ?? "none"} -> ${genAfter ?? "none"}`;
    let result: RunnerResult | undefined;
    try {
      if (inflight.resultFile && existsSync(inflight.resultFile)) result = RunnerResult.parse(JSON.parse(readFileSync(inflight.resultFile, "utf8")));
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, "switch runner result unreadable; judging by generations");
    }
    const now = new Date().toISOString();
    const isSwitch = inflight.op === "switch";
    const commit = inflight.commit;
    if (result?.ok || (!result && this.activationLanded(inflight, profile))) {
      const recovered = result ? "" : " (confirmed from the profile after an agent restart)";
      this.state.update((s) => {
        if (isSwitch && genAfter !== undefined && profile.path) s.generations[String(genAfter)] = { ...(commit ? { commit } : {}), path: profile.path };
        if (isSwitch && commit && profile.path) s.lastBuild = { commit, path: profile.path };
        const builtFrom = genAfter !== undefined ? s.generations[String(genAfter)]?.commit : undefined;
        const c = isSwitch ? commit : builtFrom;
        s.lastSwitch = { ok: true, at: now, ...(c ? { commit: c } : {}), ...(genAfter !== undefined ? { generation: genAfter } : {}) };
      });
      return { state: "succeeded", summary: `${isSwitch ? "" : "rolled back: "}${moved}${recovered}`, exitCode: 0, ...gens, ...(commit && isSwitch ? { commit } : {}) };
    }
    if (result?.cancelled) {
      return { state: "failed", summary: `${inflight.op} cancelled; ${moved}`, ...gens };
    }
    if (result) {
      const error = result.errorLine ?? `${result.failedStep ?? inflight.op} failed with exit ${result.exitCode}`;
      if (isSwitch) this.state.update((s) => (s.lastSwitch = { ok: false, error, at: now, ...(commit ? { commit } : {}), ...(genAfter !== undefined ? { generation: genAfter } : {}) }));
      return { state: "failed", summary: `${result.failedStep ?? inflight.op} failed: ${error}`, error, exitCode: result.exitCode ?? 1, ...gens };
    }
    throw new InterruptedJob(`agent and ${inflight.op} runner stopped before it finished; still on generation ${genAfter ?? "none"}`, gens);
  }

  /** Without a result file: did the activation land anyway? (a new generation holding the build) */
  private activationLanded(inflight: InflightJob, profile: { generation?: number; path?: string }): boolean {
    if (profile.generation === undefined || profile.generation === inflight.generationBefore) return false;
    if (inflight.op !== "switch") return true;
    // The generic profile builds to <stateDir>/result first: the new generation must be that build.
    // Other profiles build inside nixos-rebuild & co.; a new generation is the only evidence there.
    try {
      return realpathSync(this.paths.result) === profile.path;
    } catch {
      return this.config.os.kind !== "generic";
    }
  }

  // -------------------------------------------------------------------------------------------
  // restart recovery

  /** On start: report the job the previous agent process left behind. */
  private async resumeInflight(): Promise<void> {
    const rec = this.inflight.read();
    if (!rec) return;
    const log = this.log.child({ job: rec.id, op: rec.op });
    const reporter = this.newReporter({
      id: rec.id,
      op: rec.op,
      acceptedAt: rec.acceptedAt,
      ...(rec.requestedBy ? { requestedBy: rec.requestedBy } : {}),
      ...(rec.rolloutId ? { rolloutId: rec.rolloutId } : {}),
      ...(rec.commit ? { commit: rec.commit } : {}),
    });
    reporter.state = { ...reporter.state, state: "running", startedAt: rec.startedAt };
    const finish = (state: "succeeded" | "failed" | "interrupted", summary: string, extra: Partial<JobState> = {}) => {
      log.info({ state, summary }, "reported the job left by the previous agent process");
      reporter.set(state, { summary, ...extra });
      this.inflight.clear();
      this.jobFinished(reporter.state);
    };
    if (rec.op === "restart") return finish("succeeded", `agent restarted (pid ${rec.agentPid} -> ${process.pid})`, { exitCode: 0 });
    if (!rec.runnerPid || !rec.resultFile || !rec.logFile) {
      return finish("interrupted", `agent stopped while ${rec.op} ran; run it again`);
    }
    if (processAlive(rec.runnerPid) && !existsSync(rec.resultFile)) {
      // The switch outlived the agent: keep reporting it as the current job until it ends.
      log.info({ runnerPid: rec.runnerPid }, "switch runner still running: following it");
      let endJob!: () => void;
      const job: RunningJob = {
        id: rec.id,
        op: rec.op,
        reporter,
        touches: new Set(TOUCHES[rec.op as CommandOp] ?? []),
        cancelled: false,
        cancel: () => killGroup(rec.runnerPid!, "SIGTERM"),
        finished: new Promise<void>((r) => (endJob = r)),
      };
      this.current = job;
      void (async () => {
        await this.followRunner(job, rec, undefined, false);
        if (this.stopping) return;
        // This agent started before the activation finished: it may be the old one now.
        const restartWhy = await this.finishActivation(job, rec, true);
        endJob();
        if (restartWhy && !this.stopping) return this.restartAfterActivation(job, restartWhy);
        this.current = undefined;
        await this.remeasure();
      })();
      return;
    }
    const job: RunningJob = { id: rec.id, op: rec.op, reporter, touches: new Set(), cancelled: false, cancel: () => undefined, finished: Promise.resolve() };
    void this.finishActivation(job, rec);
  }

  /**
   * Report an activation left by the previous agent process. With `mayRestart` (this process
   * started while the activation still ran) a success may call for a restart into the installed
   * agent: then the reason is returned and the caller restarts (the in-flight record stays until then).
   */
  private async finishActivation(job: RunningJob, rec: InflightJob, mayRestart = false): Promise<string | undefined> {
    let restartWhy: string | undefined;
    try {
      const { state, ...rest } = this.activationOutcome(rec);
      if (mayRestart && state === "succeeded" && !job.cancelled) {
        restartWhy = await this.restartReason();
        if (restartWhy) rest.summary = `${rest.summary}; restarting the agent (${restartWhy})`;
      }
      job.reporter.set(job.cancelled ? "cancelled" : state, rest);
    } catch (e) {
      if (e instanceof InterruptedJob) job.reporter.set("interrupted", { summary: e.message, ...e.generations });
      else job.reporter.set("failed", { summary: (e as Error).message, error: (e as Error).message });
    }
    if (restartWhy && !job.cancelled) return restartWhy;
    this.inflight.clear();
    this.jobFinished(job.reporter.state);
    return undefined;
  }
}

class InterruptedJob extends Error {
  constructor(
    message: string,
    readonly generations: { generationBefore?: number; generationAfter?: number },
  ) {
    super(message);
  }
}

function fail(summary: string, r?: RunResult): Outcome {
  return { state: "failed", summary, error: summary, ...(r?.exitCode !== undefined && r.exitCode !== null ? { exitCode: r.exitCode } : {}) };
}

const short = (sha: string) => sha.slice(0, 8);


/** Keep the files of the newest `keep` jobs (by modification time) in the jobs directory. */
function pruneJobFiles(dir: string, keep: number): void {
  try {
    const byJob = new Map<string, number>();
    for (const f of readdirSync(dir)) {
      const id = f.replace(/\.(plan\.json|result\.json|log)$/, "");
      byJob.set(id, Math.max(byJob.get(id) ?? 0, statSync(join(dir, f)).mtimeMs));
    }
    const old = [...byJob.entries()].sort((a, b) => b[1] - a[1]).slice(keep);
    for (const [id] of old) for (const ext of [".plan.json", ".result.json", ".log"]) rmSync(join(dir, id + ext), { force: true });
  } catch {
    // pruning is housekeeping: never fail a job over it
  }
}

function safeRealpath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

function safeSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function isExecutableFile(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Credentials in a repo URL (https://user:token@host/...) never reach a retained topic. */
function redactUrl(url: string): string {
  return url.replace(/^([a-z+]+:\/\/)[^@/]*@/i, "$1");
}

/** From a payload that failed validation, the id and op if they are usable for a rejected job. */
function readLooseIdentity(payload: Buffer): { id?: string; op?: string } {
  try {
    const v = JSON.parse(payload.toString("utf8")) as unknown;
    if (typeof v !== "object" || v === null) return {};
    const o = v as Record<string, unknown>;
    const id = typeof o.id === "string" && ID_PATTERN.test(o.id) ? o.id : undefined;
    const op = typeof o.op === "string" && /^[a-z-]{1,30}$/.test(o.op) ? o.op : undefined;
    return { ...(id ? { id } : {}), ...(op ? { op } : {}) };
  } catch {
    return {};
  }
}
