/**
 * Command admission: ONE per-op policy table and the checks every command passes before it is
 * accepted (expiry, stopping, busy, a running self-update, hold). Op-specific checks against the
 * checkout or the profile (a dirty checkout, a switch to another commit) live with each op's
 * `precheck` in ops/; they run once the host is reserved for the job.
 */
import { ID_PATTERN, type Command, type CommandOp, type CompartmentName } from "../protocol/index.js";

export interface OpPolicy {
  /**
   * quick: runs beside a busy job and touches nothing on the system; exclusive: needs the host to
   * itself and is persisted as in-flight; restart: the agent exits for its supervisor.
   */
  kind: "quick" | "exclusive" | "restart";
  /** Refused while the host is on hold: it would change what the host runs. */
  refusedOnHold: boolean;
  /** Refused while a standalone `lockstep-agent self-update` runs. */
  waitsForSelfUpdate: boolean;
  /** Runs in the detached switch runner: changes the system generation, may install another agent. */
  activates: boolean;
  /** Goes on when the agent stops (the detached switch runner, or the restart itself). */
  outlivesAgent: boolean;
  /** Compartments shown as "working" while it runs. */
  touches: CompartmentName[];
}

const quick: OpPolicy = { kind: "quick", refusedOnHold: false, waitsForSelfUpdate: false, activates: false, outlivesAgent: false, touches: [] };
const exclusive = (touches: CompartmentName[], more: Partial<OpPolicy> = {}): OpPolicy => ({
  kind: "exclusive",
  refusedOnHold: false,
  waitsForSelfUpdate: true,
  activates: false,
  outlivesAgent: false,
  touches,
  ...more,
});

export const OP_POLICY: Readonly<Record<CommandOp, OpPolicy>> = {
  refresh: quick,
  hold: quick,
  release: quick,
  stop: quick,
  confirm: quick,
  report: quick,
  pull: exclusive(["git", "lock"], { refusedOnHold: true }),
  switch: exclusive(["system"], { refusedOnHold: true, activates: true, outlivesAgent: true }),
  rollback: exclusive(["system"], { activates: true, outlivesAgent: true }),
  test: exclusive(["tests"]),
  "update-inputs": exclusive(["lock"], { refusedOnHold: true }),
  // Evaluates and builds in a worktree of its own: changes nothing a hold protects.
  preview: exclusive([]),
  restart: { kind: "restart", refusedOnHold: false, waitsForSelfUpdate: false, activates: false, outlivesAgent: true, touches: ["agent"] },
};

/** The policy of an op name read from a record (an unknown name gets the exclusive default). */
export function policyOf(op: string): OpPolicy {
  return (OP_POLICY as Record<string, OpPolicy | undefined>)[op] ?? exclusive([]);
}

export interface AdmissionFacts {
  now: number;
  stopping: boolean;
  busyWith?: { op: string; id: string };
  hold?: { held: boolean; reason?: string };
  /** Why a running self-update blocks jobs, if one runs (read only when the op waits for it). */
  selfUpdateBusy: () => string | undefined;
}

/** Why the command must be rejected before it starts, or undefined when it may run. */
export function admissionRejection(cmd: Pick<Command, "op" | "expiresAt">, facts: AdmissionFacts): string | undefined {
  const policy = OP_POLICY[cmd.op];
  if (Date.parse(cmd.expiresAt) <= facts.now) return `expired at ${cmd.expiresAt}: not run`;
  if (facts.stopping) return "agent is stopping: send the command again once it is back online";
  if (policy.kind !== "quick" && facts.busyWith) return `busy with ${facts.busyWith.op} ${facts.busyWith.id}`;
  if (policy.waitsForSelfUpdate) {
    const selfUpdate = facts.selfUpdateBusy();
    if (selfUpdate) return selfUpdate;
  }
  if (policy.refusedOnHold && facts.hold?.held) return `host is on hold${facts.hold.reason ? ` (${facts.hold.reason})` : ""}: send release first`;
  return undefined;
}

/** From a payload that failed validation, the id and op if they are usable for a rejected job. */
export function readLooseIdentity(payload: Buffer): { id?: string; op?: string } {
  try {
    const v = JSON.parse(payload.toString("utf8")) as unknown;
    if (typeof v !== "object" || v === null) return {};
    const o = v as Record<string, unknown>;
    const id = typeof o.id === "string" && ID_PATTERN.test(o.id) ? o.id : undefined;
    const op = typeof o.op === "string" && /^[a-z-]{1,30}$/.test(o.op) ? o.op : undefined;
    return { ...(id ? { id } : {}), ...(op ? { op } : {}) };
  } catch {
    return {};
  }
}
