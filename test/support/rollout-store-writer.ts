/**
 * A child process for the store's SIGKILL test (test/integration/rollout-store-kill.test.ts): it
 * starts a rollout record in DIR, then records steps like the engine does (each step durably,
 * its result without waiting), as fast as it can, and prints `acked <n>` once step n is durable
 * (what the engine waits for before it sends a command). The test kills it at some point.
 *
 *   node dist/test/support/rollout-store-writer.js DIR COMPACT_MIN_BYTES
 */
import { writeSync } from "node:fs";
import { RolloutPlanner } from "../../rollout/planner.js";
import { RolloutStore, type RolloutRecord } from "../../rollout/store.js";
import { FakeFleet } from "./fake-fleet.js";

export const WRITER_ROLLOUT_ID = "r-killed";
const COMMIT = "7".repeat(40);

export function writerRecord(): RolloutRecord {
  const fleet = new FakeFleet({ hosts: Array.from({ length: 50 }, (_, i) => ({ host: `h${i}` })) });
  const plan = new RolloutPlanner().plan({ commit: COMMIT }, fleet.hosts(), new Date(), WRITER_ROLLOUT_ID);
  const now = new Date().toISOString();
  const hosts = Object.fromEntries(plan.phases.flatMap((p) => p.hosts.map((h) => [h, { host: h, phase: p.name, state: "pending" as const, jobIds: [] as string[] }])));
  return {
    version: 1,
    id: WRITER_ROLLOUT_ID,
    commit: COMMIT,
    requestedBy: "test",
    plan,
    progress: { id: WRITER_ROLLOUT_ID, commit: COMMIT, state: "running", summary: "", requestedBy: "test", phases: [], hosts, counts: { total: 50, succeeded: 0, failed: 0, skipped: 0 }, createdAt: now, updatedAt: now },
    steps: {},
    rollbackFailed: [],
    finished: false,
  };
}

/** The key of step n: hosts take turns, 100 steps each. */
export const writerStepKey = (n: number) => `h${n % 50}/step${n}`;

async function main(dir: string, compactMinBytes: number): Promise<void> {
  const store = new RolloutStore(dir, { compactMinBytes });
  const rec = writerRecord();
  await store.save(rec);
  writeSync(1, "started\n");
  const inFlight = new Set<Promise<void>>();
  for (let n = 0; ; n++) {
    const host = `h${n % 50}`;
    const key = writerStepKey(n);
    rec.steps[key] = { host, step: `step${n}`, commandId: `c-${n}`, sentAt: new Date().toISOString(), expiresAt: new Date().toISOString(), timeoutMs: 1000 };
    rec.progress.hosts[host]!.jobIds.push(`c-${n}`);
    rec.progress.hosts[host]!.state = "pulling";
    // Ten hosts at a time, like a wave's parallel hosts: their records share writes (group commit).
    const p = store.append(rec, { steps: [key], hosts: [host] }, { durable: true }).then(() => {
      writeSync(1, `acked ${n}\n`);
      rec.steps[key]!.result = { state: "succeeded", summary: `step ${n} done`, at: new Date().toISOString() };
      rec.progress.hosts[host]!.state = "succeeded";
      void store.append(rec, { steps: [key], hosts: [host] }, { durable: false });
    });
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
    if (inFlight.size >= 10) await Promise.race(inFlight);
  }
}

if (require.main === module) {
  main(process.argv[2]!, Number(process.argv[3] ?? 1024 * 1024)).catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
