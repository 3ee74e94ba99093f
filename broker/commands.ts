/**
 * The broker's subcommands of the `lockstep` command (hub/cli.ts parses the command line and
 * dispatches): `users` and `mosquitto-config`. Each declares its options (node:util parseArgs)
 * and a run() that returns the exit code.
 *
 *   lockstep users add web1 --role agent        prints a generated password once
 *   lockstep users remove web1
 *   lockstep users list
 *   lockstep mosquitto-config --out /etc/mosquitto/lockstep
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { LockstepError, Topics } from "../protocol/index.js";
import type { BrokerConfig } from "./config.js";
import { CredentialStore, ROLES, UserRole } from "./credentials.js";
import { MOSQUITTO_QUEUE_DEFAULTS, systemUser, writeMosquittoConfig } from "./mosquitto.js";

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: NodeJS.ProcessEnv;
}

export type Options = NonNullable<ParseArgsConfig["options"]>;
export type Values = Record<string, string | boolean | undefined>;

export interface CliContext {
  /** Positional arguments after the subcommand name. */
  args: string[];
  /** Parsed option values (global and the subcommand's own). */
  values: Values;
  io: CliIo;
  /** The broker config from --config / --data-dir / LOCKSTEP_* (loaded on first use). */
  config(): BrokerConfig;
}

export interface Subcommand {
  name: string;
  summary: string;
  /** Shown by `lockstep NAME --help`. */
  usage: string;
  options: Options;
  run(ctx: CliContext): Promise<number>;
}

export class UsageError extends LockstepError {
  override name = "UsageError";
  constructor(message: string, hint = 'run "lockstep --help"') {
    super(message, "usage", hint);
  }
}

export function str(values: Values, key: string): string | undefined {
  const v = values[key];
  return typeof v === "string" ? v : undefined;
}

export function portOption(values: Values, key: string, fallback: number): number {
  const raw = str(values, key);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 65535) {
    throw new UsageError(`--${key}: expected a number 1-65535, got "${raw}"`);
  }
  return Number(raw);
}

/** A password from a file: the first line, without its newline. */
function readPasswordFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read --password-file ${file}: ${(err as Error).message}`, "check the path");
  }
  return text.split(/\r?\n/, 1)[0] ?? "";
}

export const usersCommand: Subcommand = {
  name: "users",
  summary: "add, remove or list who may connect to the broker",
  usage: [
    "lockstep users add NAME --role agent|viewer|operator|hub [--password-file F] [--password-out F]",
    "    Adds a user. Agents are named by their host id. Without --password-file a strong",
    "    password is generated and printed once on stdout (or written to --password-out, mode 0600).",
    "lockstep users remove NAME",
    "lockstep users list [--json]",
    "",
    "After a change, regenerate an external Mosquitto's files with `lockstep mosquitto-config`.",
    "A running embedded broker picks changes up by itself.",
  ].join("\n"),
  options: {
    role: { type: "string", short: "r" },
    "password-file": { type: "string" },
    "password-out": { type: "string" },
    json: { type: "boolean" },
  },
  async run({ args, values, io, config }) {
    const [action, name, ...extra] = args;
    if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`, 'run "lockstep users --help"');
    const store = await CredentialStore.open(config().credentialsFile);
    switch (action) {
      case "add": {
        if (!name) throw new UsageError("users add: missing NAME", 'run "lockstep users --help"');
        const role = UserRole.safeParse(str(values, "role"));
        if (!role.success) throw new UsageError(`users add: --role must be one of ${ROLES.join(", ")}`, 'run "lockstep users --help"');
        const passwordFile = str(values, "password-file");
        const result = await store.add(name, role.data, passwordFile ? readPasswordFile(passwordFile) : undefined);
        io.stderr(`added ${role.data} "${name}"\n`);
        if (result.generated) {
          const out = str(values, "password-out");
          if (out) {
            writeFileSync(out, result.password + "\n", { mode: 0o600, flag: "wx" });
            io.stderr(`its password is in ${out} (not stored anywhere else)\n`);
          } else {
            io.stderr("its password follows; it is shown only this once:\n");
            io.stdout(result.password + "\n");
          }
        }
        return 0;
      }
      case "remove": {
        if (!name) throw new UsageError("users remove: missing NAME", 'run "lockstep users --help"');
        if (!(await store.remove(name))) {
          io.stderr(`no user "${name}"\n`);
          return 1;
        }
        io.stderr(`removed "${name}"\n`);
        return 0;
      }
      case "list": {
        const users = store.list();
        if (values.json) {
          io.stdout(JSON.stringify(users, null, 2) + "\n");
        } else if (users.length === 0) {
          io.stderr("no users yet: add one with `lockstep users add NAME --role ROLE`\n");
        } else {
          const width = Math.max(4, ...users.map((u) => u.name.length));
          io.stdout(`${"NAME".padEnd(width)}  ROLE      CREATED\n`);
          for (const u of users) io.stdout(`${u.name.padEnd(width)}  ${u.role.padEnd(8)}  ${u.createdAt}\n`);
        }
        return 0;
      }
      default:
        throw new UsageError(action ? `users: unknown action "${action}"` : "users: missing action (add, remove, list)", 'run "lockstep users --help"');
    }
  },
};

