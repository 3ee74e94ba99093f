/**
 * A real `lockstep hub` process whose data dir is a small tmpfs in its own mount namespace
 * (`unshare -m`, as root), with MQTT agents that need no Nix or git (mqtt-fake-agent.ts), an
 * operator's MQTT client that watches hub/storage, rollouts, history and the audit, and helpers to
 * break the data dir from inside that namespace. Used by test/integration/hub-storage-faults.test.ts
 * and the fault matrix's storage and step rows (test/faults/rows/storage.ts, steps.ts).
 *
 *   const problem = mountNamespaceProblem();          // why this machine cannot, or undefined
 *   const h = await StorageFaultHub.start({ hosts: ["alpha", "beta"] });
 *   h.inHubNamespace(`mount -o remount,ro ...`);
 *   await h.stop();
 *
 * Needs root, util-linux (unshare, nsenter; scripts/setup.sh installs it) and `npm run build`.
 */
import { execFileSync } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { CredentialStore } from "../../broker/credentials.js";
import { RolloutStore } from "../../rollout/store.js";
import { AuditEvent, RolloutHistoryEntry, RolloutProgress, StorageHealthState, Topics, isFinalRolloutState, type FleetExpected } from "../../protocol/index.js";
import { startHubProcess, type HubProcess } from "../demo/hub-process.js";
import { FakeMqttAgent } from "./mqtt-fake-agent.js";

export const C0 = "a".repeat(40);
export const C1 = "b".repeat(40);
export const OPERATOR = { name: "storage-op", password: "storage-operator-password" };
const HUB_USER = { name: "storage-hub", password: "storage-hub-password" };
const AGENT_PASSWORD = "storage-agent-password";

/** Why this machine cannot run a hub in its own mount namespace, or undefined when it can. */
export function mountNamespaceProblem(): string | undefined {
  if (process.getuid?.() !== 0) return "it must run as root (unshare -m and mount need CAP_SYS_ADMIN)";
  try {
    execFileSync("unshare", ["-m", "--propagation", "private", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k probe $d && umount $d && rmdir $d"], { stdio: "pipe" });
    execFileSync("nsenter", ["--version"], { stdio: "pipe" });
  } catch (err) {
    return `unshare/nsenter or a tmpfs mount failed (install util-linux: scripts/setup.sh does): ${(err as Error).message}`;
  }
  return undefined;
}

/** What the operator's MQTT client saw, with a wait that re-checks on every message. */
export class Watch extends EventEmitter {
  storage?: StorageHealthState;
  readonly progress: RolloutProgress[] = [];
  readonly history: RolloutHistoryEntry[] = [];
  readonly events: AuditEvent[] = [];

  constructor(
    readonly client: MqttClient,
    topics: Topics,
  ) {
    super();
    client.on("message", (topic, payload) => {
      const parsed = topics.parse(topic);
      const json = (): unknown => JSON.parse(payload.toString());
      if (payload.length === 0) return;
      if (parsed?.kind === "hubStorage") this.storage = StorageHealthState.parse(json());
      else if (parsed?.kind === "rollout") this.progress.push(RolloutProgress.parse(json()));
      else if (parsed?.kind === "history") this.history.push(RolloutHistoryEntry.parse(json()));
      else if (parsed?.kind === "events") this.events.push(AuditEvent.parse(json()));
      this.emit("change");
    });
  }

  /** Resolves with check()'s value once it is not undefined; `what` names it in the failure. */
  until<T>(what: string, check: () => T | undefined, timeoutMs = 60_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        const v = check();
        if (v === undefined) return;
        clearTimeout(timer);
        this.off("change", attempt);
        resolve(v);
      };
      const timer = setTimeout(() => {
        this.off("change", attempt);
        reject(new Error(`gave up waiting for ${what}`));
      }, timeoutMs);
      this.on("change", attempt);
      attempt();
    });
  }

  finalStates(id: string): string[] {
    return [...new Set(this.progress.filter((p) => p.id === id && isFinalRolloutState(p.state)).map((p) => p.state))];
  }
}

