/**
 * Rollout engine benchmarks on the in-memory fake fleet, with the durable store writing to a temp
 * dir on the real disk (fsync included):
 * - 500 hosts whose jobs take no time: plan time, run time, commands vs. store writes, heap growth;
 * - 1,000 hosts whose steps take 0.1 s and 1 s: wall time ÷ critical path (the time the plan
 *   needs when bookkeeping costs nothing: per phase, its rounds of `parallelism` hosts times
 *   pull + switch + test). What is above 1.0 is the engine's and the store's overhead.
 *
 *   node dist/test/bench/rollout.js                 prints the figures as JSON
 *   node dist/test/bench/rollout.js --ratio 100 3   only the ratio row at 100 ms steps, 3 times
 *     (add --cpu-prof to node to profile the engine and the store during those runs)
 *
 * Everything is bounded (step timeouts of 30 s, no soak), so it stops by itself.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RolloutEngine } from "../../rollout/engine.js";
import { RolloutPlanner } from "../../rollout/planner.js";
import { RolloutStore } from "../../rollout/store.js";
import { FakeFleet } from "../support/fake-fleet.js";

const COMMIT = "9".repeat(40);
/** pull, switch, test: the steps each host waits for (no confirm: the fake agents ask for none). */
const STEPS_PER_HOST = 3;

const round = (n: number, digits = 1) => Number(n.toFixed(digits));

interface RunOptions {
  hosts: number;
  latencyMs: number;
  parallelism: number;
}

async function runOnce(o: RunOptions) {
  const dir = await mkdtemp(join(tmpdir(), "lockstep-bench-rollout-"));
  const fleet = new FakeFleet({
    hosts: Array.from({ length: o.hosts }, (_, i) => ({ host: `host-${String(i).padStart(4, "0")}`, priority: i % 10, canary: i === 0 })),
    latencyMs: o.latencyMs,
    expectedHead: COMMIT,
  });
  try {
    const store = new RolloutStore(dir);
    global.gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    const timeout = Math.max(30_000, o.latencyMs * 10);
    const plan = new RolloutPlanner().plan(
      {
        commit: COMMIT,
        strategy: { soakMs: 0, waves: { percent: 25 }, parallelism: o.parallelism, stepTimeouts: { pull: timeout, switch: timeout, test: timeout }, healthTimeoutMs: timeout },
      },
      fleet.hosts(),
    );
    const planMs = performance.now() - t0;
    const engine = new RolloutEngine({ fleet, store, progressIntervalMs: 250 });
    let progressEvents = 0;
    let auditEvents = 0;
    engine.on("progress", () => progressEvents++);
    engine.on("audit", () => auditEvents++);
    const t1 = performance.now();
    const final = await engine.run(plan, "bench");
    const runMs = performance.now() - t1;
    const heapAfter = process.memoryUsage().heapUsed;
    if (final.state !== "completed" || final.counts.succeeded !== o.hosts) throw new Error(`benchmark rollout did not complete: ${final.summary}`);
    const rounds = plan.phases.reduce((n, p) => n + Math.ceil(p.hosts.length / Math.min(o.parallelism, p.hosts.length)), 0);
    return { plan, planMs, runMs, criticalMs: rounds * STEPS_PER_HOST * o.latencyMs, commands: fleet.commands.length, store, progressEvents, auditEvents, heapGrowth: heapAfter - heapBefore };
  } finally {
    fleet.close();
    await rm(dir, { recursive: true, force: true });
  }
}

export async function benchRollout(): Promise<Record<string, number>> {
  const hosts = 500;
  const r = await runOnce({ hosts, latencyMs: 0, parallelism: 50 });
  const figures: Record<string, number> = {
    hosts,
    phases: r.plan.phases.length,
    planMs: round(r.planMs, 2),
    runMs: round(r.runMs),
    msPerHost: round(r.runMs / hosts, 2),
    commands: r.commands,
    ...storeFigures(r.store),
    progressEvents: r.progressEvents,
    auditEvents: r.auditEvents,
    heapGrowthMB: round((r.heapGrowth) / 1_048_576),
    rssMB: round(process.memoryUsage().rss / 1_048_576),
  };
  // 1,000 hosts with real step durations: how far the wall time is above the critical path.
  for (const [label, latencyMs] of [["100ms", 100], ["1s", 1000]] as const) Object.assign(figures, await benchRolloutRatio(latencyMs, label));
  return figures;
}

/** One row of the ratio: 1,000 hosts whose steps take `latencyMs`, parallelism 100. */
export async function benchRolloutRatio(latencyMs: number, label = `${latencyMs}ms`): Promise<Record<string, number>> {
  const c = await runOnce({ hosts: 1000, latencyMs, parallelism: 100 });
  return {
    [`1000h ${label} steps wallS`]: round(c.runMs / 1000, 2),
    [`1000h ${label} steps criticalPathS`]: round(c.criticalMs / 1000, 2),
    [`1000h ${label} steps ratio`]: round(c.runMs / c.criticalMs, 3),
  };
}

function storeFigures(store: RolloutStore): Record<string, number> {
  const s = store.stats;
  return { storeSnapshots: s.snapshots, storeLogWrites: s.logWrites, storeLogSyncs: s.logSyncs, storeLogKB: round(s.logBytes / 1024) };
}

if (require.main === module) {
  const ratioAt = process.argv.indexOf("--ratio");
  const run =
    ratioAt < 0
      ? benchRollout()
      : (async () => {
          const latencyMs = Number(process.argv[ratioAt + 1] ?? 100);
          const times = Number(process.argv[ratioAt + 2] ?? 1);
          const rows: Array<Record<string, number>> = [];
          for (let i = 0; i < times; i++) rows.push(await benchRolloutRatio(latencyMs));
          return rows;
        })();
  run.then(
    (figures) => console.log(JSON.stringify(figures, null, 2)),
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
