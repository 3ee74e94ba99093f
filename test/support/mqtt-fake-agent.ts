/**
 * A Lockstep agent's MQTT conversation without Nix or git, for tests of a real hub process: a
 * persistent session with an "offline" will, retained online/info/compartments, and commands run as
 * jobs (accepted → running → succeeded, retained): pull moves the commit, switch adds a generation,
 * test marks the tests green on it. A test can hold an op at "running" (`pauseAt`) to act mid-step,
 * or lose an op's final state on its way (`loseFinal`). Like the real agent, it keeps its jobs' final
 * states and answers `report {job}` by publishing the job's state again (or fails the report when it
 * keeps no such job).
 */
import mqtt, { type MqttClient } from "mqtt";
import { agentClientId, Command, COMPARTMENTS, decodeJson, type Compartment, type HostInfo, type JobState, type Topics } from "../../protocol/index.js";

export interface FakeMqttAgentOptions {
  host: string;
  url: string;
  password: string;
  topics: Topics;
  commit: string;
  generation?: number;
}

export class FakeMqttAgent {
  readonly host: string;
  private client?: MqttClient;
  commit: string;
  generation: number;
  /** Every command received, in order. */
  readonly received: Command[] = [];
  private readonly pauses = new Map<string, { reached: () => void; release: Promise<void> }>();
  private readonly losing = new Set<string>();
  /** The final state of every job run (its job history), by job id. */
  readonly history = new Map<string, JobState>();
  private readonly startedAt = new Date().toISOString();

  constructor(private readonly o: FakeMqttAgentOptions) {
    this.host = o.host;
    this.commit = o.commit;
    this.generation = o.generation ?? 1;
  }

  async start(): Promise<void> {
    const t = this.o.topics;
    const client = await mqtt.connectAsync(this.o.url, {
      clientId: agentClientId(this.host),
      clean: false,
      username: this.host,
      password: this.o.password,
      protocolVersion: 4,
      reconnectPeriod: 500,
      will: { topic: t.availability(this.host), payload: Buffer.from("offline"), qos: 1, retain: true },
    });
    this.client = client;
    client.on("message", (topic, payload) => {
      if (topic !== t.commands(this.host)) return;
      const cmd = decodeJson(Command, payload);
      if (cmd.ok) void this.run(cmd.value);
    });
    await client.subscribeAsync(t.commands(this.host), { qos: 1 });
    await this.republish();
  }

  /** Drop the connection without DISCONNECT (the broker publishes the will) and connect again. */
  async reconnect(timeoutMs = 30_000): Promise<void> {
    this.client?.stream.destroy();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.host}: the broker did not accept the reconnect within ${timeoutMs} ms`)), timeoutMs);
      this.client!.once("connect", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    await this.republish();
  }

  /** Hold the next job of `op` at "running" until the returned release() is called. */
  pauseAt(op: string): { reached: Promise<void>; release: () => void } {
    let reached!: () => void;
    let release!: () => void;
    const reachedP = new Promise<void>((r) => (reached = r));
    this.pauses.set(op, { reached, release: new Promise<void>((r) => (release = r)) });
    return { reached: reachedP, release };
  }

  /** The next job of `op` runs to its end but its final state is not published (kept in the history). */
  loseFinal(op: string): void {
    this.losing.add(op);
  }

  async stop(): Promise<void> {
    await this.client?.endAsync(true);
  }

  private async run(cmd: Command): Promise<void> {
    this.received.push(cmd);
    const acceptedAt = new Date().toISOString();
    const job: JobState = { id: cmd.id, host: this.host, op: cmd.op, state: "accepted", summary: `${cmd.op} accepted`, acceptedAt, ...(cmd.rolloutId ? { rolloutId: cmd.rolloutId } : {}) };
    await this.publishJob(job);
    await this.publishJob({ ...job, state: "running", summary: `${cmd.op} running`, startedAt: new Date().toISOString() });
    if (cmd.op === "report") return this.report(cmd, job);
    const pause = this.pauses.get(cmd.op);
    if (pause) {
      this.pauses.delete(cmd.op);
      pause.reached();
      await pause.release;
    }
    const done: JobState = { ...job, state: "succeeded", summary: `${cmd.op} done`, startedAt: acceptedAt, finishedAt: new Date().toISOString() };
    if (cmd.op === "pull") this.commit = cmd.args.commit ?? this.commit;
    if (cmd.op === "switch") {
      done.generationBefore = this.generation;
      this.generation += 1;
      done.generationAfter = this.generation;
    }
    await this.republish();
    this.history.set(cmd.id, done);
    if (this.losing.delete(cmd.op)) return;
    await this.publishJob(done);
  }

  /** `report {job}`: the job's state again from the history, or a failed report. */
  private async report(cmd: Command, job: JobState): Promise<void> {
    const wanted = "job" in cmd.args && typeof cmd.args.job === "string" ? cmd.args.job : undefined;
    const kept = wanted ? this.history.get(wanted) : undefined;
    if (kept) await this.publishJob(kept);
    const finishedAt = new Date().toISOString();
    await this.publishJob(kept ? { ...job, state: "succeeded", summary: `reported ${kept.id}`, finishedAt } : { ...job, state: "failed", summary: `no job ${wanted ?? "(none)"} in the history`, finishedAt });
  }

  private async publishJob(job: JobState): Promise<void> {
    await this.client!.publishAsync(this.o.topics.job(this.host, job.id), JSON.stringify(job), { qos: 1, retain: true });
  }

  /** Publish availability, info and compartments again (retained). */
  async republish(): Promise<void> {
    const t = this.o.topics;
    const now = new Date().toISOString();
    const info: HostInfo = { host: this.host, hostname: this.host, os: "nixos", agentVersion: "0.0.0-test", branch: "main", commit: this.commit, generation: this.generation, tags: [], priority: 100, canary: false, hold: false, startedAt: this.startedAt, updatedAt: now };
    await this.client!.publishAsync(t.availability(this.host), "online", { qos: 1, retain: true });
    await this.client!.publishAsync(t.info(this.host), JSON.stringify(info), { qos: 1, retain: true });
    for (const name of COMPARTMENTS) {
      const c: Compartment = { status: "ok", summary: `${name} ok`, checkedAt: now, generation: this.generation };
      await this.client!.publishAsync(t.compartment(this.host, name), JSON.stringify(c), { qos: 1, retain: true });
    }
  }
}
