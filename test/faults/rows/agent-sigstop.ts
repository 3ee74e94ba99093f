import { Checks, type FaultRow } from "../row.js";
import { faultWorld, rolloutOutcome } from "../world.js";

/** A host's agent hangs (SIGSTOP) in the middle of its switch, past the broker's keepalive, then goes on. */
export const agentSigstop: FaultRow = {
  name: "agent-sigstop-mid-switch",
  scenario: "a host's agent is SIGSTOPped while its switch builds, until the broker declares it offline (keepalive), then SIGCONTed",
  expected: "the host reads offline meanwhile; after SIGCONT it reconnects and reports the switch; the rollout completes; no step twice",
  speed: "slow",
  async run(ctx) {
    const c = new Checks();
    const fw = await faultWorld(ctx);
    const { world } = fw;
    const host = "beta";
    const { jobId, commit } = await fw.deploy({ slow: { [host]: 30 } });
    await fw.switchRunning(host, jobId);
    const pid = world.fleet.agentProcess(host).pid!;
    ctx.log(`${host} is switching: SIGSTOP its agent (pid ${pid})`);
    process.kill(pid, "SIGSTOP");
    let continued = false;
    const cont = () => {
      if (!continued) process.kill(pid, "SIGCONT");
      continued = true;
    };
    ctx.cleanup(cont);
    const t0 = Date.now();
    await world.waitForAvailability(host, "offline", 120_000);
    c.see(`${host} offline after ${((Date.now() - t0) / 1000).toFixed(0)} s stopped`);
    cont();
    const { final, twice } = await rolloutOutcome(fw, c, jobId, commit, host);
    c.expect(final.state === "completed" && final.hosts[host]?.state === "succeeded", `the rollout ended ${final.state} (${host}: ${final.hosts[host]?.state})`);
    c.expect(!twice, "a step ran twice");
    c.expect(world.fleet.agentProcess(host).starts === 1 || world.fleet.isAgentRunning(host), "the agent did not survive");
    return c.outcome();
  },
};
