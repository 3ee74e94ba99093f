/**
 * `npm run bench`: runs every benchmark one after another and prints its figures. Each benchmark
 * stops by itself; the machine's load changes the numbers, so compare runs on one machine only.
 *   node dist/test/bench/run.js            all of them
 *   node dist/test/bench/run.js broker     only those whose name contains "broker"
 */
import { benchBroker } from "./broker.js";
import { benchDashboard } from "./dashboard.js";
import { benchGithub } from "./github.js";
import { benchHubStart } from "./hub-start.js";
import { benchPreview } from "./preview.js";
import { benchRollout } from "./rollout.js";

const BENCHMARKS: [string, () => Promise<Record<string, number>>][] = [
  ["broker", benchBroker],
  ["github", benchGithub],
  ["rollout", benchRollout],
  ["dashboard", benchDashboard],
  ["hub-start", benchHubStart],
  ["preview", benchPreview],
];

async function main(filter: string[]): Promise<number> {
  let failed = 0;
  for (const [name, bench] of BENCHMARKS) {
    if (filter.length && !filter.some((f) => name.includes(f))) continue;
    const started = performance.now();
    process.stdout.write(`\n== ${name}\n`);
    try {
      const figures = await bench();
      const width = Math.max(...Object.keys(figures).map((k) => k.length));
      for (const [k, v] of Object.entries(figures)) console.log(`  ${k.padEnd(width)}  ${v}`);
      console.log(`  (${((performance.now() - started) / 1000).toFixed(1)} s)`);
    } catch (err) {
      failed++;
      console.log(`  failed: ${(err as Error).stack ?? String(err)}`);
    }
  }
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code));
