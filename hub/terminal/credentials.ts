/**
 * Where the terminal client finds the hub and the user's password. Never on the command line (it
 * would show in `ps` and the shell history): in order, LOCKSTEP_PASSWORD, the file named by
 * LOCKSTEP_PASSWORD_FILE or the config's passwordFile, the config's password, then a prompt on the
 * terminal without echo.
 *
 * Config file (JSON, default ~/.config/lockstep/cli.json, or --config FILE / LOCKSTEP_CLI_CONFIG):
 *   { "hub": "http://hub:1880", "user": "alice", "passwordFile": "~/.config/lockstep/password",
 *     "mqtt": "ws://hub:1880/mqtt" }
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { LockstepError } from "../../protocol/errors.js";

export const TerminalConfig = z
  .object({
    hub: z.string().url().optional(),
    user: z.string().min(1).max(200).optional(),
    password: z.string().min(1).optional(),
    passwordFile: z.string().min(1).optional(),
    /** MQTT URL; default: the hub's own MQTT over WebSocket, ws(s)://<hub>/mqtt. */
    mqtt: z.string().url().optional(),
  })
  .strict();
export type TerminalConfig = z.infer<typeof TerminalConfig>;

export interface HubCredentials {
  hub: string;
  mqtt: string;
  user: string;
  password: string;
}

/** Cannot find, read or use the credentials: exit code 3 like a refused login. */
export class CredentialsError extends LockstepError {
  override name = "CredentialsError";
  constructor(message: string, hint: string) {
    super(message, "credentials", hint);
  }
}

/** An environment variable, with an empty one counted as unset (`LOCKSTEP_PASSWORD=` must not hide the config's password file). */
const envVar = (env: NodeJS.ProcessEnv, name: string): string | undefined => env[name] || undefined;

export const DEFAULT_CONFIG_PATH = (env: NodeJS.ProcessEnv) => join(envVar(env, "XDG_CONFIG_HOME") ?? join(envVar(env, "HOME") ?? homedir(), ".config"), "lockstep", "cli.json");

const expandHome = (path: string, env: NodeJS.ProcessEnv) => (path.startsWith("~/") ? join(envVar(env, "HOME") ?? homedir(), path.slice(2)) : path);

/** The config file: explicit (must exist) or the default (may be missing). */
export function readTerminalConfig(file: string | undefined, env: NodeJS.ProcessEnv): TerminalConfig {
  const explicit = file ?? envVar(env, "LOCKSTEP_CLI_CONFIG");
  const path = explicit ?? DEFAULT_CONFIG_PATH(env);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if (!explicit && (err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new CredentialsError(`cannot read ${path}: ${(err as Error).message}`, "check the path given with --config or LOCKSTEP_CLI_CONFIG");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CredentialsError(`${path} is not JSON: ${(err as Error).message}`, "fix the file");
  }
  const parsed = TerminalConfig.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(top)"}: ${i.message}`).join("; ");
    throw new CredentialsError(`${path}: ${issues}`, 'allowed keys: hub, user, password, passwordFile, mqtt');
  }
  return parsed.data;
}

function readPasswordFile(path: string, env: NodeJS.ProcessEnv): string {
  try {
    // The first line: a trailing newline from `echo pw > file` is not part of the password.
    const text = readFileSync(expandHome(path, env), "utf8");
    const password = text.split(/\r?\n/)[0] ?? "";
    if (!password) throw new Error("the file is empty");
    return password;
  } catch (err) {
    throw new CredentialsError(`cannot read the password file ${path}: ${(err as Error).message}`, "LOCKSTEP_PASSWORD_FILE or passwordFile must name a readable file");
  }
}

export type PasswordPrompt = (question: string) => Promise<string>;

/** The hub URL, user and password from env, config file and (last) a prompt. */
export async function resolveCredentials(opts: { configFile?: string; env: NodeJS.ProcessEnv; prompt?: PasswordPrompt }): Promise<HubCredentials> {
  const { env } = opts;
  const config = readTerminalConfig(opts.configFile, env);
  const hub = (envVar(env, "LOCKSTEP_HUB") ?? config.hub ?? "http://127.0.0.1:1880").replace(/\/+$/, "");
  let hubUrl: URL;
  try {
    hubUrl = new URL(hub);
  } catch {
    throw new CredentialsError(`the hub address "${hub}" is not a URL`, "set LOCKSTEP_HUB or hub in the config, e.g. http://hub:1880");
  }
  const user = envVar(env, "LOCKSTEP_USER") ?? config.user;
  if (!user) throw new CredentialsError("no user name", `set LOCKSTEP_USER or "user" in ${DEFAULT_CONFIG_PATH(env)}`);
  const passwordFile = envVar(env, "LOCKSTEP_PASSWORD_FILE") ?? config.passwordFile;
  let password = envVar(env, "LOCKSTEP_PASSWORD") ?? (passwordFile ? readPasswordFile(passwordFile, env) : config.password);
  if (!password) {
    if (!opts.prompt) throw new CredentialsError("no password and no terminal to ask on", "set LOCKSTEP_PASSWORD_FILE or passwordFile in the config");
    password = await opts.prompt(`Password for ${user} at ${hubUrl.host}: `);
    if (!password) throw new CredentialsError("no password given", "type the password, or set LOCKSTEP_PASSWORD_FILE");
  }
  const wsProtocol = hubUrl.protocol === "https:" ? "wss:" : "ws:";
  const mqtt = envVar(env, "LOCKSTEP_MQTT_URL") ?? config.mqtt ?? `${wsProtocol}//${hubUrl.host}/mqtt`;
  return { hub, mqtt, user, password };
}
