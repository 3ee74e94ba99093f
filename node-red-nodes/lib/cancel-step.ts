/**
 * A msg with topic "cancel-step" to the lockstep-deploy node cancels the step one host runs in a
 * running rollout (RolloutService.cancelStep; docs/architecture.md, "Cancelling a step"):
 * `msg.rolloutId` and `msg.host`, validated here before anything happens.
 */
import { z } from "zod";
import { ID_PATTERN } from "../../protocol/topics.js";
import { HostId, parseMessageField } from "./input.js";
import type { NodeMessage } from "./red.js";

const CANCEL_STEP_TOPIC = "cancel-step";

interface CancelStepRequest {
  rolloutId: string;
  host: string;
}

export function isCancelStep(msg: NodeMessage): boolean {
  return msg.topic === CANCEL_STEP_TOPIC;
}

export function cancelStepRequest(msg: NodeMessage): CancelStepRequest {
  return {
    rolloutId: parseMessageField(z.string().regex(ID_PATTERN, "a rollout id"), msg.rolloutId, "msg.rolloutId"),
    host: parseMessageField(HostId, msg.host, "msg.host"),
  };
}
