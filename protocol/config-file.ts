/**
 * Reading the files a config points at, shared by hub, broker, agent and GitHub loaders so each
 * fails the same way: a ConfigError naming the file, the reason (ENOENT, EACCES, ...) and a fix.
 */
import { readFileSync } from "node:fs";
import { ConfigError } from "./errors.js";

function reason(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

/** Read a JSON config file that must hold an object. Throws ConfigError. */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${reason(err)}`, "pass --config with a readable JSON file");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new ConfigError(`config file ${file} must hold a JSON object`);
  return parsed as Record<string, unknown>;
}

/**
 * Read a secret (password, token) from a file. Surrounding whitespace is dropped: files written
 * with `echo` end in a newline, and none of our secrets (generated passwords, GitHub tokens,
 * webhook secrets) start or end with a space. The value is never part of an error.
 */
export function readSecretFile(file: string, what: string): string {
  let value: string;
  try {
    value = readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new ConfigError(`cannot read the ${what} file ${file}: ${reason(err)}`, "check the path and that Lockstep's user may read it (mode 0400 is enough)");
  }
  if (!value) throw new ConfigError(`the ${what} file ${file} is empty`, `put the ${what} in ${file}`);
  return value;
}