export interface StorageFaultHubOptions {
  hosts: string[];
  /** The hub's config file (e.g. rollout defaults); none by default. */
  config?: Record<string, unknown>;
  logLevel?: string;
}

export class StorageFaultHub {
  readonly topics = new Topics();
  readonly auth = `Basic ${Buffer.from(`${OPERATOR.name}:${OPERATOR.password}`).toString("base64")}`;

  private constructor(
    readonly hub: HubProcess,
    readonly dataDir: string,
    private readonly seed: string,
    readonly watch: Watch,
    private readonly hubClient: MqttClient,
    readonly agents: Record<string, FakeMqttAgent>,
  ) {}

  /** Start the hub in its own mount namespace on a 24 MiB tmpfs, the watcher and the agents; waits for hub/storage ok. */
  static async start(o: StorageFaultHubOptions): Promise<StorageFaultHub> {
    const problem = mountNamespaceProblem();
    if (problem) throw new Error(`this needs a private mount namespace with a tmpfs: ${problem}`);
    const topics = new Topics();
    const seed = mkdtempSync(join(tmpdir(), "lockstep-storage-seed-"));
    const dataDir = mkdtempSync(join(tmpdir(), "lockstep-storage-data-"));
    const started: Array<() => unknown> = [() => rmSync(seed, { recursive: true, force: true }), () => rmSync(dataDir, { recursive: true, force: true })];
    // A half-built world stops what it started.
    const undo = async () => {
      for (const fn of started.reverse()) await Promise.resolve(fn()).catch(() => undefined);
    };
    try {
      const store = await CredentialStore.open(join(seed, "credentials.json"));
      await store.add(OPERATOR.name, "operator", OPERATOR.password);
      await store.add(HUB_USER.name, "hub", HUB_USER.password);
      for (const host of o.hosts) await store.add(host, "agent", AGENT_PASSWORD);
      let configFile: string | undefined;
      if (o.config) {
        configFile = join(seed, "hub-config.json");
        writeFileSync(configFile, JSON.stringify(o.config));
      }
      const hub = await startHubProcess({
        dataDir,
        ...(configFile ? { configFile } : {}),
        env: { LOCKSTEP_LOG_LEVEL: o.logLevel ?? "info" },
        // The data dir is a 24 MiB tmpfs that only this hub process (and nsenter) sees.
        wrap: (cmd, args) => ["unshare", ["-m", "--propagation", "private", "sh", "-c", `mount -t tmpfs -o size=24m,mode=0700 lockstep-data "${dataDir}" && cp -a "${seed}/." "${dataDir}/" && exec "$0" "$@"`, cmd, ...args]],
      });
      started.push(() => hub.stop("SIGKILL"));
      const operator = await mqtt.connectAsync(hub.mqttUrl, { username: OPERATOR.name, password: OPERATOR.password, protocolVersion: 4 });
      started.push(() => operator.endAsync(true));
      const watch = new Watch(operator, topics);
      await operator.subscribeAsync([topics.hubStorage(), topics.allRollouts(), topics.allHistory(), topics.events()], { qos: 1 });
      const hubClient = await mqtt.connectAsync(hub.mqttUrl, { username: HUB_USER.name, password: HUB_USER.password, protocolVersion: 4 });
      started.push(() => hubClient.endAsync(true));
      const expected: FleetExpected = { repo: "github:example/fleet", branch: "main", headCommit: C1, lockHash: "test", pendingUpdate: null, updatedAt: new Date().toISOString() };
      await hubClient.publishAsync(topics.expected(), JSON.stringify(expected), { qos: 1, retain: true });
      const agents: Record<string, FakeMqttAgent> = {};
      for (const host of o.hosts) {
        const agent = new FakeMqttAgent({ host, url: hub.mqttUrl, password: AGENT_PASSWORD, topics, commit: C0 });
        started.push(() => agent.stop());
        await agent.start();
        agents[host] = agent;
      }
      await watch.until("hub/storage ok", () => (watch.storage?.state === "ok" ? true : undefined));
      return new StorageFaultHub(hub, dataDir, seed, watch, hubClient, agents);
    } catch (err) {
      await undo();
      throw err;
    }
  }

