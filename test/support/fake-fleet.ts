/**
 * An in-memory FleetPort whose hosts behave like Lockstep agents, for fast rollout tests:
 * - commands to an offline host wait (like a persistent MQTT session) and arrive on reconnect,
 *   where an expired one is rejected; a command id seen before is ignored (re-delivery runs once);
 * - one job at a time per host, each published accepted -> running -> terminal, with latency;
 * - pull moves the checkout, switch builds a new profile generation (or fails for a host with an
 *   injected build failure), test runs the host's checks, rollback returns to a generation;
 * - a host can restart during a switch (offline for a while, the job result comes after);
 * - a job's final state can be lost on its way (the hub never sees it); the host keeps it and
 *   publishes it again when asked (`report`), like the agent's job history; `stop {job}` and
 *   `report` run at once beside a busy job, like the agent's quick ops;
 * - compartments follow the DESIGN.md rules from the simulated facts.
 */
import type { Command, CommandOp, Compartment, CompartmentName, FleetExpected, HostInfo, JobState, MaintenanceWindow, RolloutHistoryEntry, RolloutProgress, AuditEvent } from "../../protocol/schemas.js";
import {
  newCommandId,
  waitForHostState,
  waitForTerminalJob,
  type CommandArgsInput,
  type CommandMeta,
  type FleetChange,
  type FleetPort,
  type HostSnapshot,
  type RolloutPublisher,
} from "../../rollout/fleet-port.js";

export interface FakeHostOptions {
  host: string;
  priority?: number;
  tags?: string[];
  canary?: boolean;
  hold?: boolean;
  holdReason?: string;
  maintenanceWindow?: MaintenanceWindow;
  online?: boolean;
  /** Current profile generation (default 1). */
  generation?: number;
  /** Commit checked out and built into the current generation. */
  commit?: string;
}

export interface FakeFleetOptions {
  hosts: FakeHostOptions[];
  /** Time each job takes (default 1 ms). */
  latencyMs?: number;
  /** The fleet's head commit (what git/lock compartments compare against). Default: the first rollout commit seen. */
  expectedHead?: string;
  /** Hosts' switches must be confirmed within this many seconds (magic rollback), as agents do by default. */
  confirmSeconds?: number;
  /** What a commit builds to on a host (default: a path per commit): two commits with the same path need no switch between them. */
  systemOf?: (host: string, commit: string | undefined) => string;
  /** flake.lock's hash at a commit (reported as info.lockHash; default: none). */
  lockOf?: (commit: string) => string | undefined;
}

interface FakeHost {
  opts: FakeHostOptions;
  online: boolean;
  commit?: string;
  generation: number;
  /** generation -> commit it was built from */
  generations: Map<number, string | undefined>;
  lastSwitch?: { ok: boolean; error?: string; commit?: string };
  lastTest?: { generation: number; passed: boolean };
  /** What a `refresh` evaluated the checkout to. */
  evaluated?: { commit: string; path: string };
  inbox: Command[];
  seen: Set<string>;
  queue: Command[];
  busy: boolean;
  failBuild: boolean;
  failTests: boolean;
  restartDuringSwitchMs?: number;
  /** The switch job waiting for a `confirm` (magic rollback), and the switches confirmed so far. */
  awaitingConfirmation?: string;
  confirmed: string[];
  /** The job running now, and whether a `stop` naming it arrived. */
  running?: { id: string; stopped: boolean };
  /** Ops whose next final state never reaches the hub. */
  loseFinal: Set<string>;
  /** Final states the hub never saw, kept by the "agent". */
  kept: Map<string, JobState>;
  hold: boolean;
  lastSeen: string;
  compartments: Partial<Record<CompartmentName, Compartment>>;
}

export const OLD_COMMIT = "a".repeat(40);

export class FakeFleet implements FleetPort, RolloutPublisher {
  /** Every command that reached the broker, in order, with the host it was sent to. */
  readonly commands: (Command & { host: string })[] = [];
  /** Every command an agent actually ran (after dedup and expiry checks). */
  readonly executed: { host: string; op: string; id: string }[] = [];
  readonly progress: RolloutProgress[] = [];
  readonly history: RolloutHistoryEntry[] = [];
  readonly audits: AuditEvent[] = [];
  private readonly hostMap = new Map<string, FakeHost>();
  private readonly jobs = new Map<string, JobState>();
  private readonly listeners = new Set<(c: FleetChange) => void>();
  private readonly commandListeners = new Set<(c: Command & { host: string }) => void>();
  private readonly dropped = new Set<string>();
  private readonly undelivered = new Set<string>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private expectedHead?: string;
  private readonly latencyMs: number;
  private readonly confirmSeconds?: number;
  private readonly systemOf: (host: string, commit: string | undefined) => string;
  private readonly lockOf: (commit: string) => string | undefined;

