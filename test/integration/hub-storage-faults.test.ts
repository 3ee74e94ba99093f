/**
 * Storage faults on a real file system (issue 14): a real `lockstep hub` process in its own mount
 * namespace (`unshare -m`, as root) whose data dir is a small tmpfs, with two MQTT agents
 * (test/support/mqtt-fake-agent.ts). Mid-rollout the data dir turns read-only (a read-only bind
 * mount over it, so files already open stay open, as after an errors=remount-ro) and, later, full
 * (ENOSPC: a file fills the tmpfs) while an agent with a last will reconnects (Aedes deletes its
 * stored will: on a full disk that was an unhandled rejection).
 *
 * Expected: the hub stays up and says so (retained hub/storage: fault with the code, the held
 * rollout), refuses a new rollout, publishes no final state it could not store, and once the data
 * dir can be written again resumes the rollout to exactly one final state, without sending a step
 * twice, and writes the audit events it kept between storage.fault and storage.recovered.
 *
 * Needs root, util-linux (unshare, nsenter; scripts/setup.sh installs it) and `npm run build`.
 */
import { execFileSync } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CredentialStore } from "../../broker/credentials.js";
import { RolloutStore } from "../../rollout/store.js";
import { AuditEvent, RolloutHistoryEntry, RolloutProgress, StorageHealthState, Topics, isFinalRolloutState, type FleetExpected } from "../../protocol/index.js";
import { startHubProcess, type HubProcess } from "../demo/hub-process.js";
import { FakeMqttAgent } from "../support/mqtt-fake-agent.js";

const C0 = "a".repeat(40);
const C1 = "b".repeat(40);
const OPERATOR = { name: "storage-op", password: "storage-operator-password" };
const HUB_USER = { name: "storage-hub", password: "storage-hub-password" };
const AGENT_PASSWORD = "storage-agent-password";
const auth = `Basic ${Buffer.from(`${OPERATOR.name}:${OPERATOR.password}`).toString("base64")}`;
const topics = new Topics();

