import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { COMMAND_OPS, type CommandOp } from "../../protocol/index.js";
import { OP_POLICY, admissionRejection, policyOf, readLooseIdentity, type AdmissionFacts } from "../../agent/admission.js";

const future = new Date(Date.now() + 60_000).toISOString();
const idle: AdmissionFacts = { now: Date.now(), stopping: false, selfUpdateBusy: () => undefined };
const admit = (op: CommandOp, facts: Partial<AdmissionFacts> = {}, expiresAt = future) => admissionRejection({ op, expiresAt }, { ...idle, ...facts });

describe("agent admission: one policy per op", () => {
  it("has a policy for every protocol op, and only runs ops that touch nothing beside a busy job", () => {
    expect(Object.keys(OP_POLICY).sort()).toEqual([...COMMAND_OPS].sort());
    const quick = COMMAND_OPS.filter((op) => OP_POLICY[op].kind === "quick");
    for (const op of quick) expect(OP_POLICY[op].touches, op).toEqual([]);
    // Only activations and the restart itself outlive the agent.
    expect(COMMAND_OPS.filter((op) => OP_POLICY[op].outlivesAgent).sort()).toEqual(["restart", "rollback", "switch"]);
    expect(COMMAND_OPS.filter((op) => OP_POLICY[op].activates).sort()).toEqual(["rollback", "switch"]);
    expect(policyOf("no-such-op").kind).toBe("exclusive");
  });

  it("accepts every op on an idle host", () => {
    for (const op of COMMAND_OPS) expect(admit(op), op).toBeUndefined();
  });

  it("rejects an expired command and every command while the agent stops", () => {
    expect(admit("refresh", { now: Date.now() }, new Date(Date.now() - 1).toISOString())).toMatch(/^expired at /);
    for (const op of COMMAND_OPS) expect(admit(op, { stopping: true }), op).toMatch(/agent is stopping/);
  });

  it("lets only quick ops run beside a busy job", () => {
    const busyWith = { op: "switch", id: "s-1" };
    for (const op of COMMAND_OPS) {
      const why = admit(op, { busyWith });
      if (OP_POLICY[op].kind === "quick") expect(why, op).toBeUndefined();
      else expect(why, op).toBe("busy with switch s-1");
    }
  });

  it("refuses what changes the host while on hold, naming the reason", () => {
    const hold = { held: true, reason: "exam week" };
    const refused = COMMAND_OPS.filter((op) => admit(op, { hold }) !== undefined).sort();
    expect(refused).toEqual(["pull", "switch", "update-inputs"]);
    expect(admit("pull", { hold })).toBe("host is on hold (exam week): send release first");
    expect(admit("pull", { hold: { held: false } })).toBeUndefined();
  });

  it("asks about a running self-update only for ops that wait for it", () => {
    const asked: string[] = [];
    for (const op of COMMAND_OPS) {
      const why = admit(op, {
        selfUpdateBusy: () => {
          asked.push(op);
          return "busy with a self-update run (pid 7)";
        },
      });
      expect(why === undefined, op).toBe(!OP_POLICY[op].waitsForSelfUpdate);
    }
    expect(asked.sort()).toEqual(["preview", "pull", "rollback", "switch", "test", "update-inputs"]);
  });

  it("reads a usable id and op from any malformed payload, never more", () => {
    expect(readLooseIdentity(Buffer.from('{"id":"c-1","op":"switch","args":7}'))).toEqual({ id: "c-1", op: "switch" });
    expect(readLooseIdentity(Buffer.from('{"id":"../x","op":"rm -rf"}'))).toEqual({});
    const samples = [
      ...Array.from({ length: 500 }, (_, i) => randomBytes(i % 200)),
      ...Array.from({ length: 200 }, () => Buffer.from(JSON.stringify({ id: randomBytes(12).toString("latin1"), op: randomBytes(6).toString("latin1") }))),
    ];
    for (const bytes of samples) {
      const r = readLooseIdentity(bytes);
      if (r.id !== undefined) expect(r.id).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/);
      if (r.op !== undefined) expect(r.op).toMatch(/^[a-z-]{1,30}$/);
    }
  });
});