  constructor(opts: FakeFleetOptions) {
    this.systemOf = opts.systemOf ?? ((host, commit) => `/nix/store/${host}-${commit ?? "none"}`);
    this.lockOf = opts.lockOf ?? (() => undefined);
    this.latencyMs = opts.latencyMs ?? 1;
    if (opts.confirmSeconds !== undefined) this.confirmSeconds = opts.confirmSeconds;
    this.expectedHead = opts.expectedHead;
    for (const o of opts.hosts) {
      const generation = o.generation ?? 1;
      const h: FakeHost = {
        opts: o,
        online: o.online ?? true,
        commit: o.commit ?? OLD_COMMIT,
        generation,
        generations: new Map([[generation, o.commit ?? OLD_COMMIT]]),
        inbox: [],
        seen: new Set(),
        queue: [],
        busy: false,
        failBuild: false,
        failTests: false,
        confirmed: [],
        loseFinal: new Set(),
        kept: new Map(),
        hold: o.hold ?? false,
        lastSeen: new Date().toISOString(),
        compartments: {},
      };
      this.hostMap.set(o.host, h);
      this.recompute(h);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Test controls

  setOnline(host: string, online: boolean): void {
    const h = this.get(host);
    h.online = online;
    h.lastSeen = new Date().toISOString();
    this.notify({ kind: "availability", host });
    if (online) {
      const waiting = h.inbox.splice(0);
      for (const c of waiting) this.deliver(h, c);
    }
  }
  /** The switches a host's "agent" was asked to keep (confirm), in order. */
  confirmedSwitches(host: string): string[] {
    return [...this.get(host).confirmed];
  }
  failBuild(host: string, fail = true): void {
    this.get(host).failBuild = fail;
  }
  failTests(host: string, fail = true): void {
    this.get(host).failTests = fail;
  }
  /** The agent goes offline for `ms` in the middle of every switch, then comes back and reports. */
  restartDuringSwitch(host: string, ms: number): void {
    this.get(host).restartDuringSwitchMs = ms;
  }
  setHold(host: string, hold: boolean): void {
    this.get(host).hold = hold;
    this.recompute(this.get(host));
    this.notify({ kind: "info", host });
  }
  setExpectedHead(commit: string): void {
    this.expectedHead = commit;
    for (const h of this.hostMap.values()) {
      this.recompute(h);
      this.notify({ kind: "compartment", host: h.opts.host });
    }
  }
  /** The final state of the next `op` job on `host` never reaches the hub (the host keeps it). */
  loseNextFinalState(host: string, op: CommandOp): void {
    this.get(host).loseFinal.add(op);
  }
  /** The next `op` command for `host` reaches the broker but never the host (lost with the broker's storage). */
  dropNextDelivery(host: string, op: CommandOp): void {
    this.undelivered.add(`${host}/${op}`);
  }
  /** The next `op` command for `host` is lost with the hub: sendCommand never returns and nothing reaches the host. */
  loseNextCommand(host: string, op: CommandOp): void {
    this.dropped.add(`${host}/${op}`);
  }
  generationOf(host: string): number {
    return this.get(host).generation;
  }
  /** How many times an agent ran `op` on `host`. */
  ran(host: string, op?: string): number {
    return this.executed.filter((e) => e.host === host && (op === undefined || e.op === op)).length;
  }
  /** Stop every pending simulated timer (end of a test). */
  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  // ---------------------------------------------------------------------------------------------
  // FleetPort

  hosts(): HostSnapshot[] {
    return [...this.hostMap.keys()].map((h) => this.host(h)!);
  }

  host(host: string): HostSnapshot | undefined {
    const h = this.hostMap.get(host);
    if (!h) return undefined;
    return { host, info: this.info(h), availability: h.online ? "online" : "offline", compartments: { ...h.compartments }, lastSeen: h.lastSeen };
  }

  async sendCommand<O extends CommandOp>(host: string, op: O, args: CommandArgsInput<O>, meta: CommandMeta): Promise<string> {
    const h = this.get(host);
    const cmd = {
      id: meta.id ?? newCommandId(),
      op,
      args: args ?? {},
      issuedAt: new Date().toISOString(),
      expiresAt: meta.expiresAt.toISOString(),
      requestedBy: meta.requestedBy,
      rolloutId: meta.rolloutId,
    } as Command;
    if (this.dropped.delete(`${host}/${op}`)) return new Promise<string>(() => undefined);
    this.commands.push({ ...cmd, host });
    for (const l of this.commandListeners) l({ ...cmd, host });
    if (op === "pull" && !this.expectedHead) this.setExpectedHead((args as { commit: string }).commit);
    if (this.undelivered.delete(`${host}/${op}`)) return cmd.id;
    if (h.online) this.later(0, () => this.deliver(h, cmd));
    else h.inbox.push(cmd);
    return cmd.id;
  }

  /** Called with each command as it reaches the broker (tests hook "the moment X was sent" here). */
  onCommand(listener: (c: Command & { host: string }) => void): void {
    this.commandListeners.add(listener);
  }

  job(host: string, jobId: string): JobState | undefined {
    return this.jobs.get(`${host}/${jobId}`);
  }

  waitForJob(host: string, jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<JobState> {
    return waitForTerminalJob(this, host, jobId, timeoutMs, signal);
  }

  waitForHost(host: string, predicate: (h: HostSnapshot) => boolean, timeoutMs: number, signal?: AbortSignal): Promise<HostSnapshot> {
    return waitForHostState(this, host, predicate, timeoutMs, signal);
  }

  expected(): FleetExpected | undefined {
    if (!this.expectedHead) return undefined;
    return { repo: "fake", branch: "main", headCommit: this.expectedHead, lockHash: "0".repeat(64), pendingUpdate: null, updatedAt: new Date().toISOString() };
  }

  onChange(listener: (change: FleetChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // RolloutPublisher: keep what would go to the broker.
  async publishProgress(p: RolloutProgress): Promise<void> {
    this.progress.push(p);
  }
  async publishHistory(e: RolloutHistoryEntry): Promise<void> {
    this.history.push(e);
  }
  async publishAudit(e: AuditEvent): Promise<void> {
    this.audits.push(e);
  }

  // ---------------------------------------------------------------------------------------------
  // The simulated agent

  private get(host: string): FakeHost {
    const h = this.hostMap.get(host);
    if (!h) throw new Error(`fake fleet has no host ${host}`);
    return h;
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private info(h: FakeHost): HostInfo {
    const o = h.opts;
    const info: HostInfo = {
      host: o.host,
      hostname: o.host,
      os: "nixos",
      agentVersion: "0.1.0",
      branch: "main",
      commit: h.commit,
      generation: h.generation,
      ...(h.commit && this.lockOf(h.commit) ? { lockHash: this.lockOf(h.commit)! } : {}),
      tags: o.tags ?? [],
      priority: o.priority ?? 100,
      canary: o.canary ?? false,
      hold: h.hold,
      startedAt: "2026-11-01T00:00:00.000Z",
      updatedAt: h.lastSeen,
    };
    if (o.holdReason) info.holdReason = o.holdReason;
    if (o.maintenanceWindow) info.maintenanceWindow = o.maintenanceWindow;
    return info;
  }

  private recompute(h: FakeHost): void {
    const at = new Date().toISOString();
    const current = h.commit !== undefined && h.commit === this.expectedHead;
    const c = (status: Compartment["status"], summary: string, generation?: number): Compartment =>
      generation === undefined ? { status, summary, checkedAt: at } : { status, summary, checkedAt: at, generation };
    h.compartments.agent = c("ok", "agent 0.1.0");
    h.compartments.git = c(current ? "ok" : "outdated", current ? "at head" : "behind head");
    h.compartments.lock = c(current ? "ok" : "outdated", current ? "matches head" : "differs from head");
    const builtFrom = h.generations.get(h.generation);
    // Like the agent: the exact check (what the checkout evaluates to) wins over "built from which commit".
    const running = this.systemOf(h.opts.host, builtFrom);
    const evaluated = h.evaluated && h.evaluated.commit === h.commit ? h.evaluated.path : undefined;
    const matches = evaluated !== undefined ? evaluated === running : builtFrom === h.commit;
    // Like the agent: a failed switch is the checkout's failure only while it is still at that commit.
    if (h.lastSwitch && !h.lastSwitch.ok && (h.lastSwitch.commit === undefined || h.lastSwitch.commit === h.commit)) h.compartments.system = c("failed", `switch failed: ${h.lastSwitch.error}`, h.generation);
    else if (!matches) h.compartments.system = c("outdated", "checkout changed since the last switch", h.generation);
    else h.compartments.system = c(current ? "ok" : "outdated", `generation ${h.generation}`, h.generation);
    h.compartments.system.detail = { currentSystemPath: running, ...(evaluated ? { expectedSystemPath: evaluated } : {}), ...(builtFrom ? { builtFrom } : {}) };
    const t = h.lastTest;
    if (!t || t.generation !== h.generation) h.compartments.tests = c("outdated", "not tested on this generation", h.generation);
    else h.compartments.tests = c(t.passed ? "ok" : "failed", t.passed ? "3/3 passed" : "1/3 failed", h.generation);
  }

  private publishJob(h: FakeHost, cmd: Command, patch: Partial<JobState> & Pick<JobState, "state" | "summary">): void {
    const key = `${h.opts.host}/${cmd.id}`;
    const prev = this.jobs.get(key);
    const job: JobState = {
      ...(prev ?? { id: cmd.id, host: h.opts.host, op: cmd.op, acceptedAt: new Date().toISOString(), rolloutId: cmd.rolloutId, requestedBy: cmd.requestedBy }),
      ...patch,
    };
    this.jobs.set(key, job);
    this.notify({ kind: "job", host: h.opts.host, jobId: cmd.id });
  }

  private deliver(h: FakeHost, cmd: Command): void {
    if (!h.online) {
      h.inbox.push(cmd);
      return;
    }
    if (h.seen.has(cmd.id)) return; // re-delivery runs once
    h.seen.add(cmd.id);
    if (Date.now() > Date.parse(cmd.expiresAt)) {
      this.publishJob(h, cmd, { state: "rejected", summary: `command expired at ${cmd.expiresAt}`, finishedAt: new Date().toISOString() });
      return;
    }
    this.publishJob(h, cmd, { state: "accepted", summary: "queued" });
    if (cmd.op === "report" || cmd.op === "stop") return this.quick(h, cmd);
    h.queue.push(cmd);
    this.pump(h);
  }

  /** `report` and `stop`: answered at once, beside a busy job. */
  private quick(h: FakeHost, cmd: Command): void {
    const done = (state: "succeeded" | "failed", summary: string) => this.publishJob(h, cmd, { state, summary, finishedAt: new Date().toISOString() });
    if (cmd.op === "stop") {
      const job = cmd.args.job;
      if (!h.running || (job !== undefined && h.running.id !== job)) return done("succeeded", "nothing stopped");
      h.running.stopped = true;
      return done("succeeded", `cancelled ${h.running.id}`);
    }
    if (cmd.op !== "report") return;
    const id = cmd.args.job;
    const key = `${h.opts.host}/${id}`;
    const kept = h.kept.get(id);
    if (kept) {
      h.kept.delete(id);
      this.jobs.set(key, kept);
      this.notify({ kind: "job", host: h.opts.host, jobId: id });
      return done("succeeded", `job ${id} is ${kept.state}: its state was published again`);
    }
    if (this.jobs.has(key)) {
      this.notify({ kind: "job", host: h.opts.host, jobId: id });
      return done("succeeded", `job ${id} is ${this.jobs.get(key)!.state}: its state was published again`);
    }
    if (h.seen.has(id)) return done("failed", `job ${id} reached this host, but its state is no longer kept`);
    h.seen.add(id);
    const never: Command = { ...cmd, id, op: cmd.args.op ?? "refresh" } as Command;
    this.publishJob(h, never, { state: "rejected", summary: "the command never reached this host; it will not run", finishedAt: new Date().toISOString() });
    return done("succeeded", `job ${id} never reached this host`);
  }

  private pump(h: FakeHost): void {
    if (h.busy) return;
    const cmd = h.queue.shift();
    if (!cmd) return;
    h.busy = true;
    h.running = { id: cmd.id, stopped: false };
    this.executed.push({ host: h.opts.host, op: cmd.op, id: cmd.id });
    this.publishJob(h, cmd, { state: "running", summary: `${cmd.op} running`, startedAt: new Date().toISOString() });
    this.later(this.latencyMs, () => {
      const finish = (result: Partial<JobState> & Pick<JobState, "state" | "summary">) => {
        const patch = h.running?.stopped ? { ...result, state: "cancelled" as const, summary: `${cmd.op} cancelled by stop` } : result;
        h.running = undefined;
        this.recompute(h);
        this.notify({ kind: "info", host: h.opts.host });
        this.notify({ kind: "compartment", host: h.opts.host });
        if (h.loseFinal.delete(cmd.op)) {
          // Lost on its way to the hub: the host keeps it (its job history) until asked.
          const prev = this.jobs.get(`${h.opts.host}/${cmd.id}`)!;
          h.kept.set(cmd.id, { ...prev, finishedAt: new Date().toISOString(), ...patch });
        } else {
          this.publishJob(h, cmd, { finishedAt: new Date().toISOString(), ...patch });
        }
        h.busy = false;
        this.pump(h);
      };
      this.run(h, cmd, finish);
    });
  }

  private run(h: FakeHost, cmd: Command, finish: (p: Partial<JobState> & Pick<JobState, "state" | "summary">) => void): void {
    switch (cmd.op) {
      case "pull":
        h.commit = cmd.args.commit;
        return finish({ state: "succeeded", summary: `checked out ${cmd.args.commit.slice(0, 8)}`, commit: cmd.args.commit });
      case "switch": {
        const before = h.generation;
        if (h.failBuild) {
          h.lastSwitch = { ok: false, error: "configuration does not build", ...(h.commit ? { commit: h.commit } : {}) };
          return finish({ state: "failed", summary: "build failed", error: "configuration does not build", exitCode: 1, generationBefore: before, generationAfter: before });
        }
        const next = Math.max(...h.generations.keys()) + 1;
        h.generations.set(next, h.commit);
        h.generation = next;
        h.lastSwitch = { ok: true };
        const confirmBy = this.confirmSeconds !== undefined ? new Date(Date.now() + this.confirmSeconds * 1000).toISOString() : undefined;
        if (confirmBy) h.awaitingConfirmation = cmd.id;
        const done = () => finish({ state: "succeeded", summary: `switched to generation ${next}`, generationBefore: before, generationAfter: next, ...(confirmBy ? { confirmBy } : {}) });
        if (h.restartDuringSwitchMs === undefined) return done();
        // The agent restarts with the new system: offline for a while, then reports the result.
        this.setOnline(h.opts.host, false);
        this.later(h.restartDuringSwitchMs, () => {
          this.setOnline(h.opts.host, true);
          done();
        });
        return;
      }
      case "test":
        h.lastTest = { generation: h.generation, passed: !h.failTests };
        return finish(h.failTests ? { state: "failed", summary: "1/3 checks failed", exitCode: 1 } : { state: "succeeded", summary: "3/3 checks passed" });
      case "rollback": {
        const target = cmd.args.generation ?? h.generation - 1;
        if (!h.generations.has(target)) return finish({ state: "failed", summary: `no generation ${target}`, exitCode: 1 });
        const before = h.generation;
        h.generation = target;
        h.lastSwitch = { ok: true };
        return finish({ state: "succeeded", summary: `rolled back to generation ${target}`, generationBefore: before, generationAfter: target });
      }
      case "refresh":
        if (h.commit) h.evaluated = { commit: h.commit, path: this.systemOf(h.opts.host, h.commit) };
        return finish({ state: "succeeded", summary: "refreshed" });
      case "confirm":
        if (h.awaitingConfirmation !== cmd.args.job) return finish({ state: "rejected", summary: `switch ${cmd.args.job} is not awaiting confirmation` });
        h.awaitingConfirmation = undefined;
        h.confirmed.push(cmd.args.job);
        return finish({ state: "succeeded", summary: `confirmed switch ${cmd.args.job}` });
      default:
        return finish({ state: "succeeded", summary: `${cmd.op} done` });
    }
  }

  private notify(change: FleetChange): void {
    for (const l of [...this.listeners]) l(change);
  }
}
