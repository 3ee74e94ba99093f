/**
 * A step whose job's final state is missing asks its host instead of waiting out its timeout, and
 * an operator can cancel a host's running step (the rollout's failure policy then applies).
 */
import { afterEach, describe, expect, it } from "vitest";
import { engineOnFakeFleet } from "../support/rollout-fixture.js";
import { RolloutPlanner } from "../../rollout/planner.js";
import type { RolloutSpecInput } from "../../rollout/spec.js";
import type { Command } from "../../protocol/schemas.js";
import type { FakeHostOptions } from "../support/fake-fleet.js";

const COMMIT = "c".repeat(40);
const HOUR = 3_600_000;
/** Step timeouts of an hour: a test that waited one out would never end. */
const SLOW_TIMEOUTS = { soakMs: 0, canary: 0, stepTimeouts: { pull: HOUR, switch: HOUR, test: HOUR }, healthTimeoutMs: 2000 };

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function setup(hosts: FakeHostOptions[], latencyMs = 1) {
  const { fleet, engine, audits, close } = engineOnFakeFleet({ hosts, latencyMs, expectedHead: COMMIT });
  cleanups.push(close);
  const run = (spec: Omit<RolloutSpecInput, "commit">) => engine.run(new RolloutPlanner().plan({ commit: COMMIT, ...spec }, fleet.hosts()), "alice");
  /** Resolves with the first command of `op` sent to `host`. */
  const sent = (host: string, op: string) =>
    new Promise<Command>((resolve) => fleet.onCommand((c) => c.host === host && c.op === op && resolve(c)));
  return { fleet, engine, audits, run, sent };
}

describe("a step whose final job state is missing asks its host", () => {
  it("while the host is online: the lost switch's success completes the step, nothing is rolled back", async () => {
    const t = setup([{ host: "h0" }]);
    t.fleet.loseNextFinalState("h0", "switch");
    const final = await t.run({ onFailure: "rollback-failed", strategy: { ...SLOW_TIMEOUTS, askHostMs: 20 } });
    expect(final.state).toBe("completed");
    expect(final.hosts.h0).toMatchObject({ state: "succeeded", generationAfter: 2 });
    expect(t.fleet.commands.filter((c) => c.op === "rollback")).toEqual([]);
    const asked = t.audits.find((a) => a.action === "step.asked");
    expect(asked).toMatchObject({ target: "h0", details: { step: "switch", reason: expect.stringMatching(/^no final state after/) } });
    expect(t.fleet.commands.find((c) => c.op === "report")?.args).toEqual({ job: final.hosts.h0!.jobIds[1], op: "switch" });
  });

  it("when the host comes back online (no timer): a switch that restarted the agent and whose result was lost", async () => {
    const t = setup([{ host: "h0" }]);
    t.fleet.restartDuringSwitch("h0", 30);
    t.fleet.loseNextFinalState("h0", "switch");
    const final = await t.run({ onFailure: "rollback-failed", strategy: { ...SLOW_TIMEOUTS, askHostMs: 0 } });
    expect(final.hosts.h0!.state).toBe("succeeded");
    expect(t.audits.find((a) => a.action === "step.asked")?.details?.reason).toBe("the host is back online");
  });

  it("a command that never reached the host ends its step as rejected at once (and will never run)", async () => {
    const t = setup([{ host: "h0" }]);
    t.fleet.dropNextDelivery("h0", "test");
    const final = await t.run({ strategy: { ...SLOW_TIMEOUTS, askHostMs: 20 } });
    expect(final.state).toBe("halted");
    expect(final.hosts.h0).toMatchObject({ state: "failed", reason: expect.stringMatching(/^test rejected: the command never reached this host/) });
    expect(t.fleet.ran("h0", "test")).toBe(0);
  });
});

describe("cancelling a host's running step", () => {
  it("stops waiting, stops the job on the host, records it as cancelled by the operator, and applies the failure policy", async () => {
    const t = setup([{ host: "h0" }, { host: "h1" }], 60_000);
    const pull = t.sent("h0", "pull");
    const running = t.run({ strategy: { ...SLOW_TIMEOUTS, waves: { size: 1 }, parallelism: 1 } });
    const cmd = await pull;
    await t.fleet.waitForHost("h0", () => t.fleet.job("h0", cmd.id)?.state === "running", 5000); // it takes a minute
    expect(t.engine.cancelStep("h0", "bob")).toBeUndefined();
    const final = await running;
    expect(final.state).toBe("halted"); // failure budget 0, onFailure halt
    expect(final.hosts.h0).toMatchObject({ state: "failed", reason: "pull cancelled: cancelled by bob" });
    expect(final.hosts.h1).toMatchObject({ state: "skipped" });
    const stop = t.fleet.commands.find((c) => c.op === "stop");
    expect(stop).toMatchObject({ host: "h0", args: { job: cmd.id }, requestedBy: "bob" });
    expect(t.audits.find((a) => a.action === "step.cancelled")).toMatchObject({ actor: "bob", target: "h0", details: { step: "pull", commandId: cmd.id, stopSent: true } });
  });

  it("a cancelled switch is not cut short on the host; under rollback-failed the host is rolled back after it", async () => {
    const t = setup([{ host: "h0" }], 200);
    const sw = t.sent("h0", "switch");
    const running = t.run({ onFailure: "rollback-failed", strategy: SLOW_TIMEOUTS });
    await sw;
    expect(t.engine.cancelStep("h0", "carol")).toBeUndefined();
    const final = await running;
    expect(t.fleet.commands.filter((c) => c.op === "stop")).toEqual([]);
    expect(final.hosts.h0).toMatchObject({ state: "rolled-back", reason: expect.stringContaining("switch cancelled: cancelled by carol (the switch itself is left to finish on the host)") });
    expect(t.fleet.generationOf("h0")).toBe(1);
  });

  it("cancels the health gate's wait too, and refuses what runs no step", async () => {
    const t = setup([{ host: "h0" }, { host: "h1" }]);
    const gate = new Promise<void>((resolve) =>
      t.engine.on("audit", (e) => {
        if (e.action !== "command.finished" || e.details?.step !== "test" || e.target !== "h0") return;
        t.fleet.setOnline("h0", false); // the health gate now waits for it (an hour)
        resolve();
      }),
    );
    const running = t.run({ strategy: { ...SLOW_TIMEOUTS, waves: { size: 1 }, parallelism: 1, healthTimeoutMs: HOUR } });
    expect(t.engine.cancelStep("nope", "bob")).toBe("host nope is not part of this rollout");
    expect(t.engine.cancelStep("h1", "bob")).toBe("host h1 runs no step (it is pending)");
    await gate;
    expect(t.engine.cancelStep("h0", "bob")).toBeUndefined();
    expect(t.engine.cancelStep("h0", "bob")).toBe("the step of h0 is being cancelled already");
    const final = await running;
    expect(final.hosts.h0).toMatchObject({ state: "failed", reason: "cancelled by bob while verifying" });
    expect(t.audits.find((a) => a.action === "step.cancelled")).toMatchObject({ actor: "bob", target: "h0", details: { state: "verifying" } });
    expect(t.engine.cancelStep("h0", "bob")).toBe("the rollout is not running");
  });
});
