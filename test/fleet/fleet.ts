/**
 * A test fleet: one real flake repository (FleetRepo: bare origin, bumpable inputs, failure
 * injection) and N real `lockstep-agent` child processes, each with its own clone, state dir,
 * Nix profile, config file and log file, talking to a real broker.
 *
 *   const fleet = await TestFleet.create({ root, hosts: ["alpha", "beta"], broker });
 *   await fleet.publishExpected(fleet.expectedAtHead());
 *   const job = await fleet.runCommand("alpha", "pull", { commit: fleet.repo.head() });
 *   await fleet.waitFor("alpha", "git", (c) => c.status === "ok");
 *   await fleet.stop();
 *
 * `broker` is anything with a url and a credentials(role, name) function: the test broker from
 * test/support/brokers.ts, or the hub's broker in the demo and end-to-end tests. Agents log in as
 * their host id; the fleet's own client (used to send commands and watch state) as a hub user.
 *
 * The fleet supervises agents like systemd: an agent that exits (a `restart` command, a crash) is
 * started again after `restartDelayMs`, unless the test stopped or killed it on purpose.
 * Agents run from dist/: run `npx tsc -p .` first.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { chmodSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import mqtt, { type MqttClient } from "mqtt";
import {
  Command,
  Compartment,
  FleetExpected,
  HostInfo,
  HostPreview,
  JobOutput,
  JobState,
  TERMINAL_JOB_STATES,
  Topics,
  decodeJson,
  lockHash,
  lockLastModified,
  parseFlakeLock,
  type CommandArgs,
  type CommandOp,
  type CompartmentName,
  type MaintenanceWindow,
} from "../../protocol/index.js";
import { FleetRepo } from "./repo.js";
import { nixConfigEnv, nixSystem } from "./nix-env.js";
import { readProfile, listGenerations } from "../../agent/profile.js";
import type { AgentConfigInput } from "../../agent/config.js";


/**
 * How long an agent may take to start and say it is online. Only a ceiling on an event wait: on a
 * quiet machine it takes a second or two; on a loaded CI machine (load 20+ on 2 cores) a Node start
 * alone took over 20 s and failed whole suites in their beforeAll.
 */
const AGENT_START_MS = 90_000;
export interface FleetBrokerAccess {
  /** mqtt://host:port the agents and the fleet's client connect to. */
  url: string;
  /** Credentials per client; agents use ("agent", host), the fleet's client ("hub", hubName). */
  credentials(role: "agent" | "hub", name: string): Promise<{ username: string; password: string }>;
}

export interface FleetHostOptions {
  tags?: string[];
  priority?: number;
  canary?: boolean;
  location?: string;
  hold?: boolean;
  maintenanceWindow?: MaintenanceWindow;
  /** Merged (shallowly) over the generated agent config: selfCheck, restartAfterSwitch, keepJobs, ... */
  extraConfig?: Partial<AgentConfigInput>;
}

export interface TestFleetOptions {
  /** Directory for everything (repo, hosts). Use a fresh temp dir. */
  root: string;
  hosts: string[];
  broker: FleetBrokerAccess;
  /** Topic prefix (default lockstep). */
  prefix?: string;
  /** Flake inputs of the repo (default nixpkgs, tools). */
  inputs?: string[];
  branch?: string;
  initialDate?: Date;
  /** Per-host info fields (tags, priority, canary, ...). */
  hostOptions?: Record<string, FleetHostOptions>;
  /** Start every agent in create() (default true). */
  startAgents?: boolean;
  /** The agent's compiled CLI (default: dist/agent/cli.js of this checkout). */
  agentCli?: string;
  /** Name of the fleet's own hub-role MQTT user and of its commands' requestedBy (default "test-fleet"). */
  hubName?: string;
  logLevel?: "debug" | "info" | "warn" | "error";
  /** Delay before the supervisor restarts an agent that exited (default 300 ms). */
  restartDelayMs?: number;
  /** Job timeouts for the agents, in seconds. */
  timeouts?: { pullSeconds?: number; switchSeconds?: number; testSeconds?: number; updateInputsSeconds?: number };
}

