/**
 * Magic rollback for the standalone self-update, with real Nix generations and a real broker: a run
 * that switched waits for the hub's confirmation over a connection it opened after the switch. The
 * hub's SwitchConfirmer (rollout/confirmer.ts, on a FleetView) confirms it: the new generation
 * stays. Nobody confirms: the run switches back to the previous generation, puts the checkout back,
 * and reports it. A run killed (SIGKILL, a real `lockstep-agent self-update` process) while it
 * waits is finished by the next one: rolled back once the window has passed, kept when the hub's
 * confirmation came while it was dead.
 */
import { afterAll, describe, expect, it } from "vitest";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import mqtt from "mqtt";
import { nixEnv } from "../fleet/nix-env.js";
import { selfUpdateHost } from "../fleet/self-update-host.js";
import { runSelfUpdate } from "../../agent/self-update/run.js";
import { parseSelfUpdateConfig, type SelfUpdateConfigInput } from "../../agent/self-update/config.js";
import { readProfile } from "../../agent/profile.js";
import { FleetView } from "../../rollout/fleet-view.js";
import { CONFIRMED_BY, SwitchConfirmer } from "../../rollout/confirmer.js";
import { Command, JobState, Topics } from "../../protocol/index.js";
import { readRunRecords } from "../../agent/self-update/runlog.js";
import { statePaths } from "../../agent/config.js";
import { TestFleet } from "../fleet/fleet.js";
import { startTestBroker, type TestBroker } from "../support/brokers.js";

const HOST = "alpha";
const CONFIRM_SECONDS = 4;
const silent = pino({ level: "silent" });
const roots: string[] = [];
afterAll(() => roots.forEach((r) => rmSync(r, { recursive: true, force: true })));

async function setUp(broker: TestBroker, confirmTimeoutSeconds = CONFIRM_SECONDS) {
  const { dir, repo, checkout, profile, baseConfig } = selfUpdateHost("lockstep-selfupdate-confirm-", HOST);
  roots.push(dir);
  const agent = await broker.credentials("agent", HOST);
  const passwordFile = join(dir, "broker-password");
  writeFileSync(passwordFile, `${agent.password}\n`, { mode: 0o600 });
  const input: SelfUpdateConfigInput = {
    ...baseConfig,
    health: { ...baseConfig.health, systemState: { argv: ["echo", "running"] } },
    reboot: { enabled: false },
    broker: { url: broker.url, username: agent.username, passwordFile },
    confirmTimeoutSeconds,
    nextRunArgv: null,
  };
  const configFile = join(dir, "self-update.json");
  writeFileSync(configFile, JSON.stringify(input));
  return { repo, checkout, profile, configFile, config: parseSelfUpdateConfig(input) };
}

const head = (dir: string) => execFileSync("git", ["rev-parse", "HEAD"], { cwd: dir, encoding: "utf8" }).trim();

/** Every job state the host publishes, in order. */
async function watchJobs(broker: TestBroker): Promise<{ states: JobState[]; close: () => Promise<void> }> {
  const client = await mqtt.connectAsync(broker.url, { clientId: `jobs-${Date.now()}`, ...(await broker.credentials("viewer", "job-watcher")) });
  const states: JobState[] = [];
  client.on("message", (_t, p) => p.length > 0 && states.push(JobState.parse(JSON.parse(p.toString()))));
  await client.subscribeAsync(new Topics().allJobs(), { qos: 1 });
  return { states, close: () => client.endAsync() };
}

/** `lockstep-agent self-update` as its own process (dist/, like the agent daemon in the fleet tests). */
function selfUpdateProcess(configFile: string) {
  const child = spawn(process.execPath, [TestFleet.agentCliPath(), "self-update", "--config", configFile, "--json"], { env: nixEnv(), stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal, stderr })));
  return { child, exited };
}

