import { Checks, type FaultRow } from "../row.js";
import { faultWorld, rolloutOutcome } from "../world.js";

/** The hub dies (SIGKILL, no clean stop) while a host switches; it is started again on the same data dir. */
export const hubSigkill: FaultRow = {
  name: "hub-sigkill-mid-rollout",
  scenario: "merge-and-deploy to 3 real agents; the hub is SIGKILLed while the canary's switch runs, then started again",
  expected: "the rollout resumes from its record and completes; no step runs twice; every host at the merge commit; the unclean stop is audited",
  speed: "slow",
  async run(ctx) {
    const c = new Checks();
    const fw = await faultWorld(ctx);
    const { world } = fw;
    const { jobId, commit } = await fw.deploy({ slow: { alpha: 15 } });
    await fw.switchRunning("alpha", jobId);
    ctx.log("alpha is switching: SIGKILL the hub");
    await world.restartHub({}, "SIGKILL");
    const { final, twice, atCommit } = await rolloutOutcome(fw, c, jobId, commit);
    c.expect(final.state === "completed", `the rollout ended ${final.state}`);
    c.expect(!twice, "a step ran twice");
    c.expect(atCommit === 3, "not every host is at the merge commit");
    const audit = await world.api("GET", "/api/audit?limit=500");
    const actions = ((audit.body as { events?: Array<{ action: string }> }).events ?? []).map((e) => e.action);
    const unclean = actions.filter((a) => a === "hub.unclean-stop").length;
    const recovered = actions.filter((a) => a === "command.recovered").length;
    c.see(`audit: hub.unclean-stop ×${unclean}, command.recovered ×${recovered}`);
    c.expect(unclean >= 1, "the unclean stop was not audited");
    return c.outcome();
  },
};
