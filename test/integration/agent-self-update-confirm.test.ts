/**
 * The agent daemon and a standalone self-update on one host: the hub's `confirm` for a self-update
 * run reaches both (same commands topic). While that run holds the self-update lock the daemon
 * leaves it to the run (no job state of its own, which would race the run's), also to a run killed
 * while it waited (the next run finishes it); otherwise the daemon answers it as before ("not
 * awaiting confirmation").
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { acquireSelfUpdateLock } from "../../agent/self-update/lock.js";
import { selfUpdatePendingFile } from "../../agent/self-update/confirmation.js";
import { startRunRecord } from "../../agent/self-update/runlog.js";
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

  it("is left to a killed self-update run that still awaits it (the next run takes it from its own session)", async () => {
    const stateDir = fleet.paths("alpha").stateDir;
    const id = "self-update-20261205T010000Z-beef";
    const run = { ...startRunRecord("self-update", { host: "alpha", mode: "flake-update" }, new Date()), id, outcome: "succeeded" as const, summary: "switched to generation 2" };
    const pending = selfUpdatePendingFile(stateDir);
    pending.write({ job: id, deadline: new Date(Date.now() + 600_000).toISOString(), timeoutSeconds: 600, generationBefore: 1, generationAfter: 2, run, pid: 999_999 });
    try {
      const confirm = fleet.command("confirm", { job: id });
      await fleet.sendCommand("alpha", confirm);
      expect((await fleet.runCommand("alpha", "refresh")).state).toBe("succeeded");
      expect(fleet.job("alpha", confirm.id)).toBeUndefined();
    } finally {
      pending.clear();
    }
  }, 120_000);
});
