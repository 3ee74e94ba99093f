/**
 * `npm run bench -- --quick` must keep working (CI runs it): the fleet benchmark's harness on a
 * small fleet, against both brokers, a hub restart under it, two broker nodes sharing Redis against one, and the agent's weight (a real idle agent from dist/, and the
 * bare node floor it is measured against). Benchmarks are figures, never timed tests: this checks only
 * that every figure is produced and the JSON file is written.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseBenchArgs, runBenchmarks } from "../bench/run.js";
import { mosquittoAvailable } from "../support/mosquitto.js";

describe("npm run bench -- --quick", () => {
  let dir: string | undefined;
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("runs the fleet benchmark on a small fleet, a hub restart and the agent's weight, and writes their figures with the machine", async () => {
    dir = await mkdtemp(join(tmpdir(), "lockstep-bench-quick-"));
    const args = parseBenchArgs(["--quick", "--hosts", "20", "--changes", "200"]);
    expect(args.filter).toEqual(["fleet", "hub-restart", "cluster", "agent"]);
    args.fleet.inProcess = true; // no compiled broker-child.js under vitest
    const { failed, file, results } = await runBenchmarks(args, dir);
    expect(failed).toBe(0);
    const fleet = results.fleet!;
    expect(fleet["20h snapshotReceived embedded"]).toBe(20 * 7);
    for (const figure of ["connectS", "snapshotS", "cpuPer10kChangesS", "changeP99Ms", "rssMb"]) {
      expect(fleet[`20h ${figure} embedded`]).toBeGreaterThan(0);
      if (mosquittoAvailable()) expect(fleet[`20h ${figure} mosquitto`]).toBeGreaterThanOrEqual(0);
    }
    // A real hub process (from dist/) restarted under the fleet, and Mosquitto restarted likewise.
    const restart = results["hub-restart"]!;
    expect(restart["20h restart settleS embedded"]).toBeGreaterThan(0);
    expect(restart["20h hub rssMb embedded"]).toBeGreaterThan(0);
    if (mosquittoAvailable()) expect(restart["20h restart settleS ratio"]).toBeGreaterThan(0);
    // Two `lockstep broker` nodes (from dist/) sharing a redis-server, against one.
    const cluster = results.cluster!;
    for (const figure of ["connectS", "changeP99Ms", "cpuPer10kChangesS", "rssMb"]) {
      expect(cluster[`20h ${figure} 1 node`]).toBeGreaterThan(0);
      expect(cluster[`20h ${figure} 2 nodes`]).toBeGreaterThan(0);
      expect(cluster[`20h ${figure} ratio 2÷1`]).toBeGreaterThan(0);
    }
    // The idle agent (a real agent process from dist/) and the floor it is measured against.
    const agent = results.agent!;
    expect(agent["floor: bare node RSS MB"]).toBeGreaterThan(0);
    for (const figure of ["idle agent RSS MB", "idle agent PSS MB", "load agent/agent (the daemon): RSS over floor MB"]) expect(agent[figure]).toBeGreaterThan(0);
    const written = JSON.parse(await readFile(file, "utf8")) as { machine: { cores: number; node: string }; results: { fleet: Record<string, unknown> } };
    expect(written.machine.cores).toBeGreaterThan(0);
    expect(written.machine.node).toBe(process.version);
    expect(Object.keys(written.results.fleet)).toEqual(Object.keys(fleet));
  }, 300_000);
});
