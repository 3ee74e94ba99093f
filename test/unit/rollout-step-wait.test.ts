/**
 * waitForStepJob: the port's own wait for the job plus asking the host, and nothing left behind
 * (no listener, no ask timer) however the wait ends.
 */
import { describe, expect, it } from "vitest";
import type { JobState, JobStateName } from "../../protocol/schemas.js";
import { WaitAbortedError } from "../../rollout/errors.js";
import { waitForHostState, waitForTerminalJob, type FleetChange, type FleetPort, type HostSnapshot } from "../../rollout/fleet-port.js";
import { JobStateLost, waitForStepJob, type StepWait } from "../../rollout/step-wait.js";

const HOST = "h0";

/** One online host; its jobs are set by the test; every sent command is recorded. */
function port() {
  const listeners = new Set<(c: FleetChange) => void>();
  const jobs = new Map<string, JobState>();
  const sent: Array<{ op: string; id: string; args: unknown }> = [];
  const snapshot: HostSnapshot = { host: HOST, availability: "online", compartments: {} };
  const fleet: FleetPort = {
    hosts: () => [snapshot],
    host: (h) => (h === HOST ? snapshot : undefined),
    sendCommand: async (_h, op, args, meta) => (sent.push({ op, id: meta.id!, args }), meta.id!),
    job: (_h, id) => jobs.get(id),
    waitForJob: (h, id, ms, signal) => waitForTerminalJob(fleet, h, id, ms, signal),
    waitForHost: (h, p, ms, signal) => waitForHostState(fleet, h, p, ms, signal),
    onChange: (l) => (listeners.add(l), () => listeners.delete(l)),
  };
  const publish = (id: string, state: JobStateName, summary: string = state) => {
    jobs.set(id, { id, host: HOST, op: "switch", state, summary, acceptedAt: new Date().toISOString() });
    for (const l of [...listeners]) l({ kind: "job", host: HOST, jobId: id });
  };
  return { fleet, sent, publish, listeners };
}

const wait = (p: ReturnType<typeof port>, o: Partial<StepWait> = {}) =>
  waitForStepJob({ fleet: p.fleet, host: HOST, jobId: "c-switch", op: "switch", timeoutMs: 3_600_000, askEveryMs: 0, askNow: true, signal: new AbortController().signal, rolloutId: "r1", requestedBy: "rollout:r1", ...o });

describe("waitForStepJob", () => {
  it("resolves with the job's final state and leaves no listener behind", async () => {
    const p = port();
    const done = wait(p);
    expect(p.sent.map((c) => c.op)).toEqual(["report"]);
    p.publish("c-switch", "running");
    p.publish("c-switch", "succeeded");
    expect((await done).state).toBe("succeeded");
    expect(p.listeners.size).toBe(0);
  });

  it("rejects with JobStateLost when the host answers the ask with a failed report, and stops the port's wait", async () => {
    const p = port();
    const done = wait(p);
    const ask = p.sent[0]!;
    expect(ask.args).toEqual({ job: "c-switch", op: "switch" });
    p.publish(ask.id, "failed", "no job c-switch in the job history");
    await expect(done).rejects.toBeInstanceOf(JobStateLost);
    expect(p.listeners.size).toBe(0);
  });

  it("rejects with WaitAbortedError when the step is cancelled, and asks nothing for a job already final", async () => {
    const p = port();
    const cancel = new AbortController();
    const done = wait(p, { signal: cancel.signal });
    cancel.abort();
    await expect(done).rejects.toBeInstanceOf(WaitAbortedError);
    expect(p.listeners.size).toBe(0);

    p.publish("c-switch", "succeeded");
    p.sent.length = 0;
    expect((await wait(p)).state).toBe("succeeded");
    expect(p.sent).toEqual([]);
  });
});
