/**
 * The hub's logger: plain-text lines (pino-pretty) when a person reads stderr on a terminal, JSON
 * lines otherwise (systemd's journal, log shippers, tests). Secrets are redacted either way.
 */
import pino, { type Level, type Logger } from "pino";
import pretty from "pino-pretty";

export interface HubLoggerOptions {
  level: Level | "silent";
  redact: string[];
  /** Default: whether stderr is a terminal. LOCKSTEP_LOG_FORMAT=json|pretty overrides it. */
  pretty?: boolean;
}

export function wantsPrettyLogs(env: NodeJS.ProcessEnv = process.env, isTty = process.stderr.isTTY === true): boolean {
  if (env.LOCKSTEP_LOG_FORMAT === "json") return false;
  if (env.LOCKSTEP_LOG_FORMAT === "pretty") return true;
  return isTty;
}

export function createHubLogger(opts: HubLoggerOptions): Logger {
  const options = { level: opts.level, redact: { paths: opts.redact, censor: "[REDACTED]" } };
  if (opts.pretty ?? wantsPrettyLogs()) {
    return pino(options, pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY === true, translateTime: "SYS:HH:MM:ss", ignore: "pid,hostname" }));
  }
  return pino(options, pino.destination(2));
}
