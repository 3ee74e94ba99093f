/**
 * Rollouts on a FakeFleet with their own store directory: a RolloutService on three hosts (a, b,
 * and c held by an operator; the rollout-service and hub-metrics tests), or a bare RolloutEngine on
 * the fleet a test describes, with its audit events collected (the engine-level tests).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuditEvent } from "../../protocol/index.js";
import { RolloutEngine } from "../../rollout/engine.js";
import { RolloutService } from "../../rollout/service.js";
import { RolloutStore } from "../../rollout/store.js";
import { FakeFleet, type FakeFleetOptions } from "./fake-fleet.js";

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

/** A RolloutEngine on a FakeFleet of `options`; `close` stops the fleet and removes the store. */
export function engineOnFakeFleet(options: FakeFleetOptions) {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-engine-"));
  const fleet = new FakeFleet(options);
  const engine = new RolloutEngine({ fleet, store: new RolloutStore(dir), progressIntervalMs: 5 });
  const audits: AuditEvent[] = [];
  engine.on("audit", (e) => audits.push(e));
  const close = () => {
    fleet.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { fleet, engine, audits, close };
}
