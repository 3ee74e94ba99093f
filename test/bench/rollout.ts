/**
 * Rollout engine benchmark: plan and run one rollout over 500 simulated hosts on the in-memory
 * fake fleet (canary, 4 waves of 25 %, parallelism 50, each host pull -> switch -> test -> health
 * gate), with the durable store writing to a temp dir. Reports plan time, run time, the number of
 * store writes saved by coalescing (commands vs. files written), and heap growth.
 *
 *   node dist/test/bench/rollout.js      prints the figures as JSON
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

const HOSTS = 500;
const COMMIT = "9".repeat(40);

const round = (n: number, digits = 1) => Number(n.toFixed(digits));

export async function benchRollout(): Promise<Record<string, number>> {
  const dir = await mkdtemp(join(tmpdir(), "lockstep-bench-rollout-"));
  const fleet = new FakeFleet({
    hosts: Array.from({ length: HOSTS }, (_, i) => ({ host: `host-${String(i).padStart(3, "0")}`, priority: i % 10, canary: i === 0 })),
    latencyMs: 0,
    expectedHead: COMMIT,
  });
  try {
    const store = new RolloutStore(dir);
    let saves = 0;
    const save = store.save.bind(store);
    store.save = (rec) => {
      saves++;
      return save(rec);
    };
    global.gc?.();
    const heapBefore = process.memoryUsage().heapUsed;

    const t0 = performance.now();
    const plan = new RolloutPlanner().plan(
      {
        commit: COMMIT,
        strategy: { soakMs: 0, waves: { percent: 25 }, parallelism: 50, stepTimeouts: { pull: 30_000, switch: 30_000, test: 30_000 }, healthTimeoutMs: 30_000 },
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
    if (final.state !== "completed" || final.counts.succeeded !== HOSTS) {
      throw new Error(`benchmark rollout did not complete: ${final.summary}`);
    }
    return {
      hosts: HOSTS,
      phases: plan.phases.length,
      planMs: round(planMs, 2),
      runMs: round(runMs),
      msPerHost: round(runMs / HOSTS, 2),
      commands: fleet.commands.length,
      storeSaveCalls: saves,
      storeFileWrites: store.writeCount,
      progressEvents,
      auditEvents,
      heapGrowthMB: round((heapAfter - heapBefore) / 1_048_576),
      rssMB: round(process.memoryUsage().rss / 1_048_576),
    };
  } finally {
    fleet.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  benchRollout().then(
    (figures) => console.log(JSON.stringify(figures, null, 2)),
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
