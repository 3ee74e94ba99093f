/**
 * Magic rollback with a real agent, real Nix and a real network cut: a TCP proxy between the agent
 * and the broker stands for the host's network. A switch whose "activation" takes the network down
 * is never confirmed: the agent rolls the system and its checkout back by itself, reconnects and
 * reports it. Confirmed in time, the switch stays. Killed during the window, it still rolls back.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestBroker, type TestBroker } from "../support/brokers.js";
import { TcpProxy } from "../support/tcp-proxy.js";
import { TestFleet } from "../fleet/fleet.js";
import type { JobState } from "../../protocol/index.js";

const CONFIRM_SECONDS = 8;
const HOSTS = ["cut", "kept", "killed"];

describe("magic rollback (real agents, real Nix, a real network cut)", () => {
  let broker: TestBroker;
  let fleet: TestFleet;
  let root: string;
  const proxies = new Map<string, TcpProxy>();

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lockstep-magic-rollback-"));
    broker = await startTestBroker({ kind: "aedes" });
    const target = new URL(broker.url);
    const extraConfig = { magicRollback: true, confirmTimeoutSeconds: CONFIRM_SECONDS };
    fleet = await TestFleet.create({
      root,
      hosts: HOSTS,
      broker,
      startAgents: false,
      hostOptions: Object.fromEntries(HOSTS.map((h) => [h, { extraConfig }])),
    });
    // Each agent reaches the broker only through its own proxy: its own network.
    for (const host of HOSTS) {
      const proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port) });
      proxies.set(host, proxy);
      const file = fleet.paths(host).config;
      const config = JSON.parse(readFileSync(file, "utf8")) as { broker: { url: string } };
      config.broker.url = `mqtt://127.0.0.1:${proxy.port}`;
      writeFileSync(file, JSON.stringify(config, null, 2));
    }
    await Promise.all(HOSTS.map((h) => fleet.startAgent(h, 60_000)));
    await fleet.bootstrap(); // generation 1: nothing before it, nothing to confirm
  }, 300_000);

  afterAll(async () => {
    await fleet?.stop();
    await broker?.stop();
    for (const p of proxies.values()) await p.stop();
    if (root && !process.env.LOCKSTEP_KEEP_TEST_DIRS) rmSync(root, { recursive: true, force: true });
  });

  const pending = (host: string) => {
    const file = join(fleet.paths(host).stateDir, "awaiting-confirmation.json");
    return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as { job: string; deadline: string }) : undefined;
  };

  /** Pull a new commit (network up), then start its switch; resolves once the switch runs. */
  async function startSwitch(host: string): Promise<{ id: string; before: string; commit: string }> {
    const before = fleet.checkoutHead(host);
    const commit = fleet.repo.setBuildDelay(host, 1);
    expect((await fleet.runCommand(host, "pull", { commit })).state).toBe("succeeded");
    const sw = fleet.command("switch", { commit });
    await fleet.sendCommand(host, sw);
    await fleet.waitForJob(host, sw.id, { states: ["running"] });
    return { id: sw.id, before, commit };
  }

  it("a switch that cuts the host's network is rolled back by the agent, system and checkout, and reported once it is back", async () => {
    const host = "cut";
    const proxy = proxies.get(host)!;
    expect(fleet.generation(host).generation).toBe(1);
    const sw = await startSwitch(host);
    proxy.cut(); // the activation takes the host's network down
    // The switch lands (generation 2), nobody can confirm it, and the agent goes back by itself.
    await fleet.until(() => fleet.generation(host).generation === 2 || undefined, 120_000, "the switch to land");
    await fleet.until(() => fleet.generation(host).generation === 1 || undefined, 120_000, "the agent to roll back by itself");
    expect(proxy.isOpen).toBe(false);
    proxy.restore();
    const rb = await fleet.waitForJob(host, `${sw.id}-unconfirmed`, { timeoutMs: 90_000, states: ["succeeded", "failed", "rejected", "interrupted"] });
    expect(rb.state, rb.summary).toBe("succeeded");
    expect(rb.op).toBe("rollback");
    expect(rb.summary).toMatch(new RegExp(`^rolled-back: no confirmation within ${CONFIRM_SECONDS} s; generation 2 -> 1; checkout back at ${sw.before.slice(0, 8)}; tests after the rollback: \\d+/\\d+ passed on generation 1$`));
    expect(fleet.checkoutHead(host)).toBe(sw.before);
    const switched = fleet.job(host, sw.id)!;
    expect(switched.state).toBe("succeeded");
    expect(switched.confirmBy).toBeDefined();
    expect(pending(host)).toBeUndefined();
  }, 400_000);

  it("a switch confirmed in time keeps its generation past the deadline", async () => {
    const host = "kept";
    const sw = await startSwitch(host);
    const done: JobState = await fleet.waitForJob(host, sw.id, { timeoutMs: 180_000 });
    expect(done.state, done.summary).toBe("succeeded");
    expect(done.confirmBy).toBeDefined();
    expect(pending(host)?.job).toBe(sw.id);
    const confirmed = await fleet.runCommand(host, "confirm", { job: sw.id });
    expect(confirmed.state, confirmed.summary).toBe("succeeded");
    expect(confirmed.summary).toBe(`confirmed switch ${sw.id}: keeping generation 2`);
    expect(pending(host)).toBeUndefined();
    // A second confirmation (or one for another job) is refused: nothing waits any more.
    expect((await fleet.runCommand(host, "confirm", { job: sw.id })).state).toBe("rejected");
    // Past the deadline: still generation 2, no rollback job.
    const deadline = Date.parse(done.confirmBy!);
    await fleet.until(() => Date.now() > deadline + 3000 || undefined, CONFIRM_SECONDS * 1000 + 10_000, "the deadline to pass");
    expect(fleet.generation(host).generation).toBe(2);
    expect(fleet.job(host, `${sw.id}-unconfirmed`)).toBeUndefined();
    expect(fleet.checkoutHead(host)).toBe(sw.commit);
  }, 400_000);

  it("an agent killed during the confirmation window still rolls back after it restarts", async () => {
    const host = "killed";
    const proxy = proxies.get(host)!;
    const sw = await startSwitch(host);
    proxy.cut();
    await fleet.until(() => pending(host)?.job === sw.id || undefined, 120_000, "the switch to land and wait for its confirmation");
    await fleet.killAgent(host, "SIGKILL", { restart: true });
    await fleet.until(() => fleet.generation(host).generation === 1 || undefined, 120_000, "the restarted agent to roll back");
    proxy.restore();
    const rb = await fleet.waitForJob(host, `${sw.id}-unconfirmed`, { timeoutMs: 90_000, states: ["succeeded", "failed", "rejected", "interrupted"] });
    expect(rb.state, rb.summary).toBe("succeeded");
    expect(rb.summary).toMatch(/^rolled-back: no confirmation within 8 s; generation 2 -> 1/);
    expect(fleet.checkoutHead(host)).toBe(sw.before);
    expect(fleet.agentProcess(host).starts).toBeGreaterThanOrEqual(2);
  }, 400_000);
});
