/**
 * The fleet the slow rows share: the hub process with the shipped flows, the local GitHub on the
 * fleet's bare repo and three real agents (git, Nix), each reaching the broker through its own TCP
 * proxy (its "network", which a row may cut), run in a worker thread so that the rows' synchronous
 * git and Nix calls never hold the agents' traffic up. Made once per broker kind, bootstrapped (generation
 * 1 everywhere), kept for the next row; a row that fails drops it so the next one starts clean.
 *
 *   const fw = await faultWorld(ctx, "embedded");
 *   const { jobId, commit } = await fw.deploy({ slow: { beta: 20 } });
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JobState, RolloutProgress } from "../../protocol/index.js";
import { LockstepWorld } from "../demo/world.js";
import { WorkerProxy } from "./proxy-worker.js";
import type { Checks, RowContext } from "./row.js";

export const WORLD_HOSTS = ["alpha", "beta", "gamma"];

export interface FaultWorld {
  world: LockstepWorld;
  proxies: Map<string, WorkerProxy>;
  /**
   * Open a lock-update PR and merge-and-deploy it through the API; `slow` makes those hosts' builds
   * of it take that many seconds (room for a fault in the middle of their switch).
   */
  deploy(opts?: { slow?: Record<string, number> }): Promise<{ jobId: string; commit: string }>;
  /** Resolves once `host`'s switch of the rollout runs; with its job id. */
  switchRunning(host: string, jobId: string, timeoutMs?: number): Promise<string>;
  /** The rollout's jobs on a host, by op ("pull 1, switch 1, test 1"). */
  stepsRun(host: string, jobId: string): Record<string, number>;
  /** The rollout's final state (or throws after timeoutMs). */
  end(jobId: string, timeoutMs?: number): Promise<RolloutProgress>;
}

const key = (broker: "embedded" | "mosquitto") => `world-${broker}`;

async function createFaultWorld(broker: "embedded" | "mosquitto", log: (line: string) => void): Promise<FaultWorld & { root: string }> {
  const root = mkdtempSync(join(tmpdir(), `lockstep-faults-world-${broker}-`));
  log(`making the fleet (${broker} broker) in ${root}`);
  const world = await LockstepWorld.create({
    root,
    broker,
    hosts: WORLD_HOSTS,
    hostOptions: { alpha: { priority: 1, canary: true }, beta: { priority: 2 }, gamma: { priority: 3 } },
    hubConfig: {
      previews: { gating: "canary" },
      rollout: {
        strategy: { soakMs: 1000, waves: { size: 2 }, parallelism: 2, healthTimeoutMs: 120_000, stepTimeouts: { pull: 120_000, switch: 300_000, test: 120_000 } },
        onFailure: "halt",
      },
    },
  });
  const proxies = new Map<string, WorkerProxy>();
  try {
    // Each agent reaches the broker only through its own proxy. The hub keeps its MQTT port across restarts.
    const target = new URL(world.externalBroker?.url ?? world.hub.mqttUrl);
    for (const host of WORLD_HOSTS) {
      const proxy = await WorkerProxy.start({ host: target.hostname, port: Number(target.port) });
      proxies.set(host, proxy);
      await world.fleet.stopAgent(host);
      const file = world.fleet.paths(host).config;
      const config = JSON.parse(readFileSync(file, "utf8")) as { broker: { url: string } };
      config.broker.url = `mqtt://127.0.0.1:${proxy.port}`;
      writeFileSync(file, JSON.stringify(config, null, 2));
      await world.fleet.startAgent(host, 60_000);
    }
    log("bootstrapping (pull, switch, test on every host)");
    await world.fleet.bootstrap();
  } catch (err) {
    await world.stop();
    for (const p of proxies.values()) await p.stop();
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
  const rolloutJobs = (host: string, rolloutId: string): JobState[] => [...(world.fleet.jobs.get(host)?.values() ?? [])].filter((j) => j.rolloutId === rolloutId);
  return {
    root,
    world,
    proxies,
    async deploy(opts = {}) {
      for (const h of WORLD_HOSTS) await world.waitForAvailability(h, "online", 60_000);
      for (const [host, s] of Object.entries(opts.slow ?? {})) world.fleet.repo.setBuildDelay(host, s);
      const pr = await world.openLockUpdatePr();
      const res = await world.api("POST", "/api/flake-updates/merge-and-deploy", { pr_number: pr.number });
      if (res.status !== 202) throw new Error(`merge-and-deploy answered ${res.status}: ${JSON.stringify(res.body)}`);
      const b = res.body as { job_id: string; commit: string };
      return { jobId: b.job_id, commit: b.commit };
    },
    async switchRunning(host, jobId, timeoutMs = 180_000) {
      const job = await world.fleet.until(() => rolloutJobs(host, jobId).find((j) => j.op === "switch" && j.state === "running"), timeoutMs, `${host}'s switch of ${jobId} to run`);
      return job.id;
    },
    stepsRun(host, jobId) {
      const out: Record<string, number> = {};
      for (const j of rolloutJobs(host, jobId)) out[j.op] = (out[j.op] ?? 0) + 1;
      return out;
    },
    end: (jobId, timeoutMs = 420_000) => world.waitForRolloutEnd(jobId, timeoutMs),
  };
}

/** The shared fleet for this broker kind (made on first use). */
export function faultWorld(ctx: RowContext, broker: "embedded" | "mosquitto" = "embedded"): Promise<FaultWorld> {
  return ctx.shared(key(broker), () => createFaultWorld(broker, (l) => ctx.log(l)), async (fw) => {
    await fw.world.stop();
    for (const p of fw.proxies.values()) await p.stop();
    if (!process.env.LOCKSTEP_KEEP_TEST_DIRS) rmSync(fw.root, { recursive: true, force: true });
  });
}

export const worldKey = key;

/**
 * Wait for the rollout's end and say what happened on the row: its state (and `host`'s), the steps
 * each host ran, how many hosts are at the merge commit. The row asserts on what it returns.
 */
export async function rolloutOutcome(fw: FaultWorld, c: Checks, jobId: string, commit: string, host?: string): Promise<{ final: RolloutProgress; twice: boolean; atCommit: number }> {
  const final = await fw.end(jobId);
  const steps = stepsSummary(fw, jobId);
  const atCommit = WORLD_HOSTS.filter((h) => fw.world.fleet.checkoutHead(h) === commit).length;
  c.see(`rollout ${final.state}${host ? `, ${host} ${final.hosts[host]?.state}` : ""}; ${steps.text}; ${atCommit}/3 at the merge commit`);
  return { final, twice: steps.twice, atCommit };
}

/** "pull 1, switch 1, test 1" per host, and whether any step ran twice. */
export function stepsSummary(fw: FaultWorld, jobId: string): { text: string; twice: boolean } {
  let twice = false;
  const text = WORLD_HOSTS.map((h) => {
    const steps = fw.stepsRun(h, jobId);
    if (["pull", "switch", "test"].some((op) => (steps[op] ?? 0) > 1)) twice = true;
    return `${h} ${Object.entries(steps).map(([op, n]) => `${op}×${n}`).join(" ")}`;
  }).join(", ");
  return { text, twice };
}