/** Start a run, SIGKILL it once its switch awaits the hub's confirmation; returns that job. */
async function killWhileWaiting(configFile: string, stateDir: string, states: JobState[]): Promise<JobState> {
  const run = selfUpdateProcess(configFile);
  // Switched and waiting: its job says until when.
  await expect.poll(() => states.find((s) => s.op === "self-update" && s.confirmBy), { timeout: 180_000 }).toBeDefined();
  expect(existsSync(statePaths(stateDir).selfUpdateConfirmation)).toBe(true);
  run.child.kill("SIGKILL");
  expect((await run.exited).signal).toBe("SIGKILL");
  return states.find((s) => s.op === "self-update" && s.confirmBy)!;
}

/** The commands the hub sends to the host (to see a confirm go out while no run listens). */
async function watchCommands(broker: TestBroker): Promise<{ commands: Command[]; close: () => Promise<void> }> {
  const client = await mqtt.connectAsync(broker.url, { clientId: `commands-${Date.now()}`, ...(await broker.credentials("hub", "command-watcher")) });
  const commands: Command[] = [];
  client.on("message", (_t, p) => commands.push(Command.parse(JSON.parse(p.toString()))));
  await client.subscribeAsync(new Topics().commands(HOST), { qos: 1 });
  return { commands, close: () => client.endAsync() };
}

