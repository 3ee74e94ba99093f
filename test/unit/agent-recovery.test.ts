import { afterEach, describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import type { JobState } from "../../protocol/index.js";
import { Agent } from "../../agent/agent.js";
import { parseAgentConfig } from "../../agent/config.js";
import { InflightStore, StateStore, type InflightJob } from "../../agent/state.js";
import type { RunnerResult } from "../../agent/switch-runner.js";

/**
 * Restart recovery, with an Agent built in-process: a previous agent process left an in-flight
 * record (and maybe a runner result); the new one must report that job's true outcome once.
 * The broker is unreachable on purpose: recovery must not wait for it.
 */
const agents: Agent[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop()));
});

function setup() {
  const root = mkdtempSync(join(tmpdir(), "lockstep-recovery-"));
  const stateDir = join(root, "state");
  const profiles = join(root, "profiles");
  mkdirSync(join(stateDir, "jobs"), { recursive: true });
  mkdirSync(profiles, { recursive: true });
  for (const g of [1, 2]) {
    mkdirSync(join(root, `system-${g}`));
    symlinkSync(join(root, `system-${g}`), join(profiles, `system-${g}-link`));
  }
  const setGeneration = (g: number) => {
    rmSync(join(profiles, "system"), { force: true });
    symlinkSync(`system-${g}-link`, join(profiles, "system"));
  };
  const config = parseAgentConfig({
    host: "rec",
    broker: { url: "mqtt://127.0.0.1:1" },
    repo: { url: join(root, "no-such-repo"), checkoutDir: join(root, "checkout") },
    stateDir,
    os: { kind: "generic", profile: join(profiles, "system") },
    magicRollback: false, // tested in agent-magic-rollback.test.ts
  });
  const inflight = new InflightStore(join(stateDir, "inflight-job.json"), () => undefined);
  const base: InflightJob = { id: "job-1", op: "switch", acceptedAt: new Date().toISOString(), startedAt: new Date().toISOString(), agentPid: 999_999, requestedBy: "test" };
  const start = async () => {
    const agent = new Agent(config, pino({ level: "silent" }));
    agents.push(agent);
    const finished = new Promise<JobState>((resolve) => agent.once("job-finished", resolve));
    await agent.start();
    return { agent, finished: await finished };
  };
  return { root, stateDir, inflight, base, setGeneration, start, state: () => new StateStore(join(stateDir, "agent-state.json"), () => undefined) };
}

function result(jobId: string, ok: boolean, extra: Partial<RunnerResult> = {}): RunnerResult {
  const at = new Date().toISOString();
  return { jobId, ok, cancelled: false, timedOut: false, exitCode: ok ? 0 : 1, steps: [], startedAt: at, finishedAt: at, ...extra };
}

describe("agent restart recovery", () => {
  it("reports a restart command as succeeded by the new process", async () => {
    const s = setup();
    s.inflight.write({ ...s.base, op: "restart" });
    const { finished } = await s.start();
    expect(finished).toMatchObject({ id: "job-1", op: "restart", state: "succeeded", exitCode: 0 });
    expect(finished.summary).toBe(`agent restarted (pid 999999 -> ${process.pid})`);
    expect(s.inflight.read()).toBeUndefined();
  });

  it("reports a job that never reached the runner as interrupted", async () => {
    const s = setup();
    s.inflight.write({ ...s.base, op: "pull" });
    const { finished } = await s.start();
    expect(finished).toMatchObject({ op: "pull", state: "interrupted", summary: "agent stopped while pull ran; run it again" });
    expect(s.inflight.read()).toBeUndefined();
  });

  it("reads the finished runner's result: a switch that succeeded records its generation", async () => {
    const s = setup();
    s.setGeneration(2);
    const resultFile = join(s.stateDir, "jobs", "job-1.result.json");
    writeFileSync(resultFile, JSON.stringify(result("job-1", true)));
    s.inflight.write({ ...s.base, commit: "a".repeat(40), generationBefore: 1, runnerPid: 999_999, resultFile, logFile: join(s.stateDir, "jobs", "job-1.log") });
    const { finished } = await s.start();
    expect(finished).toMatchObject({ state: "succeeded", summary: "generation 1 -> 2", generationBefore: 1, generationAfter: 2 });
    expect(s.state().state.lastSwitch).toMatchObject({ ok: true, generation: 2, commit: "a".repeat(40) });
    expect(s.inflight.read()).toBeUndefined();
  });

  it("reports the runner's failure with its error line", async () => {
    const s = setup();
    s.setGeneration(1);
    const resultFile = join(s.stateDir, "jobs", "job-1.result.json");
    writeFileSync(resultFile, JSON.stringify(result("job-1", false, { failedStep: "build", errorLine: "error: builder failed" })));
    s.inflight.write({ ...s.base, generationBefore: 1, runnerPid: 999_999, resultFile, logFile: join(s.stateDir, "jobs", "job-1.log") });
    const { finished } = await s.start();
    expect(finished).toMatchObject({ state: "failed", summary: "build failed: error: builder failed", generationAfter: 1 });
  });

  it("without a result, judges by the profile: a rollback that moved the generation succeeded, one that did not was interrupted", async () => {
    const moved = setup();
    moved.setGeneration(1);
    const noFile = (dir: string) => ({ runnerPid: 999_999, resultFile: join(dir, "jobs", "none.json"), logFile: join(dir, "jobs", "none.log") });
    moved.inflight.write({ ...moved.base, op: "rollback", generationBefore: 2, ...noFile(moved.stateDir) });
    expect((await moved.start()).finished).toMatchObject({ state: "succeeded", summary: "rolled back: generation 2 -> 1 (confirmed from the profile after an agent restart)" });

    const stuck = setup();
    stuck.setGeneration(2);
    stuck.inflight.write({ ...stuck.base, op: "rollback", generationBefore: 2, ...noFile(stuck.stateDir) });
    const { finished } = await stuck.start();
    expect(finished).toMatchObject({ state: "interrupted", generationBefore: 2, generationAfter: 2 });
    expect(finished.summary).toMatch(/runner stopped before it finished; still on generation 2/);
  });
});
