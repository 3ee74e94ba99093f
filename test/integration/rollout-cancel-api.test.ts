/**
 * Cancelling a host's running step through the hub's API route (`POST /api/rollouts/:id/hosts/:host/cancel`,
 * the real handler and error handler on an express app, as hub/start.ts mounts them) over a running
 * RolloutService on the fake fleet: a host whose pull hangs is cancelled by an operator; the stop
 * names its job, the audit says who, and the rollout applies its failure policy.
 */
import type { AddressInfo } from "node:net";
import { createServer, type Server } from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { apiErrorHandler } from "../../hub/api.js";
import { CANCEL_STEP_PATH, cancelStepHandler } from "../../hub/rollout-api.js";
import { main as lockstep } from "../../hub/cli.js";
import { RolloutService } from "../../rollout/service.js";
import { RolloutStore } from "../../rollout/store.js";
import type { AuditEvent, Command } from "../../protocol/schemas.js";
import { FakeFleet } from "../support/fake-fleet.js";

const COMMIT = "c".repeat(40);
const HOUR = 3_600_000;
const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Express = { (req: unknown, res: unknown): void; post(path: string, ...h: unknown[]): void; use(...h: unknown[]): void };

async function world() {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-cancel-api-"));
  // The pull takes an hour: the host hangs mid-step.
  const fleet = new FakeFleet({ hosts: [{ host: "alpha", priority: 1 }, { host: "beta", priority: 2 }], latencyMs: HOUR, expectedHead: COMMIT });
  const rollouts = new RolloutService({ fleet, store: new RolloutStore(dir), progressIntervalMs: 5 });
  const audits: AuditEvent[] = [];
  rollouts.events.on("audit", (e) => audits.push(e));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanups.push(() => fleet.close());
  cleanups.push(() => rollouts.close());
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const app = (require("express") as () => Express)();
  // Stands for nodeRed.apiAuth: the operator who called.
  app.post(CANCEL_STEP_PATH, (req: { lockstepUser?: unknown }, _res: unknown, next: () => void) => ((req.lockstepUser = { name: "olga", role: "operator" }), next()), cancelStepHandler(() => rollouts));
  app.use(apiErrorHandler(pino({ level: "silent" })));
  const server: Server = createServer((req, res) => app(req, res));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const cancel = async (id: string, host: string) => {
    const res = await fetch(`${base}/api/rollouts/${id}/hosts/${host}/cancel`, { method: "POST" });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  /** The terminal CLI against this API (an operator's credentials from the environment). */
  const cli = async (...argv: string[]) => {
    let stdout = "";
    let stderr = "";
    const configFile = join(dir, "cli-config.json"); // empty: the environment says everything
    writeFileSync(configFile, "{}");
    const env = { LOCKSTEP_HUB: base, LOCKSTEP_USER: "olga", LOCKSTEP_PASSWORD: "secret", LOCKSTEP_CLI_CONFIG: configFile };
    const code = await lockstep(argv, { stdout: (x) => void (stdout += x), stderr: (x) => void (stderr += x), env });
    return { code, stdout, stderr };
  };
  return { fleet, rollouts, audits, cancel, cli };
}

describe("POST /api/rollouts/:id/hosts/:host/cancel", () => {
  it("cancels a hung pull: stop {job} goes to the host, the step is cancelled by the operator, the rollout halts", async () => {
    const t = await world();
    const pulled = new Promise<Command & { host: string }>((resolve) => t.fleet.onCommand((c) => c.op === "pull" && resolve(c)));
    const id = t.rollouts.start({ commit: COMMIT, strategy: { canary: ["alpha"], soakMs: 0, stepTimeouts: { pull: HOUR, switch: HOUR, test: HOUR } } }, "alice");
    const pull = await pulled;
    expect(pull.host).toBe("alpha");

    expect(await t.cancel(id, "beta")).toEqual({ status: 409, body: { error: expect.stringContaining("nothing to cancel: host beta runs no step (it is pending)"), code: "rollout-step-not-running" } });
    expect(await t.cancel(id, "alpha")).toEqual({ status: 200, body: { cancelled: true, rollout_id: id, host: "alpha" } });

    const final = await t.rollouts.wait(id);
    expect(final.state).toBe("halted"); // a canary failed; onFailure halt
    expect(final.hosts.alpha).toMatchObject({ state: "failed", reason: "pull cancelled: cancelled by api:olga" });
    expect(final.hosts.beta!.state).toBe("skipped");
    expect(t.fleet.commands.filter((c) => c.op === "stop")).toEqual([expect.objectContaining({ host: "alpha", args: { job: pull.id }, requestedBy: "api:olga", rolloutId: id })]);
    expect(t.audits.filter((a) => a.action === "step.cancelled")).toEqual([expect.objectContaining({ actor: "api:olga", target: "alpha", details: expect.objectContaining({ step: "pull", commandId: pull.id }) })]);

    expect((await t.cancel(id, "alpha")).body).toMatchObject({ code: "rollout-step-not-running", error: expect.stringContaining(`rollout ${id} is not running`) });
  });

  it("lockstep rollout cancel ID HOST goes through the same route", async () => {
    const t = await world();
    const pulled = new Promise<Command & { host: string }>((resolve) => t.fleet.onCommand((c) => c.op === "pull" && resolve(c)));
    const id = t.rollouts.start({ commit: COMMIT, selection: { hosts: ["alpha"] }, strategy: { canary: 0, soakMs: 0, stepTimeouts: { pull: HOUR, switch: HOUR, test: HOUR } } }, "alice");
    await pulled;
    const bad = await t.cli("rollout", "cancel", id, "Not_A_Host");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/"Not_A_Host" is not a host id/);
    const done = await t.cli("rollout", "cancel", id, "alpha");
    expect(done).toEqual({ code: 0, stdout: `cancelled the step alpha was running in rollout ${id}: the host fails and the rollout applies its failure policy\n`, stderr: "" });
    expect((await t.rollouts.wait(id)).hosts.alpha).toMatchObject({ state: "failed", reason: "pull cancelled: cancelled by api:olga" });
    const again = await t.cli("rollout", "cancel", id, "alpha");
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/409 nothing to cancel: rollout .* is not running/);
  });

  it("answers an unknown rollout with 404 and a bad host id with 400", async () => {
    const t = await world();
    expect(await t.cancel("r-nope", "alpha")).toMatchObject({ status: 404, body: { code: "rollout-not-found" } });
    expect(await t.cancel("r-nope", "Not_A_Host")).toMatchObject({ status: 400, body: { error: expect.stringMatching(/^host: /) } });
  });
});
