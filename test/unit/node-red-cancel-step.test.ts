/** The deploy node's "cancel-step" message: recognised by its topic, rollout id and host checked before anything happens. */
import { describe, expect, it } from "vitest";
import { cancelStepRequest, isCancelStep } from "../../node-red-nodes/lib/cancel-step.js";

describe("deploy node: cancel-step", () => {
  it("reads msg.rolloutId and msg.host", () => {
    const msg = { _msgid: "m", topic: "cancel-step", rolloutId: "r-abc-123", host: "alpha" };
    expect(isCancelStep(msg)).toBe(true);
    expect(cancelStepRequest(msg)).toEqual({ rolloutId: "r-abc-123", host: "alpha" });
    expect(isCancelStep({ _msgid: "m", topic: "started" })).toBe(false);
  });

  it("names the field that is wrong", () => {
    expect(() => cancelStepRequest({ _msgid: "m", topic: "cancel-step", rolloutId: "r-1", host: "Not A Host" })).toThrow(/msg\.host is invalid/);
    expect(() => cancelStepRequest({ _msgid: "m", topic: "cancel-step", host: "alpha" })).toThrow(/msg\.rolloutId is invalid/);
  });
});
