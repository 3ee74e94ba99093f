/**
 * Steps that do not end by themselves: a hung step cancelled by an operator, a final job state
 * that never arrives. The real hub process and MQTT agents of the storage rows (storage.ts).
 */
import type { AuditEvent } from "../../../protocol/index.js";
import { OPERATOR } from "../../support/storage-fault-hub.js";
import { Checks, seconds, type FaultRow } from "../row.js";
import { storageHub } from "./storage.js";

const PULL_TIMEOUT_MS = 10 * 60_000; // the default step timeout the cancel must not wait out

export const stepCancel: FaultRow = {
  name: "step-cancel",
  scenario: "a host's pull hangs (its agent never answers) in a rollout of a real hub; an operator cancels it: POST /api/rollouts/:id/hosts/:host/cancel",
  expected: "200; the host fails with 'pull cancelled: cancelled by api:<operator>', step.cancelled audited with who, the rollout applies its failure policy (halted), long before the 10-minute pull timeout",
  // About 6 s, most of it the hub's start (when no earlier row made it).
  speed: "fast",
  async run(ctx) {
    const c = new Checks();
    const h = await storageHub(ctx);
    const host = "alpha";
    const { id, release } = await h.installHeldAt(host, "pull");
    // The agent finishes its pull only after the row (its job is no longer the rollout's by then).
    ctx.cleanup(release);
    const t0 = Date.now();
    const res = await fetch(`${h.hub.baseUrl}/api/rollouts/${id}/hosts/${host}/cancel`, { method: "POST", headers: { authorization: h.auth } });
    const body = (await res.json()) as Record<string, unknown>;
    c.see(`cancel answered ${res.status}`);
    c.expect(res.status === 200 && body.cancelled === true, `cancel answered ${res.status} ${JSON.stringify(body)}`);

    const final = await h.watch.until(`rollout ${id}'s final state`, () => h.watch.progress.find((p) => p.id === id && h.watch.finalStates(id).includes(p.state)));
    const took = Date.now() - t0;
    const reason = final.hosts[host]?.reason ?? "";
    c.see(`rollout ${final.state} ${seconds(took)} after the cancel; ${host} ${final.hosts[host]?.state}: ${reason}`);
    c.expect(final.hosts[host]?.state === "failed" && reason === `pull cancelled: cancelled by api:${OPERATOR.name}`, `${host} is ${final.hosts[host]?.state} (${reason})`);
    c.expect(final.state === "halted" || final.state === "failed", `the rollout ended ${final.state}, not by its failure policy`);
    c.expect(took < PULL_TIMEOUT_MS / 10, `the cancel took ${seconds(took)}`);
    c.expect(h.watch.finalStates(id).length === 1, `final states: ${h.watch.finalStates(id).join(", ")}`);

    const cancelled = (await h.auditApi()).filter((e: AuditEvent) => e.action === "step.cancelled" && e.target === host && e.details?.rolloutId === id);
    c.see(`audit: step.cancelled ×${cancelled.length} by ${cancelled.map((e) => e.actor).join(", ")}`);
    c.expect(cancelled.length === 1 && cancelled[0]!.actor === `api:${OPERATOR.name}`, "step.cancelled not audited once with the operator");
    const stops = h.agents[host]!.received.filter((x) => x.op === "stop" && x.rolloutId === id);
    c.see(`${host} got ${stops.length} stop`);
    c.expect(stops.length === 1, `${host} got ${stops.length} stop commands`);
    return c.outcome();
  },
};

const SWITCH_TIMEOUT_MS = 60 * 60_000; // the default switch timeout a lost final state must not wait out

export const lostFinalState: FaultRow = {
  name: "lost-final-state",
  scenario: "a host's switch succeeds but its final job state never reaches the hub (lost on the way); the agent keeps it in its job history",
  expected: "the hub asks the host (report {job}, step.asked audited) after askHostMs (the default 2 minutes: this hub configures none) and the rollout completes from the answer, long before the 60-minute switch timeout; no step twice",
  speed: "slow",
  timeoutMs: 6 * 60_000,
  async run(ctx) {
    const c = new Checks();
    const h = await storageHub(ctx);
    const host = "beta";
    const agent = h.agents[host]!;
    const sentBefore = agent.received.length;
    agent.loseFinal("switch");
    const known = h.knownRollouts();
    const t0 = Date.now();
    await h.install(host);
    const id = await h.rolloutOf(host, known);
    const final = await h.watch.until(`rollout ${id}'s final state`, () => h.watch.progress.find((p) => p.id === id && h.watch.finalStates(id).includes(p.state)), 5 * 60_000).catch((err: Error) => {
      const last = h.watch.progress.filter((p) => p.id === id).at(-1);
      throw new Error(`${err.message} (rollout ${last?.state}, ${host} ${JSON.stringify(last?.hosts[host])}; ${host} got ${agent.received.slice(sentBefore).map((x) => `${x.op} ${JSON.stringify(x.args)}`).join(", ")})`);
    });
    const took = Date.now() - t0;
    const ops = agent.received.slice(sentBefore).map((x) => x.op);
    c.see(`rollout ${final.state} in ${seconds(took)}; ${host} ${final.hosts[host]?.state}; ${host} got ${ops.join(", ")}`);
    c.expect(final.state === "completed" && final.hosts[host]?.state === "succeeded", `the rollout ended ${final.state} (${host}: ${final.hosts[host]?.state} ${final.hosts[host]?.reason ?? ""})`);
    c.expect(ops.includes("report"), "the hub never asked the host (no report op)");
    const steps = ops.filter((op) => op !== "report");
    c.expect(new Set(steps).size === steps.length, "a step was sent twice");
    c.expect(took < SWITCH_TIMEOUT_MS / 10, `it took ${seconds(took)}`);
    const asked = (await h.auditApi()).filter((e: AuditEvent) => e.action === "step.asked" && e.target === host && e.details?.rolloutId === id);
    c.see(`audit: step.asked ×${asked.length} (${asked.map((e) => String(e.details?.step)).join(", ")})`);
    c.expect(asked.length >= 1, "step.asked not audited");
    return c.outcome();
  },
};
