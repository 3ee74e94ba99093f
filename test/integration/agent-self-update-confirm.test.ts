/**
 * The agent daemon and a standalone self-update on one host: the hub's `confirm` for a self-update
 * run reaches both (same commands topic). While that run holds the self-update lock the daemon
 * leaves it to the run (no job state of its own, which would race the run's); without a live run,
 * the daemon answers it as before ("not awaiting confirmation").
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { acquireSelfUpdateLock } from "../../agent/self-update/lock.js";
import { statePaths } from "../../agent/config.js";
import { TestFleet } from "../fleet/fleet.js";
import { startTestBroker, type TestBroker } from "../support/brokers.js";

describe("a self-update's confirmation on a host that also runs the agent daemon", () => {
  let root: string;
  let broker: TestBroker;
  let fleet: TestFleet;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lockstep-self-update-confirm-"));
    broker = await startTestBroker({ kind: "aedes" });
    fleet = await TestFleet.create({ root, hosts: ["alpha"], broker, logLevel: "info" });
  }, 120_000);

  afterAll(async () => {
    await fleet?.stop();
    await broker?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("is left to the running self-update, and answered by the daemon when no run is live", async () => {
    const lock = acquireSelfUpdateLock(statePaths(fleet.paths("alpha").stateDir).selfUpdateLock);
    const confirm = fleet.command("confirm", { job: "self-update-20261204T220000Z-abcd" });
    try {
      await fleet.sendCommand("alpha", confirm);
      // Commands are handled in order: once the refresh after it is done, the confirm was handled too.
      const refresh = await fleet.runCommand("alpha", "refresh");
      expect(refresh.state).toBe("succeeded");
      expect(fleet.job("alpha", confirm.id)).toBeUndefined();
    } finally {
      lock.release();
    }
    const again = await fleet.runCommand("alpha", "confirm", { job: "self-update-20261204T220000Z-abcd" });
    expect(again.state).toBe("rejected");
    expect(again.summary).toBe("switch self-update-20261204T220000Z-abcd is not awaiting confirmation (nothing is)");
  }, 120_000);
});
