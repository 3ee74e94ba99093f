/** Typed errors of the rollout engine and the fleet client. Each says what to do next. */
import { HOST_STEP_STATES_TEXT } from "../protocol/enums.js";
import { LockstepError } from "../protocol/errors.js";

/** A rollout spec (Node-RED msg, HTTP body) did not validate. */
export class RolloutSpecError extends LockstepError {
  override name = "RolloutSpecError";
  constructor(details: string) {
    super(`invalid rollout spec: ${details}`, "rollout-spec", "fix the named fields; see RolloutSpec in rollout/spec.ts");
  }
}

/** The spec is valid but cannot be planned against the fleet as it is now (e.g. no eligible host). */
export class RolloutPlanError extends LockstepError {
  override name = "RolloutPlanError";
  constructor(message: string, hint?: string) {
    super(message, "rollout-plan", hint);
  }
}

/** A host in the new rollout is already part of a running rollout. */
export class RolloutConflictError extends LockstepError {
  override name = "RolloutConflictError";
  constructor(readonly rolloutId: string, readonly hosts: string[]) {
    super(
      `host(s) ${hosts.join(", ")} are already in running rollout ${rolloutId}`,
      "rollout-conflict",
      "wait for that rollout to finish or cancel it first",
    );
  }
}

export class RolloutNotFoundError extends LockstepError {
  override name = "RolloutNotFoundError";
  constructor(readonly rolloutId: string) {
    super(`no rollout with id "${rolloutId}"`, "rollout-not-found", "list rollouts to see the known ids");
  }
}

/** A step cannot be cancelled: the rollout is not running here, or the host runs no step. */
export class StepNotCancellableError extends LockstepError {
  override name = "StepNotCancellableError";
  constructor(why: string) {
    super(`nothing to cancel: ${why}`, "rollout-step-not-running", `see the rollout's hosts: only a host mid-step (${HOST_STEP_STATES_TEXT}) can be cancelled`);
  }
}

/** A durable rollout file could not be read or written. */
export class RolloutStoreError extends LockstepError {
  override name = "RolloutStoreError";
  constructor(message: string, readonly path: string, options?: { cause?: unknown }) {
    super(`${message}: ${path}`, "rollout-store", "check that the data dir is writable and the file is intact", options);
  }
}

/** Waiting for a job or a host state took longer than allowed. */
export class WaitTimeoutError extends LockstepError {
  override name = "WaitTimeoutError";
  constructor(what: string, readonly timeoutMs: number) {
    super(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`, "timeout");
  }
}

/** A wait was aborted (rollout cancelled, hub shutting down). */
export class WaitAbortedError extends LockstepError {
  override name = "WaitAbortedError";
  constructor(what: string) {
    super(`stopped waiting for ${what}`, "aborted");
  }
}

/** The MQTT connection is not there (not started, or stopped). */
export class FleetNotConnectedError extends LockstepError {
  override name = "FleetNotConnectedError";
  constructor(action: string) {
    super(`cannot ${action}: the fleet client is not connected`, "fleet-not-connected", "call start() first and check the broker URL and credentials");
  }
}
