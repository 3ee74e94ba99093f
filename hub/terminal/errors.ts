/** Exit codes a script can rely on, and the error that carries one. */
import { LockstepError } from "../../protocol/errors.js";

export const ExitCode = {
  ok: 0,
  /** The command failed, or what it reports is red (a failed host, a failed rollout). */
  failure: 1,
  usage: 2,
  /** Cannot reach the hub or the broker, or the login was refused. */
  unreachable: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class TerminalError extends LockstepError {
  override name = "TerminalError";
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    hint?: string,
  ) {
    super(message, "terminal", hint);
  }
}