export const mosquittoConfigCommand: Subcommand = {
  name: "mosquitto-config",
  summary: "write passwd, acl and mosquitto.conf for an external Mosquitto",
  usage: [
    "lockstep mosquitto-config --out DIR [--port N] [--ws-port N] [--host H] [--run-as-user U]",
    "                          [--tls-cert FILE --tls-key FILE [--tls-port N]]",
    "    Writes DIR/passwd, DIR/acl and DIR/mosquitto.conf from Lockstep's users (no",
    "    plaintext needed). Start Mosquitto with `mosquitto -c DIR/mosquitto.conf`; after",
    "    `lockstep users add/remove`, run this again and send Mosquitto SIGHUP.",
    `    Defaults: --port 1883, --ws-port 9001 (0 = no WebSocket listener), queue limits`,
    `    max_inflight_messages ${MOSQUITTO_QUEUE_DEFAULTS.maxInflightMessages}, max_queued_messages ${MOSQUITTO_QUEUE_DEFAULTS.maxQueuedMessages}.`,
    "    With --tls-cert and --tls-key (PEM; readable by Mosquitto's account) it also listens for",
    "    MQTT over TLS on --tls-port (default 8883): agents then use mqtts:// URLs.",
  ].join("\n"),
  options: {
    out: { type: "string", short: "o" },
    port: { type: "string" },
    "ws-port": { type: "string" },
    host: { type: "string" },
    "run-as-user": { type: "string" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    "tls-port": { type: "string" },
  },
  async run({ args, values, io, config }) {
    if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`, 'run "lockstep mosquitto-config --help"');
    const out = str(values, "out");
    if (!out) throw new UsageError("mosquitto-config: --out DIR is required", 'run "lockstep mosquitto-config --help"');
    const cfg = config();
    const host = str(values, "host");
    const wsPortRaw = str(values, "ws-port");
    const wsPort = wsPortRaw === "0" ? 0 : portOption(values, "ws-port", 9001);
    const runAsUser = str(values, "run-as-user");
    const tlsCert = str(values, "tls-cert");
    const tlsKey = str(values, "tls-key");
    if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new UsageError("mosquitto-config: --tls-cert and --tls-key go together", 'run "lockstep mosquitto-config --help"');
    if (tlsCert === undefined && str(values, "tls-port") !== undefined) throw new UsageError("mosquitto-config: --tls-port needs --tls-cert and --tls-key", 'run "lockstep mosquitto-config --help"');
    for (const [flag, file] of [["--tls-cert", tlsCert], ["--tls-key", tlsKey]] as const) {
      if (file === undefined) continue;
      try {
        readFileSync(file);
      } catch (err) {
        throw new UsageError(`mosquitto-config: ${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, "give a readable PEM file");
      }
    }
    // As root, hand the files to the account Mosquitto drops to, or it cannot read its passwd.
    let owner: { uid: number; gid: number } | undefined;
    if (process.getuid?.() === 0 && runAsUser !== "root") {
      const account = runAsUser ?? "mosquitto";
      owner = systemUser(account);
      if (!owner && runAsUser) throw new UsageError(`--run-as-user: no local account "${runAsUser}"`, "create it or name another");
    }
    const store = await CredentialStore.open(cfg.credentialsFile);
    const files = await writeMosquittoConfig(store, {
      dir: out,
      tcp: { port: portOption(values, "port", 1883), ...(host ? { host } : {}) },
      ...(wsPort ? { ws: { port: wsPort, ...(host ? { host } : {}) } } : {}),
      ...(tlsCert && tlsKey ? { tls: { port: portOption(values, "tls-port", 8883), certFile: tlsCert, keyFile: tlsKey, ...(host ? { host } : {}) } } : {}),
      ...(runAsUser ? { runAsUser } : {}),
      ...(owner ? { owner } : {}),
      topics: new Topics(cfg.topicPrefix, cfg.haPrefix),
    });
    const count = store.list().length;
    io.stderr(`wrote ${files.confFile}, ${files.passwdFile} and ${files.aclFile} (${count} user${count === 1 ? "" : "s"})\n`);
    if (owner) io.stderr(`owned by uid ${owner.uid} (the account Mosquitto runs as)\n`);
    if (count === 0) io.stderr("no users yet: add them with `lockstep users add NAME --role ROLE`, then run this again\n");
    return 0;
  },
};