  /** A shell command in the hub's mount namespace (where its data dir is the tmpfs). */
  inHubNamespace(script: string): string {
    return execFileSync("nsenter", ["-t", String(this.hub.child.pid), "-m", "sh", "-c", script], { encoding: "utf8" });
  }

  /** Read-only from here on for every new open (what is open stays open, like errors=remount-ro). */
  makeReadOnly(): void {
    this.inHubNamespace(`mount --bind "${this.dataDir}" "${this.dataDir}" && mount -o remount,bind,ro "${this.dataDir}"`);
  }

  /** Undo makeReadOnly(). */
  makeWritable(): void {
    this.inHubNamespace(`umount "${this.dataDir}"`);
  }

  /** Fill the tmpfs (dd stops at ENOSPC); freeSpace() removes the filler. */
  fill(): void {
    this.inHubNamespace(`dd if=/dev/zero of="${this.dataDir}/fill" bs=64k 2>/dev/null; true`);
  }

  freeSpace(): void {
    this.inHubNamespace(`rm -f "${this.dataDir}/fill"`);
  }

  /** The audit as the hub serves it (what it keeps in memory too). */
  async auditApi(): Promise<AuditEvent[]> {
    const res = await fetch(`${this.hub.baseUrl}/api/audit?limit=500`, { headers: { authorization: this.auth } });
    if (res.status !== 200) throw new Error(`GET /api/audit answered ${res.status}`);
    return ((await res.json()) as { events: AuditEvent[] }).events;
  }

  /** The audit as the hub wrote it to its data dir. */
  auditFile(): AuditEvent[] {
    return this.inHubNamespace(`cat ${this.dataDir}/audit.jsonl`)
      .trim()
      .split("\n")
      .map((l) => AuditEvent.parse(JSON.parse(l)));
  }

  /** The rollout as the hub's store has it (read from a copy of the store's files). */
  async storedRollout(id: string) {
    const copy = mkdtempSync(join(tmpdir(), "lockstep-storage-copy-"));
    try {
      this.inHubNamespace(`cp -a "${this.dataDir}/rollout/." "${copy}/"`);
      return await new RolloutStore(copy).load(id);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  }

  /** Home Assistant's "install" action for a host: the hub starts a rollout of it (or logs why not). */
  async install(host: string): Promise<void> {
    await this.watch.client.publishAsync(this.topics.actions(host), "install", { qos: 1 });
  }

  /** The id of the first rollout of `host` not in `after`. */
  rolloutOf(host: string, after: Set<string>, timeoutMs?: number): Promise<string> {
    return this.watch.until(`a rollout of ${host}`, () => this.watch.progress.find((p) => !after.has(p.id) && p.hosts[host] !== undefined)?.id, timeoutMs);
  }

  /**
   * Install on `host` with its agent held at `op` (the job "running"): resolves once the host is
   * there, with the rollout's id and the hold's release (released at once when it never gets there).
   */
  async installHeldAt(host: string, op: string): Promise<{ id: string; release: () => void }> {
    const hold = this.agents[host]!.pauseAt(op);
    try {
      const known = this.knownRollouts();
      await this.install(host);
      const id = await this.rolloutOf(host, known);
      await hold.reached;
      return { id, release: hold.release };
    } catch (err) {
      hold.release();
      throw err;
    }
  }

  /** The ids of every rollout seen so far. */
  knownRollouts(): Set<string> {
    return new Set(this.watch.progress.map((p) => p.id));
  }

  /** The last line of the hub's output that says a Home Assistant install was refused. */
  lastInstallRefusal(): string | undefined {
    return this.hub
      .output()
      .split("\n")
      .filter((l) => l.includes("home assistant install refused"))
      .at(-1);
  }

  async stop(): Promise<void> {
    for (const a of Object.values(this.agents)) await a.stop().catch(() => undefined);
    await this.watch.client.endAsync(true).catch(() => undefined);
    await this.hubClient.endAsync(true).catch(() => undefined);
    await this.hub.stop("SIGKILL");
    for (const d of [this.seed, this.dataDir]) rmSync(d, { recursive: true, force: true });
  }
}
