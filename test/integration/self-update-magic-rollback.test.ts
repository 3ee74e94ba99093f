/**
 * Magic rollback for the standalone self-update, with real Nix generations and a real broker: a run
 * that switched waits for the hub's confirmation over a connection it opened after the switch. The
 * hub's SwitchConfirmer (rollout/confirmer.ts, on a FleetView) confirms it: the new generation
 * stays. Nobody confirms: the run switches back to the previous generation, puts the checkout back,
 * and reports it.
 */
import { afterAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
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
import { JobState, Topics } from "../../protocol/index.js";
import { startTestBroker, type TestBroker } from "../support/brokers.js";

const HOST = "alpha";
const CONFIRM_SECONDS = 4;
const silent = pino({ level: "silent" });
const roots: string[] = [];
afterAll(() => roots.forEach((r) => rmSync(r, { recursive: true, force: true })));

async function setUp(broker: TestBroker) {
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
    confirmTimeoutSeconds: CONFIRM_SECONDS,
    nextRunArgv: null,
  };
  return { repo, checkout, profile, config: parseSelfUpdateConfig(input) };
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
});
