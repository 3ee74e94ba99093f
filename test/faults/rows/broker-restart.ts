import { mosquittoAvailable } from "../../support/mosquitto.js";
import { Checks, type FaultRow } from "../row.js";
import { faultWorld, rolloutOutcome } from "../world.js";

/** The broker everybody talks through (an external Mosquitto here) restarts while a host switches. */
export const brokerRestart: FaultRow = {
  name: "broker-restart-mid-rollout",
  scenario: "the hub and 3 agents use an external Mosquitto; it is restarted while a host's switch builds",
  expected: "hub and agents reconnect; the switch's result arrives; the rollout completes; no step twice",
  speed: "slow",
  async run(ctx) {
    const c = new Checks();
    if (!mosquittoAvailable()) return { observed: "Mosquitto is not installed (scripts/setup.sh installs it)", pass: false };
    const fw = await faultWorld(ctx, "mosquitto");
    const { world } = fw;
    const host = "beta";
    const { jobId, commit } = await fw.deploy({ slow: { [host]: 20 } });
    await fw.switchRunning(host, jobId);
    ctx.log(`${host} is switching: restart Mosquitto`);
    const t0 = Date.now();
    await world.externalBroker!.restart();
    c.see(`Mosquitto back after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const { final, twice, atCommit } = await rolloutOutcome(fw, c, jobId, commit, host);
    c.expect(final.state === "completed" && final.hosts[host]?.state === "succeeded", `the rollout ended ${final.state} (${host}: ${final.hosts[host]?.state})`);
    c.expect(!twice, "a step ran twice");
    c.expect(atCommit === 3, "not every host is at the merge commit");
    return c.outcome();
  },
};
