/**
 * FleetView + RolloutEngine against real agents (TestFleet: real git, real Nix, agent child
 * processes) on the hub's broker: canary + one wave over three hosts, where the new commit breaks
 * one host's build. Policy rollback-all must put every switched host back on the generation it had
 * before, and leave the failed host alone (its build never produced a generation).
 *
 * Agents run from dist/: `npx tsc -p .` first.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FleetView } from "../../rollout/fleet-view.js";
import { RolloutEngine } from "../../rollout/engine.js";
import { RolloutPlanner } from "../../rollout/planner.js";
import { RolloutStore } from "../../rollout/store.js";
import type { AuditEvent } from "../../protocol/schemas.js";
import { TestFleet } from "../fleet/fleet.js";
import { startTestBroker, type TestBroker } from "../support/brokers.js";

const HOSTS = ["alpha", "beta", "gamma"];

describe("rollout on real agents", () => {
  let root: string;
  let broker: TestBroker;
  let fleet: TestFleet;
  let client: FleetView;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lockstep-rollout-real-"));
    broker = await startTestBroker({ kind: "aedes" });
    fleet = await TestFleet.create({
      root,
      hosts: HOSTS,
      broker,
      logLevel: "info",
      hostOptions: { alpha: { priority: 1, canary: true }, beta: { priority: 2 }, gamma: { priority: 3 } },
    });
    await fleet.bootstrap();
    client = new FleetView({ url: broker.url, ...(await broker.credentials("hub", "rollout-test")) });
    await client.start();
  }, 240_000);

  afterAll(async () => {
    await client?.stop();
    await fleet?.stop();
    await broker?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("canary passes, the wave hits a build failure, rollback-all restores the previous generations", async () => {
    const before = Object.fromEntries(HOSTS.map((h) => [h, fleet.generation(h).generation]));
    const checkoutBefore = Object.fromEntries(HOSTS.map((h) => [h, fleet.checkoutHead(h)]));
    expect(Object.values(before).every((g) => typeof g === "number")).toBe(true);

    // The new commit: a real lock update merged into main, plus a change that breaks gamma's build.
    fleet.repo.bumpInput("nixpkgs");
    const update = fleet.repo.lockUpdateBranch();
    fleet.repo.mergeIntoBranch(update.sha, "Merge pull request #1 from update_flake_lock_action");
    const target = fleet.repo.setBuildFailure("gamma", true);
    await client.publishExpected(fleet.expectedAt(target));
    // Plan only once the hub's view has every host's new state (under load one host can lag).
    for (const host of ["alpha", "beta", "gamma"]) {
      await client.waitForHost(host, (h) => h.compartments.git?.status === "outdated", 30_000);
    }

    const plan = new RolloutPlanner().plan(
      {
        commit: target,
        strategy: {
          soakMs: 500,
          waves: { size: 2 },
          parallelism: 2,
          stepTimeouts: { pull: 60_000, switch: 120_000, test: 60_000 },
          healthTimeoutMs: 30_000,
        },
        onFailure: "rollback-all",
        prNumber: 1,
      },
      client.hosts(),
    );
    expect(plan.phases.map((p) => [p.name, p.hosts])).toEqual([
      ["canary", ["alpha"]],
      ["wave-1", ["beta", "gamma"]],
    ]);

    const store = new RolloutStore(join(root, "hub-data"));
    const engine = new RolloutEngine({ fleet: client, store });
    const audits: AuditEvent[] = [];
    engine.on("audit", (e) => audits.push(e));
    engine.on("progress", (p) => void client.publishProgress(p));
    const final = await engine.run(plan, "integration-test");

    const explain = () => JSON.stringify({ final, audits: audits.map((a) => [a.action, a.target, a.details]) }, null, 1);
    expect(final.state, explain()).toBe("rolled-back");
    // Canary and beta switched to a new generation, then went back to the one they had.
    for (const h of ["alpha", "beta"]) {
      expect(final.hosts[h]!.generationAfter, h).toBeGreaterThan(before[h]!);
      expect(final.hosts[h]!.state, explain()).toBe("rolled-back");
      expect(fleet.generation(h).generation, h).toBe(before[h]);
    }
    // gamma's build failed: no new generation, nothing rolled back, the reason says so.
    expect(final.hosts.gamma!.state).toBe("failed");
    expect(final.hosts.gamma!.reason).toMatch(/^switch failed/);
    expect(final.hosts.gamma!.reason).toMatch(/nothing to roll back/);
    expect(fleet.generation("gamma").generation).toBe(before.gamma);
    // Every host pulled exactly the target commit, and the rollback put its checkout back where it
    // was (gamma's too: it holds the update that does not build).
    for (const h of HOSTS) {
      const pull = client.job(h, final.hosts[h]!.jobIds[0]!);
      expect(pull).toMatchObject({ op: "pull", state: "succeeded", commit: target });
      expect(fleet.checkoutHead(h), explain()).toBe(checkoutBefore[h]);
      expect(final.hosts[h]!.reason).toContain(`checkout back at ${checkoutBefore[h]!.slice(0, 8)}`);
    }
    // The wave did not start before the soak ended.
    const soakEnd = Date.parse(audits.find((a) => a.action === "soak.finished")!.at);
    expect(Math.min(...["beta", "gamma"].map((h) => Date.parse(final.hosts[h]!.startedAt!)))).toBeGreaterThanOrEqual(soakEnd);
    expect((await store.history())[0]).toMatchObject({ rolloutId: plan.id, commit: target, state: "rolled-back", prNumber: 1 });
  }, 300_000);
});