export interface HostPaths {
  dir: string;
  checkout: string;
  stateDir: string;
  /** The generic OS profile (nix-env --profile). */
  profile: string;
  config: string;
  passwordFile: string;
  log: string;
}

export interface CommandOptions {
  id?: string;
  issuedAt?: string;
  expiresAt?: string;
  /** Expiry relative to now (default 10 minutes). */
  expiresInMs?: number;
  requestedBy?: string;
  rolloutId?: string;
}

type ArgsOf<O extends CommandOp> = Parameters<(typeof CommandArgs)[O]["parse"]>[0];

interface AgentSlot {
  child?: ChildProcess;
  /** Should the supervisor keep it running? */
  wanted: boolean;
  starts: number;
  exits: Array<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  restartTimer?: NodeJS.Timeout;
  /** Extra environment for the agent process, from its next start on. */
  env?: Record<string, string>;
}

export class FleetTimeoutError extends Error {
  override name = "FleetTimeoutError";
}

export class TestFleet {
  readonly topics: Topics;
  readonly hosts: string[];
  /** Everything the agents published, as last seen by the fleet's client. */
  readonly availability = new Map<string, string>();
  readonly info = new Map<string, HostInfo>();
  readonly compartments = new Map<string, Map<CompartmentName, Compartment>>();
  readonly jobs = new Map<string, Map<string, JobState>>();
  readonly output = new Map<string, JobOutput["lines"]>();
  /** Previews agents published, by "<pr>/<host>" (the host previewed, wherever it was built). */
  readonly previews = new Map<string, HostPreview>();
  private readonly onlineCount = new Map<string, number>();
  private readonly slots = new Map<string, AgentSlot>();
  private readonly changes = new EventEmitter();
  private client!: MqttClient;
  private stopped = false;
  private seq = 0;

  private constructor(
    readonly opts: TestFleetOptions,
    readonly repo: FleetRepo,
  ) {
    this.topics = new Topics(opts.prefix ?? "lockstep");
    this.hosts = opts.hosts;
    this.changes.setMaxListeners(0);
  }

  /** Build the repo, per-host clones/configs, connect the fleet's client, start the agents. */
  static async create(opts: TestFleetOptions): Promise<TestFleet> {
    mkdirSync(opts.root, { recursive: true });
    const repo = FleetRepo.create({
      root: join(opts.root, "repo"),
      hosts: opts.hosts,
      ...(opts.inputs ? { inputs: opts.inputs } : {}),
      ...(opts.branch ? { branch: opts.branch } : {}),
      ...(opts.initialDate ? { initialDate: opts.initialDate } : {}),
    });
    const fleet = new TestFleet(opts, repo);
    try {
      for (const host of opts.hosts) await fleet.prepareHost(host);
      await fleet.connect();
      if (opts.startAgents !== false) await Promise.all(opts.hosts.map((h) => fleet.startAgent(h)));
    } catch (err) {
      // A half-started fleet must not outlive the failed test: its agents' restart timers would keep
      // spawning into a removed temp dir (and load the machine for the tests after it).
      await fleet.stop().catch(() => undefined);
      throw err;
    }
    return fleet;
  }

  static agentCliPath(): string {
    const here = typeof __dirname === "string" ? __dirname : process.cwd();
    const candidates = [resolve(here, "../../dist/agent/cli.js"), resolve(here, "../../agent/cli.js"), resolve(process.cwd(), "dist/agent/cli.js")];
    return candidates.find((p) => existsSync(p)) ?? candidates[0]!;
  }

  paths(host: string): HostPaths {
    const dir = join(this.opts.root, "hosts", host);
    return {
      dir,
      checkout: join(dir, "checkout"),
      stateDir: join(dir, "state"),
      profile: join(dir, "profiles", "system"),
      config: join(dir, "agent.json"),
      passwordFile: join(dir, "broker-password"),
      log: join(dir, "agent.log"),
    };
  }

