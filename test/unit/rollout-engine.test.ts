import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RolloutEngine, type RevertCallback } from "../../rollout/engine.js";
import { RolloutPlanner } from "../../rollout/planner.js";
import { RolloutStore } from "../../rollout/store.js";
import type { RolloutSpecInput } from "../../rollout/spec.js";
import { RolloutProgress, RolloutHistoryEntry, AuditEvent } from "../../protocol/schemas.js";
import { FakeFleet, OLD_COMMIT, type FakeHostOptions } from "../support/fake-fleet.js";

const COMMIT = "c".repeat(40);
const FAST = {
  soakMs: 0,
  stepTimeouts: { pull: 2000, switch: 2000, test: 2000 },
  healthTimeoutMs: 1000,
};

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function setup(hosts: FakeHostOptions[], opts: { revert?: RevertCallback; latencyMs?: number; confirmSeconds?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-engine-"));
  const fleet = new FakeFleet({ hosts, latencyMs: opts.latencyMs, expectedHead: COMMIT, ...(opts.confirmSeconds !== undefined ? { confirmSeconds: opts.confirmSeconds } : {}) });
  const store = new RolloutStore(dir);
  const engine = new RolloutEngine({ fleet, store, revert: opts.revert, progressIntervalMs: 5 });
  const audits: AuditEvent[] = [];
  const progress: RolloutProgress[] = [];
  engine.on("audit", (e) => audits.push(e));
  engine.on("progress", (p) => progress.push(p));
  cleanups.push(() => {
    fleet.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const run = (spec: Omit<RolloutSpecInput, "commit">) => {
    const plan = new RolloutPlanner().plan({ commit: COMMIT, ...spec, strategy: { ...FAST, ...spec.strategy } }, fleet.hosts());
    return engine.run(plan, "alice");
  };
  return { fleet, store, engine, audits, progress, run, dir };
}

const hosts = (n: number, extra: (i: number) => Partial<FakeHostOptions> = () => ({})): FakeHostOptions[] =>
  Array.from({ length: n }, (_, i) => ({ host: `h${i}`, priority: i, ...extra(i) }));

const actions = (audits: AuditEvent[]) => audits.map((a) => a.action);
const stateOf = (p: RolloutProgress) => Object.fromEntries(Object.values(p.hosts).map((h) => [h.host, h.state]));

describe("RolloutEngine", () => {
  it("happy path: every host pulls, switches, tests and passes the health gate; history written", async () => {
    const t = setup(hosts(4));
    const history: RolloutHistoryEntry[] = [];
    t.engine.on("history", (h) => history.push(h));
    const final = await t.run({ strategy: { waves: { size: 2 }, parallelism: 2 }, prNumber: 7, lockDiff: { added: [], removed: [], updated: [{ input: "nixpkgs" }] } });

    expect(final.state).toBe("completed");
    expect(final.summary).toBe("completed: 4/4 hosts switched");
    expect(final.counts).toEqual({ total: 4, succeeded: 4, failed: 0, skipped: 0 });
    for (const h of ["h0", "h1", "h2", "h3"]) {
      expect(t.fleet.generationOf(h)).toBe(2);
      expect(final.hosts[h]).toMatchObject({ state: "succeeded", generationBefore: 1, generationAfter: 2 });
    }
    // Every command carries the exact commit, the rollout id, the requester and an expiry.
    const pulls = t.fleet.commands.filter((c) => c.op === "pull");
    expect(pulls).toHaveLength(4);
    for (const c of t.fleet.commands) {
      expect(c.rolloutId).toBe(final.id);
      expect(c.requestedBy).toBe("alice");
      expect(Date.parse(c.expiresAt)).toBeGreaterThan(Date.parse(c.issuedAt));
    }
    expect(pulls.every((c) => c.op === "pull" && c.args.commit === COMMIT)).toBe(true);
    const switches = t.fleet.commands.filter((c) => c.op === "switch");
    expect(switches.map((c) => c.op === "switch" && c.args.commit)).toEqual([COMMIT, COMMIT, COMMIT, COMMIT]);
    // Progress and history validate against the protocol.
    for (const p of t.progress) RolloutProgress.parse(p);
    expect(t.progress.some((p) => /^wave-1: \d\/4 hosts switched/.test(p.summary))).toBe(true);
    expect(history).toHaveLength(1);
    expect(RolloutHistoryEntry.parse(history[0]).prNumber).toBe(7);
    expect(history[0]!.lockDiff?.updated[0]?.input).toBe("nixpkgs");
    expect(await t.store.history()).toHaveLength(1);
    expect(actions(t.audits)).toEqual(expect.arrayContaining(["rollout.started", "phase.started", "command.finished", "host.succeeded", "soak.started", "rollout.finished"]));
    for (const a of t.audits) AuditEvent.parse(a);
    // Stored state is finished, so nothing would be resumed.
    expect((await t.store.listUnfinished()).length).toBe(0);
  });

  it("respects the parallelism limit within a wave", async () => {
    const t = setup(hosts(6), { latencyMs: 5 });
    let running = 0;
    let peak = 0;
    t.fleet.onChange((c) => {
      if (c.kind !== "job") return;
      const j = t.fleet.job(c.host, c.jobId)!;
      if (j.state === "running") peak = Math.max(peak, ++running);
      if (["succeeded", "failed"].includes(j.state)) running--;
    });
    const final = await t.run({ strategy: { canary: 0, waves: { size: 6 }, parallelism: 2 } });
    expect(final.state).toBe("completed");
    expect(peak).toBe(2);
  });

  it("canary failure: the waves never start and the policy applies", async () => {
    const t = setup(hosts(4, (i) => ({ canary: i === 0 })));
    t.fleet.failTests("h0");
    const final = await t.run({ onFailure: "rollback-failed", failureBudget: 5 });
    expect(final.state).toBe("rolled-back");
    expect(final.hosts.h0!.state).toBe("rolled-back");
    expect(final.hosts.h0!.reason).toMatch(/test failed.*rolled back to generation 1/);
    expect(t.fleet.generationOf("h0")).toBe(1);
    for (const h of ["h1", "h2", "h3"]) {
      expect(t.fleet.ran(h)).toBe(0);
      expect(final.hosts[h]).toMatchObject({ state: "skipped", reason: "not started: a canary failed" });
    }
    expect(actions(t.audits)).toContain("rollout.canary-failed");
    expect(actions(t.audits)).not.toContain("soak.started");
  });

  it("soak: the first wave starts only after the soak time, and only if the canary is still healthy", async () => {
    const t = setup(hosts(3));
    const started = Date.now();
    const final = await t.run({ strategy: { soakMs: 300, waves: { size: 2 } } });
    expect(final.state).toBe("completed");
    const canaryDone = Date.parse(final.hosts.h0!.finishedAt!);
    const waveStart = Math.min(...["h1", "h2"].map((h) => Date.parse(final.hosts[h]!.startedAt!)));
    expect(waveStart - canaryDone).toBeGreaterThanOrEqual(290);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(t.progress.some((p) => p.state === "soaking")).toBe(true);

    // A canary that goes offline during the soak stops the rollout.
    // Taken offline when the soak starts, not after a fixed delay: under load the canary's own steps
    // can outlast any delay and then its health gate (not the soak) would see it offline.
    const u = setup(hosts(3));
    u.engine.on("audit", (e) => {
      if (e.action === "soak.started") setTimeout(() => u.fleet.setOnline("h0", false), 50);
    });
    const bad = await u.run({ strategy: { soakMs: 300 } });
    expect(bad.state).toBe("halted");
    expect(bad.hosts.h0!.reason).toMatch(/unhealthy after the soak: agent offline/);
    expect(u.fleet.ran("h1") + u.fleet.ran("h2")).toBe(0);
  });

  it("failure budget: failures within the budget complete, beyond it halt (no more hosts launched)", async () => {
    const within = setup(hosts(5));
    within.fleet.failBuild("h2");
    const ok = await within.run({ failureBudget: 1, strategy: { waves: { size: 4 }, parallelism: 1 } });
    expect(ok.state).toBe("completed");
    expect(ok.summary).toBe("completed: 4/5 hosts switched, 1 failed");
    expect(ok.hosts.h2!.reason).toMatch(/^switch failed: build failed/);

    const beyond = setup(hosts(6));
    beyond.fleet.failBuild("h1");
    beyond.fleet.failBuild("h2");
    const halted = await beyond.run({ failureBudget: { percent: 20 }, strategy: { waves: { size: 5 }, parallelism: 1 } });
    expect(halted.state).toBe("halted");
    expect(stateOf(halted)).toEqual({ h0: "succeeded", h1: "failed", h2: "failed", h3: "skipped", h4: "skipped", h5: "skipped" });
    expect(beyond.fleet.ran("h3")).toBe(0);
    // halt leaves switched hosts alone
    expect(beyond.fleet.generationOf("h0")).toBe(2);
    expect(beyond.fleet.commands.some((c) => c.op === "rollback")).toBe(false);
  });

  it("rollback-failed rolls back only failed hosts that had switched; rollback-all also the healthy ones", async () => {
    const a = setup(hosts(4));
    a.fleet.failTests("h2"); // switched, then failed: needs rollback
    const r1 = await a.run({ onFailure: "rollback-failed", strategy: { waves: { size: 3 }, parallelism: 3 } });
    expect(r1.state).toBe("rolled-back");
    expect(a.fleet.generationOf("h2")).toBe(1);
    expect(r1.hosts.h2!.state).toBe("rolled-back");
    expect(a.fleet.generationOf("h1")).toBe(2);
    expect(r1.hosts.h1!.state).toBe("succeeded");

    const b = setup(hosts(4));
    b.fleet.failBuild("h3"); // build failure: no new generation, nothing to roll back on h3
    const r2 = await b.run({ onFailure: "rollback-all", strategy: { waves: { size: 3 }, parallelism: 3 } });
    expect(r2.state).toBe("rolled-back");
    for (const h of ["h0", "h1", "h2"]) {
      expect(b.fleet.generationOf(h)).toBe(1);
      expect(r2.hosts[h]!.state).toBe("rolled-back");
    }
    expect(r2.hosts.h3!.state).toBe("failed");
    expect(r2.hosts.h3!.reason).toMatch(/nothing to roll back/);
    expect(b.fleet.ran("h3", "rollback")).toBe(0);
    const rollbacks = b.fleet.commands.filter((c) => c.op === "rollback");
    expect(rollbacks.map((c) => c.op === "rollback" && c.args.generation)).toEqual([1, 1, 1]);
    // Each host's checkout goes back to its commit from before the rollout (h3's too: it pulled the
    // update that failed to build), so a later switch rebuilds what runs; rollback-failed's healthy h1 kept the update.
    for (const h of ["h0", "h1", "h2", "h3"]) {
      expect(b.fleet.host(h)?.info?.commit).toBe(OLD_COMMIT);
      expect(r2.hosts[h]!.commitBefore).toBe(OLD_COMMIT);
      expect(r2.hosts[h]!.reason).toMatch(new RegExp(`checkout back at ${OLD_COMMIT.slice(0, 8)}`));
    }
    expect(b.fleet.commands.filter((c) => c.op === "pull" && c.args.commit === OLD_COMMIT).map((c) => c.host).sort()).toEqual(["h0", "h1", "h2", "h3"]);
    expect(a.fleet.host("h2")?.info?.commit).toBe(OLD_COMMIT);
    expect(a.fleet.host("h1")?.info?.commit).toBe(COMMIT);
  });

  it("a host that pulled but never got its switch (offline) has only its checkout put back", async () => {
    const t = setup(hosts(2));
    // h1 goes away the moment its pull succeeds, so the switch is never sent; it is back before the policy runs.
    let gone = false;
    t.fleet.onChange((c) => {
      if (gone || c.kind !== "job" || c.host !== "h1") return;
      const job = t.fleet.job("h1", c.jobId!);
      if (job?.op !== "pull" || job.state !== "succeeded") return;
      gone = true;
      t.fleet.setOnline("h1", false);
      setTimeout(() => t.fleet.setOnline("h1", true), 400);
    });
    const final = await t.run({ onFailure: "rollback-failed", strategy: { canary: 0, waves: { size: 2 }, parallelism: 1, healthTimeoutMs: 300 } });
    expect(final.hosts.h1!.state).toBe("failed");
    expect(t.fleet.commands.filter((c) => c.host === "h1").map((c) => c.op)).toEqual(["pull", "pull"]);
    expect(t.fleet.host("h1")?.info?.commit).toBe(OLD_COMMIT);
    expect(final.hosts.h1!.reason).toMatch(new RegExp(`not online within.*; checkout back at ${OLD_COMMIT.slice(0, 8)}`));
    expect(t.fleet.host("h0")?.info?.commit).toBe(COMMIT); // healthy: keeps the update
  });

  it("within the failure budget, a rollback policy still returns a host that switched and failed", async () => {
    const t = setup(hosts(4));
    t.fleet.failTests("h2"); // switched to the new generation, then its tests failed
    t.fleet.failBuild("h3"); // never switched: nothing to roll back
    const final = await t.run({ onFailure: "rollback-all", failureBudget: 2, strategy: { waves: { size: 3 }, parallelism: 1 } });
    expect(final.state).toBe("completed");
    expect(stateOf(final)).toEqual({ h0: "succeeded", h1: "succeeded", h2: "rolled-back", h3: "failed" });
    expect(t.fleet.generationOf("h2")).toBe(1);
    expect(t.fleet.generationOf("h1")).toBe(2); // the budget held: healthy hosts keep the update
    expect(t.fleet.ran("h3", "rollback")).toBe(0);

    const halt = setup(hosts(3));
    halt.fleet.failTests("h1");
    const kept = await halt.run({ onFailure: "halt", failureBudget: 1, strategy: { waves: { size: 3 }, parallelism: 1 } });
    expect(kept.state).toBe("completed");
    expect(kept.hosts.h1!.state).toBe("failed");
    expect(halt.fleet.commands.some((c) => c.op === "rollback")).toBe(false);
  });

  it("calls the revert callback once on failure and records the PR", async () => {
    const calls: unknown[] = [];
    const t = setup(hosts(2), { revert: async (ctx) => (calls.push(ctx), { number: 42, url: "https://example.test/pr/42" }) });
    t.fleet.failBuild("h0");
    const final = await t.run({ revertOnFailure: true, prNumber: 41 });
    expect(final.state).toBe("halted");
    expect(calls).toEqual([expect.objectContaining({ rolloutId: final.id, commit: COMMIT, prNumber: 41 })]);
    expect(final.revertPr).toEqual({ number: 42, url: "https://example.test/pr/42" });
    expect(actions(t.audits)).toContain("revert.opened");
    expect((await t.store.history())[0]!.revertPr?.number).toBe(42);
  });

  it("an update merged as several PRs is reverted to before its first merge", async () => {
    const calls: unknown[] = [];
    const t = setup(hosts(1), { revert: async (ctx) => (calls.push(ctx), { number: 43, url: "https://example.test/pr/43" }) });
    t.fleet.failBuild("h0");
    const first = "f".repeat(40);
    await t.run({ revertOnFailure: true, prNumber: 41, firstMergeCommit: first });
    expect(calls).toEqual([expect.objectContaining({ commit: COMMIT, firstMergeCommit: first, prNumber: 41 })]);
  });

  it("a failing revert callback is reported, not thrown", async () => {
    const t = setup(hosts(1), { revert: async () => Promise.reject(new Error("GitHub said 403")) });
    t.fleet.failBuild("h0");
    const final = await t.run({ revertOnFailure: true });
    expect(final.state).toBe("halted");
    expect(t.audits.find((a) => a.action === "revert.failed")?.details?.error).toBe("GitHub said 403");
  });

  it("health gate: a host whose compartments do not turn green fails with the reason", async () => {
    const t = setup(hosts(1));
    t.fleet.setExpectedHead("d".repeat(40)); // the fleet head moved on: git/lock stay outdated
    const final = await t.run({ strategy: { healthTimeoutMs: 100 } });
    expect(final.state).toBe("halted");
    expect(final.hosts.h0!.reason).toMatch(/^health gate: git outdated/);
    expect(final.hosts.h0!.reason).toMatch(/fleet\/expected names dddddddd as head, not cccccccc/);
    expect(t.audits.find((a) => a.action === "rollout.warning")?.details?.warning).toMatch(/the health gate waits until it is updated/);
    // Dropping git/lock from the gate deploys a non-head commit fine.
    const u = setup(hosts(1));
    u.fleet.setExpectedHead("d".repeat(40));
    const ok = await u.run({ strategy: { healthCompartments: ["system", "tests"], healthTimeoutMs: 100 } });
    expect(ok.hosts.h0!.reason).toMatch(/system outdated/); // system is only green when git and lock are
  });

  it("magic rollback: a host's switch is confirmed once its health gate passes, recorded before it is sent; a failed host's is not", async () => {
    const t = setup(hosts(2), { confirmSeconds: 120 });
    t.fleet.failTests("h1");
    const final = await t.run({ strategy: { waves: { size: 2 } }, failureBudget: { count: 1 }, onFailure: "halt" });
    expect(final.hosts.h0!.state).toBe("succeeded");
    const rec = (await t.store.load(final.id))!;
    const switchId = rec.steps["h0/switch"]!.commandId;
    expect(t.fleet.confirmedSwitches("h0")).toEqual([switchId]);
    expect(rec.steps["h0/confirm"]).toMatchObject({ step: "confirm", result: { state: "succeeded" } });
    // The confirmation is the last thing sent to the host, after its gate passed.
    expect(t.fleet.executed.filter((e) => e.host === "h0").map((e) => e.op)).toEqual(["pull", "switch", "test", "confirm"]);
    expect(final.hosts.h1!.state).toBe("failed");
    expect(t.fleet.confirmedSwitches("h1")).toEqual([]);
    expect(rec.steps["h1/confirm"]).toBeUndefined();
    // Agents with magic rollback off put no confirmBy on the switch: nothing is sent.
    const off = setup(hosts(1));
    await off.run({});
    expect(off.fleet.executed.map((e) => e.op)).not.toContain("confirm");
  });

  it("an agent restarting during the switch is waited for", async () => {
    const t = setup(hosts(2));
    t.fleet.restartDuringSwitch("h1", 50);
    const final = await t.run({});
    expect(final.state).toBe("completed");
    expect(t.fleet.ran("h1", "test")).toBe(1);
  });

  it("offline skip: hosts that went offline after planning are skipped at their turn", async () => {
    const t = setup(hosts(3));
    const plan = new RolloutPlanner().plan({ commit: COMMIT, strategy: FAST }, t.fleet.hosts());
    t.fleet.setOnline("h2", false);
    const final = await t.engine.run(plan, "alice");
    expect(final.state).toBe("completed");
    expect(final.hosts.h2).toMatchObject({ state: "skipped", reason: expect.stringMatching(/^offline/) });
    expect(t.fleet.commands.filter((c) => c.op === "pull")).toHaveLength(2);
  });

  it("offline wait: a host coming back within the limit is deployed, one that does not is skipped", async () => {
    const t = setup(hosts(3, (i) => ({ online: i === 0 })));
    setTimeout(() => t.fleet.setOnline("h1", true), 100);
    const final = await t.run({ offline: { wait: 400 }, strategy: { waves: { size: 2 }, parallelism: 2 } });
    expect(final.hosts.h1!.state).toBe("succeeded");
    expect(final.hosts.h2).toMatchObject({ state: "skipped", reason: "offline; waited 0.4 s" });
    expect(t.fleet.ran("h2")).toBe(0);
  });

  it("offline queue: the command reaches a host that reconnects in time; an expired one is rejected and the host skipped", async () => {
    const t = setup(hosts(3, (i) => ({ online: i === 0 })));
    // Reconnect relative to when each host's pull was queued: h1 well within the 400 ms expiry, h2 after it.
    t.fleet.onCommand((c) => {
      if (c.op !== "pull") return;
      if (c.host === "h1") setTimeout(() => t.fleet.setOnline("h1", true), 100);
      if (c.host === "h2") setTimeout(() => t.fleet.setOnline("h2", true), 600);
    });
    const final = await t.run({ offline: { queue: 400 }, strategy: { stepTimeouts: { pull: 100, switch: 2000, test: 2000 } } });
    expect(final.phases.at(-1)).toEqual({ name: "queued", hosts: ["h1", "h2"] });
    expect(final.hosts.h1!.state).toBe("succeeded");
    expect(final.hosts.h2).toMatchObject({ state: "skipped", reason: expect.stringMatching(/queued pull expired/) });
    expect(final.state).toBe("completed");
    // h2 gets the queued pull on reconnect and refuses it because it expired: it never runs anything.
    const pullToH2 = t.fleet.commands.find((c) => c.op === "pull" && c.host === "h2")!;
    const expiresIn = Date.parse(pullToH2.expiresAt) - Date.parse(pullToH2.issuedAt);
    expect(expiresIn).toBeGreaterThan(300);
    expect(expiresIn).toBeLessThanOrEqual(400);
    const job = await t.fleet.waitForJob("h2", pullToH2.id, 1000);
    expect(job.state).toBe("rejected");
    expect(t.fleet.ran("h2")).toBe(0);
  });

  it("cancel: stops launching hosts, reports the one mid-step as interrupted", async () => {
    const t = setup(hosts(4), { latencyMs: 100 });
    const running = t.run({ strategy: { canary: 0, waves: { size: 4 }, parallelism: 1 } });
    await t.fleet.waitForHost("h0", (h) => h.info?.commit === COMMIT, 2000);
    expect(t.engine.cancel("bob")).toBe(true);
    const final = await running;
    expect(final.state).toBe("cancelled");
    expect(final.hosts.h0!.state).toBe("interrupted");
    expect(final.hosts.h1).toMatchObject({ state: "skipped", reason: "not started: the rollout was cancelled" });
    expect(t.fleet.ran("h1")).toBe(0);
    expect(t.audits.find((a) => a.action === "rollout.cancel")?.actor).toBe("bob");
    expect(t.engine.cancel("bob")).toBe(false);
  });

  it("cancel sends stop to a host whose pull or test is in flight, and leaves a switch to finish", async () => {
    const t = setup(hosts(2), { latencyMs: 150 });
    const running = t.run({ strategy: { canary: 0, waves: { size: 2 }, parallelism: 2 } });
    // Wait until both hosts have their pull in flight (150 ms each), then cancel.
    const deadline = Date.now() + 2000;
    while (t.fleet.commands.filter((c) => c.op === "pull").length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    t.engine.cancel("carol");
    const final = await running;
    expect(final.state).toBe("cancelled");
    const stops = t.fleet.commands.filter((c) => c.op === "stop");
    expect(stops.map((c) => c.host).sort()).toEqual(["h0", "h1"]);
    expect(stops.every((c) => c.requestedBy === "carol" && c.rolloutId === final.id)).toBe(true);
    // Each stop names the job it means: a stop that arrives late never hits a later job.
    const pulls = new Map(t.fleet.commands.filter((c) => c.op === "pull").map((c) => [c.host, c.id]));
    for (const s of stops) expect(s.args).toEqual({ job: pulls.get(s.host) });
  });

  it("cancel during the soak: no wave starts, nothing is reported as an error", async () => {
    const t = setup(hosts(3));
    const running = t.run({ strategy: { soakMs: 5000 } });
    await new Promise<void>((resolve) => t.engine.on("audit", (e) => e.action === "soak.started" && resolve()));
    t.engine.cancel("carol");
    const final = await running;
    expect(final.state).toBe("cancelled");
    expect(final.hosts.h0!.state).toBe("succeeded");
    expect(final.hosts.h1).toMatchObject({ state: "skipped", reason: "not started: the rollout was cancelled" });
    expect(t.fleet.ran("h1") + t.fleet.ran("h2")).toBe(0);
  });

  it("a canary phase where every canary was skipped stops the rollout", async () => {
    const t = setup(hosts(3));
    const plan = new RolloutPlanner().plan({ commit: COMMIT, strategy: FAST }, t.fleet.hosts());
    t.fleet.setOnline("h0", false); // the canary went away after planning
    const final = await t.engine.run(plan, "alice");
    expect(final.state).toBe("halted");
    expect(final.hosts.h0!.state).toBe("skipped");
    expect(t.fleet.ran("h1") + t.fleet.ran("h2")).toBe(0);
    expect(t.audits.find((a) => a.action === "rollout.canary-failed")?.details?.detail).toMatch(/no canary host could be deployed/);
  });
});
