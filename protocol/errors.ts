/**
 * Typed errors that say what to do. `hint` is the sentence an admin reads next to the failure
 * (a Node-RED status text, a log line, an HTTP error body).
 */
export class LockstepError extends Error {
  override name = "LockstepError";
  constructor(
    message: string,
    readonly code: string,
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(hint ? `${message} (${hint})` : message, options);
  }
}

export class ConfigError extends LockstepError {
  override name = "ConfigError";
  constructor(message: string, hint?: string) {
    super(message, "config", hint);
  }
}