  /** The config the fleet writes for a host (the same shape the NixOS module generates). */
  agentConfig(host: string, username: string): AgentConfigInput {
    const p = this.paths(host);
    const h = this.opts.hostOptions?.[host] ?? {};
    const t = this.opts.timeouts ?? {};
    return {
      host,
      broker: { url: this.opts.broker.url, username, passwordFile: p.passwordFile, keepaliveSeconds: 10 },
      topicPrefix: this.topics.prefix,
      repo: { url: this.repo.originUrl, branch: this.repo.branch, checkoutDir: p.checkout },
      stateDir: p.stateDir,
      os: { kind: "generic", profile: p.profile, flakeAttr: `lockstepSystems.${nixSystem()}.${host}` },
      testsDir: "tests",
      tags: h.tags ?? [],
      priority: h.priority ?? 100,
      canary: h.canary ?? false,
      hold: h.hold ?? false,
      ...(h.location ? { location: h.location } : {}),
      ...(h.maintenanceWindow ? { maintenanceWindow: h.maintenanceWindow } : {}),
      timeouts: { pullSeconds: t.pullSeconds ?? 60, switchSeconds: t.switchSeconds ?? 180, testSeconds: t.testSeconds ?? 30, updateInputsSeconds: t.updateInputsSeconds ?? 120 },
      logLevel: this.opts.logLevel ?? "debug",
      env: nixConfigEnv(),
      git: { authorName: `Lockstep agent ${host}`, authorEmail: `${host}@lockstep.invalid` },
      // The test fleet's client does not confirm switches; suites that test magic rollback turn it on.
      magicRollback: false,
      ...(h.extraConfig ?? {}),
    };
  }

  private async prepareHost(host: string): Promise<void> {
    const p = this.paths(host);
    mkdirSync(p.stateDir, { recursive: true });
    mkdirSync(join(p.profile, ".."), { recursive: true });
    if (!existsSync(p.checkout)) execFileSync("git", ["clone", "-q", "-b", this.repo.branch, this.repo.originUrl, p.checkout], { stdio: "ignore" });
    const cred = await this.opts.broker.credentials("agent", host);
    writeFileSync(p.passwordFile, cred.password + "\n", { mode: 0o600 });
    chmodSync(p.passwordFile, 0o600);
    writeFileSync(p.config, JSON.stringify(this.agentConfig(host, cred.username), null, 2));
    this.slots.set(host, { wanted: false, starts: 0, exits: [] });
    this.compartments.set(host, new Map());
    this.jobs.set(host, new Map());
  }

