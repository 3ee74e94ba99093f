/**
 * Status dots the way Node-RED's core nodes use them: yellow ring while connecting, green dot when
 * fine, blue dot while working, red ring when something failed (with the reason as text).
 */
import { LockstepError } from "../../protocol/errors.js";
import type { NodeStatus } from "./red.js";

const MAX_TEXT = 60;

function short(text: string): string {
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT - 1)}…` : text;
}

export const status = {
  connecting: (text = "connecting"): NodeStatus => ({ fill: "yellow", shape: "ring", text: short(text) }),
  ok: (text: string): NodeStatus => ({ fill: "green", shape: "dot", text: short(text) }),
  working: (text: string): NodeStatus => ({ fill: "blue", shape: "dot", text: short(text) }),
  waiting: (text: string): NodeStatus => ({ fill: "yellow", shape: "dot", text: short(text) }),
  idle: (text: string): NodeStatus => ({ fill: "grey", shape: "ring", text: short(text) }),
  failed: (err: unknown): NodeStatus => ({ fill: "red", shape: "ring", text: short(errorText(err)) }),
};

/** The sentence an admin should read for an error: LockstepError messages carry their own hint. */
export function errorText(err: unknown): string {
  if (err instanceof LockstepError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
