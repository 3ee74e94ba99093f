import { Checks, type FaultRow } from "../row.js";
import { faultWorld, rolloutOutcome } from "../world.js";

/** A host's network goes down (its TCP proxy drops every connection) while it switches, and comes back. */
export const networkCut: FaultRow = {
  name: "agent-network-cut-mid-switch",
  scenario: "a host's network to the broker is cut while its switch builds; it comes back once the switch has landed on the host",
  expected: "the host reads offline; the switch finishes on the host; after the network is back the agent reports it; the rollout completes; no step twice, no result lost",
  speed: "slow",
  async run(ctx) {
    const c = new Checks();
    const fw = await faultWorld(ctx);
    const { world } = fw;
    const host = "gamma";
    const proxy = fw.proxies.get(host)!;
    ctx.cleanup(() => proxy.restore());
    const before = world.fleet.generation(host).generation ?? 0;
    const { jobId, commit } = await fw.deploy({ slow: { [host]: 15 } });
    await fw.switchRunning(host, jobId);
    ctx.log(`${host} is switching: cut its network`);
    await proxy.cut();
    await world.waitForAvailability(host, "offline", 120_000);
    // The switch lands on the host while nobody can hear about it.
    await world.fleet.until(() => (world.fleet.generation(host).generation ?? 0) > before || undefined, 240_000, `${host}'s switch to land`);
    c.see(`${host} offline, switched to generation ${world.fleet.generation(host).generation} without a network`);
    await proxy.restore();
    const { final, twice } = await rolloutOutcome(fw, c, jobId, commit, host);
    c.expect(final.state === "completed" && final.hosts[host]?.state === "succeeded", `the rollout ended ${final.state} (${host}: ${final.hosts[host]?.state})`);
    c.expect(!twice, "a step ran twice");
    return c.outcome();
  },
};
