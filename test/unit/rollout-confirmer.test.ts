import { afterEach, describe, expect, it } from "vitest";
import pino from "pino";
import { SwitchConfirmer } from "../../rollout/confirmer.js";
import { FakeFleet } from "../support/fake-fleet.js";

const NEW = "b".repeat(40);
const cleanups: Array<() => void> = [];
afterEach(() => cleanups.splice(0).forEach((f) => f()));

function setup(confirmSeconds: number) {
  const fleet = new FakeFleet({ hosts: [{ host: "h0" }, { host: "h1" }], confirmSeconds });
  const confirmer = new SwitchConfirmer(fleet, pino({ level: "silent" }));
  cleanups.push(() => {
    confirmer.stop();
    fleet.close();
  });
  const meta = (id: string, rolloutId?: string) => ({ id, expiresAt: new Date(Date.now() + 60_000), requestedBy: "alice", ...(rolloutId ? { rolloutId } : {}) });
  return { fleet, meta };
}

describe("SwitchConfirmer: the hub confirms switches no rollout owns", () => {
  it("confirms a manual switch once its host reports the new generation, and only once", async () => {
    const { fleet, meta } = setup(120);
    await fleet.sendCommand("h0", "pull", { commit: NEW }, meta("p1"));
    await fleet.waitForJob("h0", "p1", 5000);
    await fleet.sendCommand("h0", "switch", { commit: NEW }, meta("s1"));
    const sw = await fleet.waitForJob("h0", "s1", 5000);
    expect(sw.confirmBy).toBeDefined();
    await fleet.waitForHost("h0", () => fleet.confirmedSwitches("h0").length > 0, 5000);
    expect(fleet.confirmedSwitches("h0")).toEqual(["s1"]);
    const confirms = fleet.executed.filter((e) => e.op === "confirm");
    expect(confirms).toHaveLength(1);
    expect(fleet.job("h0", confirms[0]!.id)).toMatchObject({ state: "succeeded", requestedBy: "lockstep hub (switch confirmation)" });
  });

  it("leaves a rollout's switch to the rollout engine, and a host that stays offline unconfirmed", async () => {
    const { fleet, meta } = setup(120);
    await fleet.sendCommand("h0", "switch", {}, meta("s-rollout", "r-1"));
    await fleet.waitForJob("h0", "s-rollout", 5000);
    fleet.restartDuringSwitch("h1", 50);
    fleet.setOnline("h1", false);
    await fleet.sendCommand("h1", "switch", {}, meta("s-offline"));
    // Nothing arrives while h1 is offline; h0's rollout switch is not ours to confirm.
    await fleet.waitForJob("h0", "s-rollout", 5000);
    expect(fleet.executed.filter((e) => e.op === "confirm")).toEqual([]);
    fleet.setOnline("h1", true);
    await fleet.waitForHost("h1", () => fleet.confirmedSwitches("h1").length > 0, 5000);
    expect(fleet.confirmedSwitches("h1")).toEqual(["s-offline"]);
    expect(fleet.confirmedSwitches("h0")).toEqual([]);
  });

  it("does not confirm a switch whose deadline has passed (the agent rolls it back)", async () => {
    const { fleet, meta } = setup(0);
    await fleet.sendCommand("h0", "switch", {}, meta("s-late"));
    await fleet.waitForJob("h0", "s-late", 5000);
    await fleet.sendCommand("h0", "refresh", {}, meta("r-after"));
    await fleet.waitForJob("h0", "r-after", 5000);
    expect(fleet.executed.filter((e) => e.op === "confirm")).toEqual([]);
  });
});