describe("self-update magic rollback (real Nix, real broker)", () => {
  it("without the hub's confirmation the run switches back and puts the checkout back, and says so", async () => {
    const broker = await startTestBroker();
    const jobs = await watchJobs(broker);
    try {
      const h = await setUp(broker);
      const before = head(h.checkout);
      h.repo.bumpInput("nixpkgs");
      const record = await runSelfUpdate(h.config, { env: nixEnv(), log: silent });
      expect(record.outcome, record.error).toBe("rolled-back");
      expect(record.summary).toBe(`rolled-back: no confirmation within ${CONFIRM_SECONDS} s; generation 2 -> 1; checkout back at ${before.slice(0, 8)}`);
      expect(record.steps.slice(-3).map((s) => [s.name, s.status])).toEqual([["switch", "ok"], ["confirm", "failed"], ["rollback", "ok"]]);
      expect(readProfile(h.profile).generation).toBe(1);
      expect(head(h.checkout)).toBe(before);
      // The hub saw the switch waiting for its confirmation, then the rollback.
      await expect.poll(() => jobs.states.filter((s) => s.id === record.id).map((s) => s.state)).toEqual(["running", "succeeded", "failed"]);
      const waiting = jobs.states.find((s) => s.id === record.id && s.state === "succeeded")!;
      expect(waiting.confirmBy).toBeDefined();
      expect(waiting.summary).toMatch(/^switched to generation 2; awaiting the hub's confirmation until /);
      expect(jobs.states.at(-1)!.summary).toBe(record.summary);
    } finally {
      await jobs.close();
      await broker.stop();
    }
  }, 300_000);

  it("the hub's SwitchConfirmer confirms it once the switched run reports: the new generation stays", async () => {
    const broker = await startTestBroker();
    const jobs = await watchJobs(broker);
    const view = new FleetView({ url: broker.url, ...(await broker.credentials("hub", "confirmer-test")) });
    await view.start();
    const confirmer = new SwitchConfirmer(view, silent);
    try {
      const h = await setUp(broker);
      h.repo.bumpInput("nixpkgs");
      const record = await runSelfUpdate(h.config, { env: nixEnv(), log: silent });
      expect(record.outcome, record.error).toBe("succeeded");
      expect(record.summary).toBe(`switched to generation 2; confirmed by ${CONFIRMED_BY}`);
      expect(record.steps.map((s) => [s.name, s.status])).toContainEqual(["confirm", "ok"]);
      expect(readProfile(h.profile).generation).toBe(2);
      // The confirm command the hub sent was answered by the run itself.
      await expect.poll(() => jobs.states.find((s) => s.op === "confirm")).toMatchObject({ state: "succeeded", requestedBy: CONFIRMED_BY, summary: `confirmed self-update ${record.id}: keeping generation 2` });
      await expect.poll(() => jobs.states.filter((s) => s.id === record.id).at(-1)?.summary).toBe(record.summary);
    } finally {
      confirmer.stop();
      await view.stop();
      await jobs.close();
      await broker.stop();
    }
  }, 300_000);

  it("a run killed while it waits for the confirmation is rolled back by the next run once the window has passed", async () => {
    const broker = await startTestBroker();
    const jobs = await watchJobs(broker);
    try {
      const h = await setUp(broker, 6);
      const before = head(h.checkout);
      h.repo.bumpInput("nixpkgs");
      const waiting = await killWhileWaiting(h.configFile, h.config.stateDir, jobs.states);
      expect(readProfile(h.profile).generation).toBe(2); // the killed run kept the switch
      expect(readRunRecords(h.config.stateDir)).toEqual([]); // and wrote no record

      // systemd starts it again (Restart=on-abnormal); nobody confirms.
      const second = selfUpdateProcess(h.configFile);
      const end = await second.exited;
      expect(end.code, end.stderr).toBe(5);
      expect(readProfile(h.profile).generation).toBe(1);
      expect(head(h.checkout)).toBe(before);
      expect(existsSync(statePaths(h.config.stateDir).selfUpdateConfirmation)).toBe(false);
      // One record, the killed run's, finished: rolled back, never a second update.
      const [record, ...others] = readRunRecords(h.config.stateDir);
      expect(others).toEqual([]);
      expect(record!.id).toBe(waiting.id);
      expect(record!.outcome).toBe("rolled-back");
      expect(record!.summary).toBe(`rolled-back: no confirmation within 6 s; generation 2 -> 1; checkout back at ${before.slice(0, 8)}`);
      expect(record!.steps.map((s) => [s.name, s.status])).toEqual([["lock", "ok"], ["health", "ok"], ["update", "ok"], ["build", "ok"], ["switch", "ok"], ["lock", "ok"], ["confirm", "failed"], ["rollback", "ok"]]);
      expect(record!.steps.find((s) => s.name === "confirm")!.detail).toMatch(/^finished by pid \d+ after the waiting run \(pid \d+\) ended: no confirmation within 6 s$/);
      await expect.poll(() => jobs.states.filter((s) => s.id === waiting.id).at(-1)).toMatchObject({ state: "failed", summary: record!.summary });
    } finally {
      await jobs.close();
      await broker.stop();
    }
  }, 400_000);

  it("a confirmation sent while the waiting run is dead reaches the run that finishes it: the switch stays", async () => {
    const broker = await startTestBroker();
    const jobs = await watchJobs(broker);
    const commands = await watchCommands(broker);
    const view = new FleetView({ url: broker.url, ...(await broker.credentials("hub", "confirmer-test")) });
    try {
      const h = await setUp(broker, 120);
      h.repo.bumpInput("nixpkgs");
      const waiting = await killWhileWaiting(h.configFile, h.config.stateDir, jobs.states);
      // Only now does the hub confirm: nobody is connected to take it.
      await view.start();
      const confirmer = new SwitchConfirmer(view, silent);
      try {
        await expect.poll(() => commands.commands.find((c) => c.op === "confirm"), { timeout: 60_000 }).toMatchObject({ args: { job: waiting.id } });
        const second = selfUpdateProcess(h.configFile);
        const end = await second.exited;
        expect(end.code, end.stderr).toBe(0);
      } finally {
        confirmer.stop();
      }
      expect(readProfile(h.profile).generation).toBe(2);
      const [record, ...others] = readRunRecords(h.config.stateDir);
      expect(others).toEqual([]);
      expect(record).toMatchObject({ id: waiting.id, outcome: "succeeded", summary: `switched to generation 2; confirmed by ${CONFIRMED_BY}` });
      expect(existsSync(statePaths(h.config.stateDir).selfUpdateConfirmation)).toBe(false);
      // The confirm the hub sent once was the one the finishing run took.
      expect(commands.commands.filter((c) => c.op === "confirm")).toHaveLength(1);
      await expect.poll(() => jobs.states.find((s) => s.op === "confirm")).toMatchObject({ state: "succeeded", summary: `confirmed self-update ${waiting.id}: keeping generation 2` });
    } finally {
      await view.stop();
      await commands.close();
      await jobs.close();
      await broker.stop();
    }
  }, 400_000);
});
