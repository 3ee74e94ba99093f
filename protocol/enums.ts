/**
 * The protocol's enumerations as plain constants, without zod: schemas.ts builds its z.enum()s
 * from these, and the fleet page's browser module (protocol/page.ts) uses them as they are.
 */

export const STATUSES = ["ok", "outdated", "failed", "working", "unknown"] as const;
export type StatusName = (typeof STATUSES)[number];

/** Worst-first ordering, for summarising a host in one colour. */
const SEVERITY: Record<StatusName, number> = { failed: 4, working: 3, outdated: 2, unknown: 1, ok: 0 };
export function worstStatus(statuses: readonly StatusName[]): StatusName {
  return statuses.reduce<StatusName>((w, s) => (SEVERITY[s] > SEVERITY[w] ? s : w), "ok");
}

export const COMPARTMENTS = ["agent", "git", "lock", "system", "tests"] as const;
export const OS_KINDS = ["nixos", "darwin", "home-manager", "generic"] as const;

export const COMMAND_OPS = ["refresh", "pull", "switch", "test", "rollback", "stop", "restart", "update-inputs", "hold", "release", "preview", "confirm", "report"] as const;

export const JOB_STATES = ["accepted", "rejected", "running", "succeeded", "failed", "interrupted", "cancelled"] as const;
/** Job states after which the agent does nothing more for that job. */
export const TERMINAL_JOB_STATES: readonly (typeof JOB_STATES)[number][] = ["rejected", "succeeded", "failed", "interrupted", "cancelled"];

export const ROLLOUT_STATES = ["planned", "running", "soaking", "completed", "failed", "halted", "rolling-back", "rolled-back", "interrupted", "cancelled"] as const;
export type RolloutStateName = (typeof ROLLOUT_STATES)[number];
/** Rollout states after which the engine does nothing more (the rollout engine and the page use this one list). */
export const FINAL_ROLLOUT_STATES: readonly RolloutStateName[] = ["completed", "failed", "halted", "rolled-back", "interrupted", "cancelled"];

export function isFinalRolloutState(s: RolloutStateName): boolean {
  return FINAL_ROLLOUT_STATES.includes(s);
}

export const HOST_ROLLOUT_STATES = [
  "pending",
  "skipped",
  "queued",
  "pulling",
  "switching",
  "testing",
  "verifying",
  "succeeded",
  "failed",
  "rolling-back",
  "rolled-back",
  "interrupted",
] as const;

/** A host's rollout states in which it runs no step: not started yet, or done with this rollout. */
const HOST_STATES_WITHOUT_STEP: readonly (typeof HOST_ROLLOUT_STATES)[number][] = ["pending", "succeeded", "failed", "skipped", "rolled-back", "interrupted"];

/** Does a host in this rollout state run a step (one an operator may cancel)? The engine's rule and the page's button. */
export function hostRunsStep(state: (typeof HOST_ROLLOUT_STATES)[number]): boolean {
  return !HOST_STATES_WITHOUT_STEP.includes(state);
}

/** The states hostRunsStep() is true for, in words: for messages that name them. */
export const HOST_STEP_STATES_TEXT = HOST_ROLLOUT_STATES.filter(hostRunsStep).join(", ");