/** Why this machine cannot run the test, or undefined when it can (checked, never skipped silently). */
function mountNamespaceProblem(): string | undefined {
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
class Watch extends EventEmitter {
  storage?: StorageHealthState;
  readonly progress: RolloutProgress[] = [];
  readonly history: RolloutHistoryEntry[] = [];
  readonly events: AuditEvent[] = [];

  constructor(readonly client: MqttClient) {
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

const problem = mountNamespaceProblem();

describe("storage faults on a real file system", () => {
  let seed: string;
  let dataDir: string;
  let hub: HubProcess;
  let watch: Watch;
  let hubClient: MqttClient;
  const agents: Record<string, FakeMqttAgent> = {};
  /** A shell command in the hub's mount namespace (where its data dir is the tmpfs). */
  const inHubNamespace = (script: string): string => execFileSync("nsenter", ["-t", String(hub.child.pid), "-m", "sh", "-c", script], { encoding: "utf8" });
  const auditApi = async (): Promise<AuditEvent[]> => {
    const res = await fetch(`${hub.baseUrl}/api/audit?limit=500`, { headers: { authorization: auth } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { events: AuditEvent[] }).events;
  };
  const auditFile = (): AuditEvent[] =>
    inHubNamespace(`cat ${dataDir}/audit.jsonl`)
      .trim()
      .split("\n")
      .map((l) => AuditEvent.parse(JSON.parse(l)));
  /** The rollout as the hub's store has it (read from a copy of the store's files). */
  const storedRollout = async (id: string) => {
    const copy = mkdtempSync(join(tmpdir(), "lockstep-storage-copy-"));
    try {
      inHubNamespace(`cp -a "${dataDir}/rollout/." "${copy}/"`);
      return await new RolloutStore(copy).load(id);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  };
  const install = (host: string) => watch.client.publishAsync(topics.actions(host), "install", { qos: 1 });
  const rolloutOf = (host: string, after: Set<string>) =>
    watch.until(`a rollout of ${host}`, () => watch.progress.find((p) => !after.has(p.id) && p.hosts[host] !== undefined)?.id);

  beforeAll(async () => {
    if (problem) throw new Error(`this test needs a private mount namespace with a tmpfs: ${problem}`);
    seed = mkdtempSync(join(tmpdir(), "lockstep-storage-seed-"));
    dataDir = mkdtempSync(join(tmpdir(), "lockstep-storage-data-"));
    const store = await CredentialStore.open(join(seed, "credentials.json"));
    await store.add(OPERATOR.name, "operator", OPERATOR.password);
    await store.add(HUB_USER.name, "hub", HUB_USER.password);
    for (const host of ["alpha", "beta"]) await store.add(host, "agent", AGENT_PASSWORD);
    hub = await startHubProcess({
      dataDir,
      env: { LOCKSTEP_LOG_LEVEL: process.env.STORAGE_TEST_LOG_LEVEL ?? "info" },
      // The data dir is a 24 MiB tmpfs that only this hub process (and nsenter) sees.
      wrap: (cmd, args) => ["unshare", ["-m", "--propagation", "private", "sh", "-c", `mount -t tmpfs -o size=24m,mode=0700 lockstep-data "${dataDir}" && cp -a "${seed}/." "${dataDir}/" && exec "$0" "$@"`, cmd, ...args]],
    });
    const operator = await mqtt.connectAsync(hub.mqttUrl, { username: OPERATOR.name, password: OPERATOR.password, protocolVersion: 4 });
    watch = new Watch(operator);
    await operator.subscribeAsync([topics.hubStorage(), topics.allRollouts(), topics.allHistory(), topics.events()], { qos: 1 });
    hubClient = await mqtt.connectAsync(hub.mqttUrl, { username: HUB_USER.name, password: HUB_USER.password, protocolVersion: 4 });
    const expected: FleetExpected = { repo: "github:example/fleet", branch: "main", headCommit: C1, lockHash: "test", pendingUpdate: null, updatedAt: new Date().toISOString() };
    await hubClient.publishAsync(topics.expected(), JSON.stringify(expected), { qos: 1, retain: true });
    for (const host of ["alpha", "beta"]) {
      agents[host] = new FakeMqttAgent({ host, url: hub.mqttUrl, password: AGENT_PASSWORD, topics, commit: C0 });
      await agents[host].start();
    }
    await watch.until("hub/storage ok", () => (watch.storage?.state === "ok" ? true : undefined));
  }, 120_000);

  afterAll(async () => {
    for (const a of Object.values(agents)) await a.stop().catch(() => undefined);
    await watch?.client.endAsync(true).catch(() => undefined);
    await hubClient?.endAsync(true).catch(() => undefined);
    if (process.env.STORAGE_TEST_LOG) require("node:fs").writeFileSync(process.env.STORAGE_TEST_LOG, hub?.output() ?? "");
    await hub?.stop("SIGKILL");
    for (const d of [seed, dataDir]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it("read-only mid-rollout: the rollout is held, not failed; new ones are refused; it ends once after the dir is writable again, and the audit kept what happened", async () => {
    const switching = agents.alpha!.pauseAt("switch");
    await install("alpha");
    const id = await rolloutOf("alpha", new Set());
    await switching.reached;
    // Read-only from here on for every new open (what is open stays open, like errors=remount-ro).
    inHubNamespace(`mount --bind "${dataDir}" "${dataDir}" && mount -o remount,bind,ro "${dataDir}"`);
    switching.release();

    const fault = await watch.until("hub/storage fault with the rollout held", () => (watch.storage?.state === "fault" && watch.storage.heldRollouts.includes(id) ? watch.storage : undefined));
    expect(fault).toMatchObject({ code: "EROFS", dataDir });
    expect(fault.hint).toMatch(/remount the file system .* read-write/);
    expect(fault.faults.map((f) => f.writer)).toContain("rollouts");
    expect(watch.finalStates(id)).toEqual([]);
    expect(await storedRollout(id)).toMatchObject({ finished: false, progress: { state: "running" } });
    // The hub still serves, and keeps what it could not write.
    const inMemory = await auditApi();
    expect(inMemory.map((e) => e.action)).toContain("storage.fault");
    expect(auditFile().map((e) => e.action)).not.toContain("storage.fault");

    // A new rollout is refused while the data dir cannot be written.
    const before = new Set(watch.progress.map((p) => p.id));
    await install("beta");
    await expect.poll(() => hub.output().split("\n").find((l) => l.includes("home assistant install refused")), { timeout: 30_000 }).toMatch(/the hub cannot write its data dir \(EROFS at /);
    expect(watch.progress.filter((p) => !before.has(p.id))).toEqual([]);
    expect(agents.beta!.received).toEqual([]);

    inHubNamespace(`umount "${dataDir}"`);
    await watch.until("hub/storage ok again", () => (watch.storage?.state === "ok" ? true : undefined));
    await watch.until(`rollout ${id}'s history`, () => watch.history.find((h) => h.rolloutId === id));
    expect(watch.finalStates(id)).toEqual(["completed"]);
    expect(watch.history.filter((h) => h.rolloutId === id).map((h) => h.state)).toEqual(["completed"]);
    expect(agents.alpha!.received.map((c) => c.op)).toEqual(["pull", "switch", "test"]); // none twice
    expect(await storedRollout(id)).toMatchObject({ finished: true, progress: { state: "completed" } });

    const written = auditFile().map((e) => e.action);
    const faultAt = written.indexOf("storage.fault");
    const recoveredAt = written.indexOf("storage.recovered");
    expect(faultAt).toBeGreaterThan(-1);
    expect(recoveredAt).toBeGreaterThan(faultAt);
    // What happened during the fault was kept and written in between (the switch's result at least).
    expect(written.slice(faultAt, recoveredAt)).toContain("command.finished");
    expect(written.filter((a) => a === "rollout.finished")).toHaveLength(1);
    expect(hub.child.exitCode).toBeNull();
  }, 180_000);

  it("a full data disk while an agent with a last will reconnects: no unhandled rejection, the hub says ENOSPC, refuses rollouts, and audits the fault once it can write", async () => {
    // Fill the tmpfs (dd stops at ENOSPC), then use up what is left in the pages of open files.
    inHubNamespace(`dd if=/dev/zero of="${dataDir}/fill" bs=64k 2>/dev/null; true`);
    const full = watch.until("hub/storage fault (ENOSPC) from the broker", () => (watch.storage?.faults.some((f) => f.writer === "broker" && f.code === "ENOSPC") ? watch.storage : undefined));
    let filled = false;
    void full.then(() => (filled = true));
    for (let i = 0; i < 500 && !filled; i++) await agents.alpha!.republish();
    const fault = await full;
    expect(fault).toMatchObject({ state: "fault", code: "ENOSPC" });
    expect(fault.hint).toMatch(/free space on the file system of/);
    // Aedes deletes (and stores) the reconnecting agent's will: both fail on this disk. It connects.
    await agents.alpha!.reconnect();
    const known = new Set(watch.progress.map((p) => p.id));
    await install("beta");
    await expect.poll(() => hub.output().split("\n").filter((l) => l.includes("home assistant install refused")).at(-1), { timeout: 30_000 }).toMatch(/cannot write its data dir \(ENOSPC at /);
    expect(watch.progress.filter((p) => !known.has(p.id))).toEqual([]);
    expect((await auditApi()).filter((e) => e.action === "hub.fault")).toEqual([]); // no unhandled rejection
    expect(hub.child.exitCode).toBeNull();

    inHubNamespace(`rm -f "${dataDir}/fill"`);
    await watch.until("hub/storage ok again", () => (watch.storage?.state === "ok" ? true : undefined));
    const written = auditFile();
    const actions = written.map((e) => e.action);
    expect(written.filter((e) => e.action === "storage.fault").map((e) => e.details?.code)).toEqual(["EROFS", "ENOSPC"]);
    expect(actions.lastIndexOf("storage.recovered")).toBeGreaterThan(actions.lastIndexOf("storage.fault"));
    expect(actions).not.toContain("hub.fault");
    // The retained messages the broker could not store while full were stored by the retry.
    await agents.alpha!.republish();
    expect(watch.storage?.state).toBe("ok");
  }, 180_000);
});
