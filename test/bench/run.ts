/**
 * `npm run bench`: runs every benchmark one after another, prints its figures and writes them, with
 * the machine they were measured on, to test-results/bench/bench-<time>.json. Each benchmark stops
 * by itself; the machine's load changes the numbers, so compare runs on one machine only (ratios
 * to Mosquitto come from the same run).
 *   node dist/test/bench/run.js              all of them (the fleet at 1,000 and 10,000 hosts)
 *   node dist/test/bench/run.js fleet        only those whose name contains "fleet"
 *   node dist/test/bench/run.js --quick      a small fleet, a hub restart under it, two broker nodes and the idle agent only (CI)
 *   node dist/test/bench/run.js hub-restart --hosts 1000 --malloc-arena-max 2   hub RSS with and without it
 *   node dist/test/bench/run.js fleet --hosts 1000 --changes 10000 --profile DIR
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { benchAgent } from "./agent.js";
import { benchBroker } from "./broker.js";
import { benchCluster } from "./cluster.js";
import { benchDashboard } from "./dashboard.js";
import { benchFleet, type FleetBenchOptions } from "./fleet.js";
import { benchGithub } from "./github.js";
import { benchHubRestart } from "./hub-restart.js";
import { benchHubStart } from "./hub-start.js";
import { benchPreview } from "./preview.js";
import { benchRollout } from "./rollout.js";
import { MOSQUITTO_BINARY, mosquittoAvailable } from "../support/mosquitto.js";

export interface BenchArgs {
  filter: string[];
  quick: boolean;
  fleet: FleetBenchOptions;
}

export function parseBenchArgs(argv: string[]): BenchArgs {
  const filter: string[] = [];
  let quick = false;
  const fleet: FleetBenchOptions = { hosts: [1_000, 10_000], changes: 10_000 };
  let hostsGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === "--quick") quick = true;
    else if (arg === "--hosts") (fleet.hosts = value().split(",").map(Number)), (hostsGiven = true);
    else if (arg === "--changes") fleet.changes = Number(value());
    else if (arg === "--profile") fleet.profileDir = value();
    else if (arg === "--broker-dist") fleet.brokerDist = value();
    else if (arg === "--scrypt-agents") fleet.scryptAgents = true;
    else if (arg === "--embedded-only") fleet.embeddedOnly = true;
    else if (arg === "--malloc-arena-max") fleet.brokerEnv = { MALLOC_ARENA_MAX: value() };
    else if (arg.startsWith("--")) throw new Error(`unknown option ${arg}`);
    else filter.push(arg);
  }
  if (quick) {
    if (!hostsGiven) fleet.hosts = [100];
    fleet.changes = Math.min(fleet.changes, 1_000);
    if (filter.length === 0) filter.push("fleet", "hub-restart", "cluster", "agent");
  }
  return { filter, quick, fleet };
}

export function benchmarks(args: BenchArgs): Array<[string, () => Promise<Record<string, number>>]> {
  return [
    ["fleet", () => benchFleet(args.fleet)],
    ["broker", benchBroker],
    // Two broker nodes sharing Redis against one, at the smallest fleet size asked for (1,000; --quick 100).
    ["cluster", () => benchCluster({ hosts: Math.min(...args.fleet.hosts), changes: args.fleet.changes })],
    ["github", benchGithub],
    ["rollout", benchRollout],
    ["dashboard", () => benchDashboard({ hosts: args.fleet.hosts, ...(args.fleet.embeddedOnly ? { embeddedOnly: true } : {}) })],
    ["hub-start", benchHubStart],
    ["hub-restart", () => benchHubRestart({ hosts: args.fleet.hosts, ...(args.fleet.brokerEnv?.MALLOC_ARENA_MAX ? { arenaMax: args.fleet.brokerEnv.MALLOC_ARENA_MAX } : {}) })],
    ["preview", benchPreview],
    ["agent", () => benchAgent({ quick: args.quick })],
  ];
}

function machine(): Record<string, unknown> {
  let mosquitto = "not installed";
  if (mosquittoAvailable()) {
    try {
      mosquitto = execFileSync(MOSQUITTO_BINARY, ["-h"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).split("\n")[0] ?? "";
    } catch (err) {
      mosquitto = String((err as { stdout?: string }).stdout ?? "").split("\n")[0] ?? "unknown";
    }
  }
  const cpu = cpus();
  return { cpu: cpu[0]?.model, cores: cpu.length, memoryGb: Number((totalmem() / 2 ** 30).toFixed(1)), loadavg: loadavg(), node: process.version, platform: process.platform, mosquitto };
}

export async function runBenchmarks(args: BenchArgs, outDir = join(process.cwd(), "test-results", "bench")): Promise<{ failed: number; file: string; results: Record<string, Record<string, number>> }> {
  let failed = 0;
  const results: Record<string, Record<string, number>> = {};
  const started = new Date();
  for (const [name, bench] of benchmarks(args)) {
    if (args.filter.length && !args.filter.some((f) => name.includes(f))) continue;
    const t0 = performance.now();
    process.stdout.write(`\n== ${name}\n`);
    try {
      const figures = await bench();
      results[name] = figures;
      const width = Math.max(...Object.keys(figures).map((k) => k.length));
      for (const [k, v] of Object.entries(figures)) console.log(`  ${k.padEnd(width)}  ${v}`);
      console.log(`  (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    } catch (err) {
      failed++;
      console.log(`  failed: ${(err as Error).stack ?? String(err)}`);
    }
  }
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `bench-${started.toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(file, JSON.stringify({ startedAt: started.toISOString(), quick: args.quick, options: args.fleet, machine: machine(), results }, null, 2) + "\n");
  console.log(`\nwritten: ${file}`);
  return { failed, file, results };
}

if (process.argv[1]?.endsWith("run.js")) {
  runBenchmarks(parseBenchArgs(process.argv.slice(2))).then(
    ({ failed }) => process.exit(failed ? 1 : 0),
    (err: unknown) => {
      console.error(err);
      process.exit(2);
    },
  );
}
