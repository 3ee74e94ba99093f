/**
 * The soak (run by hand: `npm run faults -- --only soak`, ~12 minutes, loads the machine): a real
 * hub process with 1,000 simulated hosts (test/bench/sim-host.ts) on its embedded broker, for
 * LOCKSTEP_SOAK_MINUTES (default 10). Hosts keep publishing compartment changes; an operator sends
 * commands that the hosts run as quick jobs (running, then succeeded, retained). The hub's RSS and
 * heap are sampled over time (heap from inside, test/support/heap-sampler.cjs); at the end every
 * job's final state must have reached the hub (lockstep_steps_total on /metrics): results lost = 0.
 * The samples are written to test-results/faults/soak-<time>.json.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { CredentialStore } from "../../../broker/credentials.js";
import { Topics, buildCommand } from "../../../protocol/index.js";
import { procCpuSeconds, procRssMb } from "../../bench/fleet.js";
import { SimulatedHost } from "../../bench/sim-host.js";
import { REPO_ROOT, startHubProcess } from "../../demo/hub-process.js";
import { Checks, type FaultRow } from "../row.js";

const HOSTS = 1_000;
const CHANGES_PER_SECOND = 20;
const COMMANDS_PER_SECOND = 2;
const SAMPLE_EVERY_MS = 30_000;
const topics = new Topics();
const OPERATOR = { name: "soak-op", password: "soak-operator-password" };

interface Sample {
  minute: number;
  rssMb: number;
  heapUsedMb: number;
  cpuS: number;
  changes: number;
  jobsSent: number;
}

/** Run `task` for 0..count-1 with at most `limit` at once. */
async function pool(count: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, count) }, async () => {
    while (next < count) await task(next++);
  }));
}