  private async connect(): Promise<void> {
    const hubName = this.opts.hubName ?? "test-fleet";
    const cred = await this.opts.broker.credentials("hub", hubName);
    this.client = mqtt.connect(this.opts.broker.url, {
      clientId: `lockstep-test-fleet-${randomBytes(4).toString("hex")}`,
      username: cred.username,
      password: cred.password,
      clean: true,
      reconnectPeriod: 200,
      protocolVersion: 4,
    });
    this.client.on("message", (topic, payload) => this.onMessage(topic, payload));
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`test fleet: cannot connect to ${this.opts.broker.url}`)), 10_000);
      this.client.once("connect", () => {
        clearTimeout(t);
        res();
      });
    });
    this.client.on("connect", () => void this.subscribe());
    await this.subscribe();
  }

  private async subscribe(): Promise<void> {
    await this.client.subscribeAsync(this.topics.allHosts(), { qos: 1 });
  }

  private onMessage(topic: string, payload: Buffer): void {
    const t = this.topics.parse(topic);
    if (!t || !("host" in t) || !this.slots.has(t.host)) return;
    const host = t.host;
    switch (t.kind) {
      case "availability": {
        const v = payload.toString();
        this.availability.set(host, v);
        if (v === "online") this.onlineCount.set(host, (this.onlineCount.get(host) ?? 0) + 1);
        break;
      }
      case "info": {
        const d = decodeJson(HostInfo, payload);
        if (d.ok) this.info.set(host, d.value);
        break;
      }
      case "compartment": {
        const d = decodeJson(Compartment, payload);
        if (d.ok) this.compartments.get(host)!.set(t.compartment, d.value);
        break;
      }
      case "job": {
        const d = decodeJson(JobState, payload);
        if (d.ok) this.jobs.get(host)!.set(t.jobId, d.value);
        break;
      }
      case "hostPreview": {
        const d = decodeJson(HostPreview, payload);
        if (d.ok) this.previews.set(`${t.pr}/${t.host}`, d.value);
        break;
      }
      case "jobOutput": {
        const d = decodeJson(JobOutput, payload);
        if (d.ok) {
          const key = `${host}/${t.jobId}`;
          this.output.set(key, [...(this.output.get(key) ?? []), ...d.value.lines]);
        }
        break;
      }
      default:
        return;
    }
    this.changes.emit("change");
  }

  /** Resolve when `check` returns a value (re-checked on every message), or fail after timeoutMs. */
  async until<T>(check: () => T | undefined | false, timeoutMs: number, what: string | (() => string)): Promise<T> {
    const first = check();
    if (first !== undefined && first !== false) return first;
    return new Promise<T>((res, rej) => {
      const onChange = () => {
        const v = check();
        if (v !== undefined && v !== false) {
          cleanup();
          res(v);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        rej(new FleetTimeoutError(`timed out after ${timeoutMs} ms waiting for ${typeof what === "string" ? what : what()}`));
      }, timeoutMs);
      const poll = setInterval(onChange, 250); // also notice state that is not an MQTT message (files, processes)
      const cleanup = () => {
        clearTimeout(timer);
        clearInterval(poll);
        this.changes.off("change", onChange);
      };
      this.changes.on("change", onChange);
    });
  }

  // -------------------------------------------------------------------------------------------
  // agent processes

  /** Start (or restart) a host's agent; resolves once it announced itself online. */
  async startAgent(host: string, timeoutMs = AGENT_START_MS): Promise<void> {
    const slot = this.slot(host);
    slot.wanted = true;
    if (slot.restartTimer) clearTimeout(slot.restartTimer);
    if (slot.child && slot.child.exitCode === null && slot.child.signalCode === null) return;
    const before = this.onlineCount.get(host) ?? 0;
    this.spawnAgent(host);
    await this.until(() => (this.onlineCount.get(host) ?? 0) > before, timeoutMs, () => `${host}'s agent to come online (log: ${this.agentLogs(host).slice(-2000)})`);
  }

  private spawnAgent(host: string): void {
    const slot = this.slot(host);
    const p = this.paths(host);
    const fd = openSync(p.log, "a");
    const child = spawn(process.execPath, [this.opts.agentCli ?? TestFleet.agentCliPath(), "run", "--config", p.config], {
      stdio: ["ignore", fd, fd],
      env: { ...process.env, ...(slot.env ?? {}) },
    });
    closeSync(fd);
    slot.child = child;
    slot.starts++;
    child.once("exit", (code, signal) => {
      slot.exits.push({ code, signal, at: Date.now() });
      if (slot.child === child) slot.child = undefined;
      if (slot.wanted && !this.stopped) {
        // Like systemd Restart=always with RestartSec.
        slot.restartTimer = setTimeout(() => {
          if (slot.wanted && !this.stopped && !slot.child) this.spawnAgent(host);
        }, this.opts.restartDelayMs ?? 300);
      }
      this.changes.emit("change");
    });
  }

  /** Stop an agent gracefully (SIGTERM) and keep it stopped. */
  async stopAgent(host: string): Promise<void> {
    await this.signalAgent(host, "SIGTERM", false);
  }

  /** Kill an agent (default SIGKILL). It stays down unless `restart` is true (then the supervisor restarts it). */
  async killAgent(host: string, signal: NodeJS.Signals = "SIGKILL", opts: { restart?: boolean } = {}): Promise<void> {
    await this.signalAgent(host, signal, opts.restart ?? false);
  }

  private async signalAgent(host: string, signal: NodeJS.Signals, keepWanted: boolean): Promise<void> {
    const slot = this.slot(host);
    slot.wanted = keepWanted;
    if (slot.restartTimer && !keepWanted) clearTimeout(slot.restartTimer);
    const child = slot.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill(signal);
    const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(t);
  }

  /**
   * Environment for a host's agent process from its next (re)start on, e.g.
   * LOCKSTEP_AGENT_VERSION_OVERRIDE to make the restarted agent the "installed" version.
   */
  setAgentEnv(host: string, env: Record<string, string>): void {
    this.slot(host).env = { ...env };
  }

  isAgentRunning(host: string): boolean {
    const c = this.slot(host).child;
    return !!c && c.exitCode === null && c.signalCode === null;
  }

  /** How often the agent process was started and how it exited. */
  agentProcess(host: string): { pid?: number; starts: number; exits: AgentSlot["exits"] } {
    const s = this.slot(host);
    return { ...(s.child?.pid ? { pid: s.child.pid } : {}), starts: s.starts, exits: s.exits };
  }

  agentLogs(host: string): string {
    try {
      return readFileSync(this.paths(host).log, "utf8");
    } catch {
      return "";
    }
  }

  private slot(host: string): AgentSlot {
    const s = this.slots.get(host);
    if (!s) throw new Error(`unknown host ${host} (fleet has ${this.hosts.join(", ")})`);
    return s;
  }

  // -------------------------------------------------------------------------------------------
  // commands and jobs

  /** Build a valid Command (validated with the protocol schema). */
  command<O extends CommandOp>(op: O, args?: ArgsOf<O>, opts: CommandOptions = {}): Command {
    const now = Date.now();
    return Command.parse({
      id: opts.id ?? `t${now.toString(36)}-${(this.seq++).toString(36)}-${randomBytes(2).toString("hex")}`,
      op,
      args: args ?? {},
      issuedAt: opts.issuedAt ?? new Date(now).toISOString(),
      expiresAt: opts.expiresAt ?? new Date(now + (opts.expiresInMs ?? 600_000)).toISOString(),
      requestedBy: opts.requestedBy ?? this.opts.hubName ?? "test-fleet",
      ...(opts.rolloutId ? { rolloutId: opts.rolloutId } : {}),
    });
  }

  /** Publish a command (QoS 1, not retained) as the hub user. A string is sent as-is (malformed-payload tests). */
  async sendCommand(host: string, command: Command | string): Promise<void> {
    const payload = typeof command === "string" ? command : JSON.stringify(command);
    await this.client.publishAsync(this.topics.commands(host), payload, { qos: 1, retain: false });
  }

  /** Send a command and wait for its terminal job state. */
  async runCommand<O extends CommandOp>(host: string, op: O, args?: ArgsOf<O>, opts: CommandOptions & { timeoutMs?: number } = {}): Promise<JobState> {
    const cmd = this.command(op, args, opts);
    await this.sendCommand(host, cmd);
    return this.waitForJob(host, cmd.id, { timeoutMs: opts.timeoutMs ?? 60_000 });
  }

  /** Wait for a job to reach a terminal state (or one of `states`). */
  async waitForJob(host: string, id: string, opts: { timeoutMs?: number; states?: JobState["state"][] } = {}): Promise<JobState> {
    const states = opts.states ?? [...TERMINAL_JOB_STATES];
    return this.until(
      () => {
        const j = this.jobs.get(host)?.get(id);
        return j && states.includes(j.state) ? j : undefined;
      },
      opts.timeoutMs ?? 60_000,
      () => `job ${id} on ${host} to reach ${states.join("/")} (now: ${JSON.stringify(this.jobs.get(host)?.get(id) ?? "not seen")})`,
    );
  }

  /** Every job state seen from the host (the latest per job), e.g. to find jobs the agent started by itself. */
  allJobs(host: string): JobState[] {
    return [...(this.jobs.get(host)?.values() ?? [])];
  }

  job(host: string, id: string): JobState | undefined {
    return this.jobs.get(host)?.get(id);
  }

  /** All output lines of a job seen so far. */
  jobOutput(host: string, id: string): JobOutput["lines"] {
    return this.output.get(`${host}/${id}`) ?? [];
  }

  // -------------------------------------------------------------------------------------------
  // state

  compartment(host: string, name: CompartmentName): Compartment | undefined {
    return this.compartments.get(host)?.get(name);
  }

  /** Wait until a host's compartment satisfies `predicate`. */
  async waitFor(host: string, name: CompartmentName, predicate: (c: Compartment) => boolean, timeoutMs = 30_000): Promise<Compartment> {
    return this.until(
      () => {
        const c = this.compartment(host, name);
        return c && predicate(c) ? c : undefined;
      },
      timeoutMs,
      () => `${host}/${name} to match (now: ${JSON.stringify(this.compartment(host, name) ?? "not seen")})`,
    );
  }

  /** Wait for a preview of PR `pr` for `host` of head `headSha`. */
  async waitForPreview(pr: number, host: string, headSha: string, timeoutMs = 60_000): Promise<HostPreview> {
    return this.until(() => { const p = this.previews.get(`${pr}/${host}`); return p?.headSha === headSha ? p : undefined; }, timeoutMs, `preview of PR #${pr} for ${host}`);
  }

  async waitForAvailability(host: string, value: "online" | "offline", timeoutMs = AGENT_START_MS): Promise<void> {
    await this.until(() => this.availability.get(host) === value, timeoutMs, `${host} to be ${value}`);
  }

  /** The host's system profile as it is on disk (generation number and store path). */
  generation(host: string): { generation?: number; path?: string } {
    return readProfile(this.paths(host).profile);
  }

  generations(host: string): Array<{ generation: number; path: string }> {
    return listGenerations(this.paths(host).profile);
  }

  /** HEAD of a host's checkout, read with git. */
  checkoutHead(host: string): string {
    return execFileSync("git", ["rev-parse", "HEAD"], { cwd: this.paths(host).checkout, encoding: "utf8" }).trim();
  }

  /** A FleetExpected describing a commit of origin (default: the branch head). */
  expectedAt(commit = this.repo.head(), extra: Partial<FleetExpected> = {}): FleetExpected {
    const lock = this.repo.show(commit, "flake.lock");
    const lm = lockLastModified(parseFlakeLock(lock));
    return FleetExpected.parse({
      repo: this.repo.originUrl,
      branch: this.repo.branch,
      headCommit: commit,
      lockHash: lockHash(lock),
      ...(lm !== undefined ? { lockLastModified: lm } : {}),
      pendingUpdate: null,
      updatedAt: new Date().toISOString(),
      ...extra,
    });
  }

  expectedAtHead(extra: Partial<FleetExpected> = {}): FleetExpected {
    return this.expectedAt(this.repo.head(), extra);
  }

  /** Publish fleet/expected (retained) as the hub user. */
  async publishExpected(expected: FleetExpected): Promise<void> {
    await this.client.publishAsync(this.topics.expected(), JSON.stringify(FleetExpected.parse(expected)), { qos: 1, retain: true });
  }

  /**
   * Bring hosts to a known good state: expectation at head, then pull + switch + test on each
   * host (in parallel). Throws with the job's summary if any step fails.
   */
  async bootstrap(hosts: string[] = this.hosts): Promise<void> {
    const head = this.repo.head();
    await this.publishExpected(this.expectedAt(head));
    await Promise.all(
      hosts.map(async (h) => {
        for (const [op, args] of [["pull", { commit: head }], ["switch", { commit: head }], ["test", {}]] as const) {
          const j = await this.runCommand(h, op, args as never, { timeoutMs: 120_000 });
          if (j.state !== "succeeded") throw new Error(`bootstrap: ${op} on ${h} ${j.state}: ${j.summary}`);
        }
      }),
    );
  }

  /** Stop every agent and the fleet's client. Files stay (the caller owns root). */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.hosts.map((h) => this.stopAgent(h).catch(() => undefined)));
    await this.client?.endAsync().catch(() => undefined);
  }
}
