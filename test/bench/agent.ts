/**
 * Agent weight: what an idle `lockstep-agent run` costs in memory over a bare `node -e`, and what
 * each part of the agent costs at load. RSS and PSS come from /proc/PID/smaps_rollup (PSS shares
 * out the pages several processes map, e.g. the node binary: the fairer figure for a host running
 * several node programs). Each figure is measured in its own fresh process, in the same run as
 * the floor.
 * - floor: `node -e` that only waits;
 * - load <module>: a process that only requires that module of dist/ (with what it imports);
 * - idle agent: the real agent CLI connected to an embedded broker, after it published its state
 *   and settled.
 *
 *   node dist/test/bench/agent.js      prints the figures as JSON
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { TestFleet } from "../fleet/fleet.js";
import { startTestBroker } from "../support/brokers.js";

/** The compiled tree (also when this file runs from source, under vitest). */
const ROOT = resolve(__dirname, "..", "..");
const DIST = existsSync(join(ROOT, "agent", "agent.js")) ? ROOT : join(ROOT, "dist");
const round = (n: number) => Number(n.toFixed(1));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Modules of dist/ (and libraries) an agent loads, each measured alone. */
const MODULES: Array<[string, string]> = [
  ["zod", "zod"],
  ["mqtt", "mqtt"],
  ["pino", "pino"],
  ["protocol (all of it)", "protocol/index.js"],
  ["agent/config", "agent/config.js"],
  ["agent/session", "agent/session.js"],
  ["agent/job-runner", "agent/job-runner.js"],
  ["agent/agent (the daemon)", "agent/agent.js"],
  ["agent/self-update/cli", "agent/self-update/cli.js"],
];

export interface Memory {
  rssMb: number;
  pssMb: number;
}

/** RSS and PSS of a running process, from /proc/PID/smaps_rollup. */
export function processMemory(pid: number): Memory {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  return { rssMb: kb("Rss") / 1024, pssMb: kb("Pss") / 1024 };
}

/** Start `node args`, wait until it prints "ready" and a moment more, measure, kill. */
async function measureNode(args: string[], settleMs: number): Promise<Memory> {
  const child = spawn(process.execPath, args, { cwd: DIST, stdio: ["ignore", "pipe", "inherit"] });
  try {
    await new Promise<void>((res, rej) => {
      child.once("error", rej);
      child.once("exit", (code) => rej(new Error(`node ${args.join(" ")} exited ${code}`)));
      child.stdout.on("data", (d: Buffer) => d.toString().includes("ready") && res());
    });
    await sleep(settleMs);
    return processMemory(child.pid!);
  } finally {
    child.kill("SIGKILL");
  }
}

const waitingScript = (require?: string) =>
  `${require ? `require(${JSON.stringify(require)});` : ""}process.stdout.write("ready\\n");setInterval(() => {}, 1 << 30);`;

async function idleAgent(settleMs: number): Promise<Memory> {
  const root = await mkdtemp(join(tmpdir(), "lockstep-bench-agent-"));
  const broker = await startTestBroker({ kind: "aedes" });
  let fleet: TestFleet | undefined;
  try {
    fleet = await TestFleet.create({ root, hosts: ["idle"], broker, logLevel: "info" });
    // Idle: it has published every compartment, and nothing is asked of it.
    for (const c of ["agent", "git", "lock", "system", "tests"] as const) await fleet.waitFor("idle", c, () => true, 60_000);
    await sleep(settleMs);
    const pid = fleet.agentProcess("idle").pid;
    if (!pid) throw new Error("the agent is not running");
    return processMemory(pid);
  } finally {
    await fleet?.stop();
    await broker.stop();
    await rm(root, { recursive: true, force: true });
  }
}

export async function benchAgent(opts: { quick?: boolean } = {}): Promise<Record<string, number>> {
  const settleMs = opts.quick ? 500 : 3000;
  const floor = await measureNode(["-e", waitingScript()], settleMs);
  const figures: Record<string, number> = { "floor: bare node RSS MB": round(floor.rssMb), "floor: bare node PSS MB": round(floor.pssMb) };
  const agent = await idleAgent(opts.quick ? 1000 : 5000);
  figures["idle agent RSS over floor MB"] = round(agent.rssMb - floor.rssMb);
  figures["idle agent PSS over floor MB"] = round(agent.pssMb - floor.pssMb);
  figures["idle agent RSS MB"] = round(agent.rssMb);
  figures["idle agent PSS MB"] = round(agent.pssMb);
  for (const [label, mod] of opts.quick ? MODULES.slice(-3) : MODULES) {
    const m = await measureNode(["-e", waitingScript(mod.includes("/") ? `./${mod}` : mod)], settleMs);
    figures[`load ${label}: RSS over floor MB`] = round(m.rssMb - floor.rssMb);
    figures[`load ${label}: PSS over floor MB`] = round(m.pssMb - floor.pssMb);
  }
  return figures;
}

if (require.main === module) {
  benchAgent({ quick: process.argv.includes("--quick") }).then(
    (figures) => console.log(JSON.stringify(figures, null, 2)),
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