/** The sum of a counter's series on the hub's /metrics. */
async function counterSum(baseUrl: string, name: string): Promise<number> {
  const res = await fetch(`${baseUrl}/metrics`, { headers: { authorization: `Basic ${Buffer.from(`${OPERATOR.name}:${OPERATOR.password}`).toString("base64")}` } });
  const text = await res.text();
  return text.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `)).reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}

export const soak: FaultRow = {
  name: "soak",
  scenario: `${HOSTS} simulated hosts on a real hub for LOCKSTEP_SOAK_MINUTES (10): ${CHANGES_PER_SECOND} compartment changes/s and ${COMMANDS_PER_SECOND} jobs/s`,
  expected: "every job's final state reaches the hub (results lost = 0); hub memory flat after the first 2 minutes (RSS and heap grow < 25 %)",
  speed: "long",
  timeoutMs: 40 * 60_000,
  async run(ctx) {
    const c = new Checks();
    const minutes = Number(process.env.LOCKSTEP_SOAK_MINUTES ?? 10);
    const dataDir = mkdtempSync(join(tmpdir(), "lockstep-faults-soak-"));
    ctx.cleanup(() => rmSync(dataDir, { recursive: true, force: true }));
    const store = await CredentialStore.open(join(dataDir, "credentials.json"));
    await store.add(OPERATOR.name, "operator", OPERATOR.password);
    const names = Array.from({ length: HOSTS }, (_, i) => `soak-${String(i).padStart(4, "0")}`);
    const added = await store.addMany(names.map((name) => ({ name, role: "agent" as const })));
    const heapFile = join(dataDir, "heap.jsonl");
    const hub = await startHubProcess({
      dataDir,
      env: { LOCKSTEP_HA_ENABLED: "false", NODE_OPTIONS: `--require ${join(REPO_ROOT, "test", "support", "heap-sampler.cjs")}`, LOCKSTEP_HEAP_SAMPLES: heapFile, LOCKSTEP_HEAP_SAMPLE_MS: "5000" },
    });
    ctx.cleanup(() => hub.stop("SIGKILL"));
    const pid = hub.child.pid!;
    const port = Number(new URL(hub.mqttUrl).port);

    ctx.log(`connecting ${HOSTS} simulated hosts`);
    const t0 = performance.now();
    const sims = names.map((name) => new SimulatedHost(name, topics, { answerCommands: true }));
    ctx.cleanup(() => sims.forEach((sim) => sim.stop()));
    await pool(HOSTS, 50, (i) => sims[i]!.start(port, added[i]!.password));
    c.see(`${HOSTS} hosts connected in ${((performance.now() - t0) / 1000).toFixed(0)} s`);

    const operator = await mqtt.connectAsync(hub.mqttUrl, { username: OPERATOR.name, password: OPERATOR.password, reconnectPeriod: 1000, protocolVersion: 4 });
    ctx.cleanup(() => operator.endAsync(true));
    const stepsAtStart = await counterSum(hub.baseUrl, "lockstep_steps_total");

    const heapUsedMb = () => {
      const lines = readFileSync(heapFile, "utf8").trim().split("\n");
      return (JSON.parse(lines.at(-1)!) as { heapUsed: number }).heapUsed / 2 ** 20;
    };
    const cpu0 = procCpuSeconds(pid);
    const samples: Sample[] = [];
    let changes = 0;
    let jobsSent = 0;
    let sendErrors = 0;
    const sample = (minute: number) => {
      const s = { minute: Number(minute.toFixed(1)), rssMb: Number(procRssMb(pid).toFixed(0)), heapUsedMb: Number(heapUsedMb().toFixed(0)), cpuS: Number((procCpuSeconds(pid) - cpu0).toFixed(0)), changes, jobsSent };
      samples.push(s);
      ctx.log(`t=${s.minute} min: hub RSS ${s.rssMb} MB, heap ${s.heapUsedMb} MB, CPU ${s.cpuS} s; ${changes} changes, ${jobsSent} jobs`);
    };
    sample(0);

    // The load, one tick a second until the time is up; a tick that falls behind is not made up.
    const start = Date.now();
    const end = start + minutes * 60_000;
    let nextSample = start + SAMPLE_EVERY_MS;
    let n = 0;
    while (Date.now() < end) {
      const tick = Date.now();
      const work: Promise<unknown>[] = [];
      for (let i = 0; i < CHANGES_PER_SECOND; i++) {
        const sim = sims[(n * 7919 + i * 104_729) % HOSTS]!;
        work.push(sim.change(n * CHANGES_PER_SECOND + i).then(() => changes++));
      }
      for (let i = 0; i < COMMANDS_PER_SECOND; i++) {
        const host = names[(n * 31 + i * 577) % HOSTS]!;
        const cmd = buildCommand("refresh", {}, { id: `soak-${n}-${i}`, expiresAt: new Date(Date.now() + 600_000), requestedBy: "soak" });
        work.push(operator.publishAsync(topics.commands(host), JSON.stringify(cmd), { qos: 1 }).then(() => jobsSent++, () => sendErrors++));
      }
      await Promise.all(work);
      n++;
      if (Date.now() >= nextSample) {
        sample((Date.now() - start) / 60_000);
        nextSample += SAMPLE_EVERY_MS;
      }
      const wait = tick + 1000 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }

    // Every job's final state must reach the hub; the hosts ran them all (their acks counted).
    const deadline = Date.now() + 120_000;
    let counted = await counterSum(hub.baseUrl, "lockstep_steps_total") - stepsAtStart;
    while (counted < jobsSent && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 2000));
      counted = await counterSum(hub.baseUrl, "lockstep_steps_total") - stepsAtStart;
    }
    sample((Date.now() - start) / 60_000);
    const finished = sims.reduce((sum, s) => sum + s.jobsFinished, 0);
    const lost = jobsSent - counted;
    c.see(`${changes} changes, ${jobsSent} jobs sent (${sendErrors} send errors), ${finished} finished on the hosts, ${counted} final states counted by the hub: results lost ${lost}`);
    c.expect(lost === 0 && sendErrors === 0, `${lost} results lost, ${sendErrors} commands not sent`);

    const warm = samples.find((s) => s.minute >= 2) ?? samples[0]!;
    const last = samples.at(-1)!;
    const maxRss = Math.max(...samples.map((s) => s.rssMb));
    c.see(`hub RSS ${samples[0]!.rssMb} MB at start, ${warm.rssMb} MB at ${warm.minute} min, ${last.rssMb} MB at the end (max ${maxRss}); heap ${samples[0]!.heapUsedMb} → ${warm.heapUsedMb} → ${last.heapUsedMb} MB; hub CPU ${last.cpuS} s`);
    c.expect(last.rssMb <= warm.rssMb * 1.25, "hub RSS grew by more than 25 % after the warm-up");
    c.expect(last.heapUsedMb <= warm.heapUsedMb * 1.25, "hub heap grew by more than 25 % after the warm-up");

    const out = join(process.cwd(), "test-results", "faults");
    mkdirSync(out, { recursive: true });
    const file = join(out, `soak-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    writeFileSync(file, JSON.stringify({ hosts: HOSTS, minutes, changesPerSecond: CHANGES_PER_SECOND, commandsPerSecond: COMMANDS_PER_SECOND, jobsSent, counted, lost, samples }, null, 2) + "\n");
    ctx.log(`samples written to ${file}`);
    return c.outcome();
  },
};
