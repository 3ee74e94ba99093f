/**
 * A RolloutService on a FakeFleet of three hosts (a, b, and c held by an operator), with its own
 * store directory: the setup the rollout-service and hub-metrics tests share.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RolloutService } from "../../rollout/service.js";
import { RolloutStore } from "../../rollout/store.js";
import { FakeFleet } from "./fake-fleet.js";

export function serviceOnFakeFleet(latencyMs: number, expectedHead: string) {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-service-"));
  const fleet = new FakeFleet({ hosts: [{ host: "a", priority: 1 }, { host: "b", priority: 2 }, { host: "c", priority: 3, hold: true }], latencyMs, expectedHead });
  const service = new RolloutService({ fleet, store: new RolloutStore(dir), progressIntervalMs: 5, resumeGraceMs: 100 });
  const close = async () => {
    await service.close();
    fleet.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { dir, fleet, service, close };
}
