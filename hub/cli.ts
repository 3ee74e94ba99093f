#!/usr/bin/env node
/**
 * The `lockstep` command. One parser (node:util parseArgs) reads the global options and the
 * subcommand's own; each subcommand declares its options and a run() that returns the exit code.
 *
 *   lockstep hub [--config FILE] [--data-dir DIR]   run the hub until SIGTERM/SIGINT
 *   lockstep broker [--config FILE] [--data-dir DIR]   the embedded broker alone (a cluster's second node)
 *   lockstep users add web1 --role agent            (broker/commands.ts)
 *   lockstep mosquitto-config --out DIR             (broker/commands.ts)
 *   lockstep status|watch|pr|deploy|rollouts|rollout|history|host|logs|audit   the terminal client (terminal/)
 *   lockstep completion bash|zsh|fish               completion from this same command table
 *
 * Global options: --config FILE (hub config file, or bare broker settings), --data-dir DIR, --help.
 */
import { parseArgs } from "node:util";
import { ENV_OVERRIDES } from "../broker/config.js";
import { EmbeddedBroker } from "../broker/embedded.js";
import { mosquittoConfigCommand, str, UsageError, usersCommand, type CliIo, type Options, type Subcommand, type Values } from "../broker/commands.js";
import { LockstepError } from "../protocol/index.js";
import { z } from "zod";
import { DEFAULT_DATA_DIR, HUB_ENV_OVERRIDES, loadHubBrokerConfig, loadHubConfig, LogLevel, type HubBrokerConfig } from "./config.js";
import { createHubLogger } from "./logger.js";
import { startProcessGuard, type ProcessGuard } from "./process-guard.js";
import { startHub, type RunningHub } from "./start.js";
import { completionCommand, TERMINAL_COMMANDS } from "./terminal/index.js";

export { UsageError, type CliIo, type Subcommand } from "../broker/commands.js";

const GLOBAL_OPTIONS: Options = {
  config: { type: "string", short: "c" },
  "data-dir": { type: "string" },
  help: { type: "boolean", short: "h" },
};

/** Every port the hub can listen on, with the variable that sets it (for `lockstep hub --help`). */
export const HUB_PORTS: ReadonlyArray<{ what: string; variable: string; hostVariable: string; port: string }> = [
  { what: "HTTP: fleet page, Node-RED editor /admin, API /api/, MQTT over WebSocket /mqtt", variable: "LOCKSTEP_HTTP_PORT", hostVariable: "LOCKSTEP_HTTP_HOST", port: "1880" },
  { what: "MQTT over TCP (agents, Home Assistant)", variable: "LOCKSTEP_MQTT_PORT", hostVariable: "LOCKSTEP_MQTT_HOST", port: "1883" },
  { what: "MQTT over TLS (needs LOCKSTEP_TLS_CERT_FILE and LOCKSTEP_TLS_KEY_FILE)", variable: "LOCKSTEP_TLS_PORT", hostVariable: "LOCKSTEP_TLS_HOST", port: "off; 8883 when TLS is configured" },
  { what: "MQTT over WebSocket on its own port (the HTTP port's /mqtt serves the page)", variable: "LOCKSTEP_WS_PORT", hostVariable: "LOCKSTEP_WS_HOST", port: "off" },
];

function hubUsage(): string {
  const ported = new Set(HUB_PORTS.flatMap((p) => [p.variable, p.hostVariable]));
  const others = [...HUB_ENV_OVERRIDES, ...ENV_OVERRIDES].map((o) => o.env).filter((env) => !ported.has(env));
  return [
    "lockstep hub [--config FILE] [--data-dir DIR]",
    "    Runs the broker, the fleet page, the Node-RED editor and the HTTP API until SIGTERM/SIGINT.",
    `    --data-dir DIR   where everything durable lives (default ${DEFAULT_DATA_DIR}; LOCKSTEP_DATA_DIR)`,
    "    --config FILE    JSON config file (see docs/node-red.md); LOCKSTEP_* variables override it",
    "",
    "Ports (every listener binds all interfaces, 0.0.0.0, unless its host variable says otherwise;",
    "port 0 picks a free one):",
    ...HUB_PORTS.flatMap((p) => [`  ${p.variable.padEnd(20)} ${p.port.padEnd(6)} ${p.what}`, `  ${p.hostVariable.padEnd(20)} ${"".padEnd(6)} its address`]),
    "",
    "Other variables: " + others.join(", "),
  ].join("\n");
}

/** `lockstep hub`: runs until SIGTERM/SIGINT. */
const hubCommand: Subcommand = {
  name: "hub",
  summary: "run the hub: broker, fleet page, Node-RED editor and HTTP API",
  get usage() {
    return hubUsage();
  },
  options: {},
  async run({ values, io }) {
    const file = str(values, "config");
    const dataDir = str(values, "data-dir");
    let hub: RunningHub;
    try {
      const config = loadHubConfig({ env: io.env, ...(file ? { file } : {}), ...(dataDir ? { dataDir } : {}) });
      hub = await startHub({ config, guardProcess: true });
    } catch (err) {
      io.stderr(`lockstep hub: ${(err as Error).message}\n`);
      return 1;
    }
    return untilSignal(hub, io);
  },
};

/** `lockstep broker`'s LOCKSTEP_LOG_LEVEL: the hub's levels, or silent. */
const BrokerLogLevel = LogLevel.or(z.literal("silent"));

/**
 * `lockstep broker`: the embedded broker alone, e.g. node B of a Redis cluster (broker/README.md
 * "Several nodes"): no rollouts, page, GitHub or Home Assistant, those run once, in the hub.
 */
const brokerCommand: Subcommand = {
  name: "broker",
  summary: "run the embedded MQTT broker alone (another node of a Redis broker cluster)",
  usage: [
    "lockstep broker [--config FILE] [--data-dir DIR]",
    "    Runs the embedded broker only (its listeners, credentials and limits from the broker settings)",
    "    until SIGTERM/SIGINT. With broker.cluster (LOCKSTEP_REDIS_URL, LOCKSTEP_BROKER_NODE_ID) it is one",
    "    node of several sharing Redis; give every node the same credentials file.",
    "",
    "Variables: " + ENV_OVERRIDES.map((o) => o.env).join(", "),
  ].join("\n"),
  options: {},
  async run({ io, config }) {
    let broker: EmbeddedBroker;
    let guard: ProcessGuard | undefined;
    try {
      const settings = config();
      if (settings.external) throw new UsageError("the broker settings name an external broker (broker.external): there is no embedded broker to run");
      const level = BrokerLogLevel.safeParse(io.env.LOCKSTEP_LOG_LEVEL || "info");
      if (!level.success) throw new UsageError(`LOCKSTEP_LOG_LEVEL: expected one of ${[...LogLevel.options, "silent"].join(", ")}`);
      const logger = createHubLogger({ level: level.data, redact: [] });
      broker = new EmbeddedBroker(settings, logger.child({ component: "broker" }));
      await broker.start(); // creates the data dir
      // As the hub: a library's unhandled rejection (e.g. a Redis command on a closed connection) is
      // logged, and the node keeps serving its clients instead of exiting.
      guard = startProcessGuard({ role: "broker", dataDir: settings.dataDir, log: logger, process });
      io.stdout(`lockstep broker: listening on ${broker.url}${settings.cluster ? ` (cluster node ${settings.cluster.nodeId ?? "with a random id"})` : ""}\n`);
    } catch (err) {
      io.stderr(`lockstep broker: ${(err as Error).message}\n`);
      return 1;
    }
    const code = await untilSignal(broker, io);
    if (code === 0) guard?.stop(); // a clean stop leaves no marker behind
    return code;
  },
};

/** Stop the hub (or the broker) on the first SIGTERM/SIGINT; resolves with the exit code. */
function untilSignal(hub: { stop(): Promise<void> }, io: CliIo): Promise<number> {
  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = (signal: string) => {
      if (stopping) return;
      stopping = true;
      io.stdout(`${signal}: stopping\n`);
      const force = setTimeout(() => resolve(1), 20_000);
      force.unref();
      hub.stop().then(
        () => {
          clearTimeout(force);
          resolve(0);
        },
        () => resolve(1),
      );
    };
    process.once("SIGTERM", () => shutdown("SIGTERM"));
    process.once("SIGINT", () => shutdown("SIGINT"));
  });
}

/** Every subcommand, in `--help` order. Add new ones here. */
export const SUBCOMMANDS: Subcommand[] = [hubCommand, brokerCommand, usersCommand, mosquittoConfigCommand, ...TERMINAL_COMMANDS];
SUBCOMMANDS.push(completionCommand(() => SUBCOMMANDS));

function globalHelp(): string {
  const width = Math.max(...SUBCOMMANDS.map((c) => c.name.length));
  return [
    "Usage: lockstep [--config FILE] [--data-dir DIR] COMMAND [options]",
    "",
    "Commands:",
    ...SUBCOMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Global options:",
    "  -c, --config FILE   JSON config (a hub config with a \"broker\" section, or broker settings;",
    "                      for the terminal commands the client config, ~/.config/lockstep/cli.json)",
    `      --data-dir DIR  state directory (default ${DEFAULT_DATA_DIR}; also LOCKSTEP_DATA_DIR)`,
    "  -h, --help          this help; `lockstep COMMAND --help` for a command",
    "",
    "Environment: " + ENV_OVERRIDES.map((o) => o.env).join(", "),
    "",
  ].join("\n");
}

/** parseArgs' own messages, said the way the rest of Lockstep says them. */
function usageErrorFrom(err: unknown, command: string | undefined): UsageError {
  const e = err as Error & { code?: string };
  const hint = command ? `run "lockstep ${command} --help"` : 'run "lockstep --help"';
  if (e.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    const flag = /'(?:-\w, )?(--[\w-]+)/.exec(e.message)?.[1];
    if (flag) return new UsageError(`${flag} needs a value`, hint);
  }
  if (e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const flag = /'(-[^']+)'/.exec(e.message)?.[1];
    if (flag) return new UsageError(`unknown argument ${flag}`, hint);
  }
  return new UsageError(e.message, hint);
}

export interface ParsedCommandLine {
  /** The subcommand's name (the first positional), if any. */
  name?: string;
  command?: Subcommand;
  /** Positional arguments after the subcommand name. */
  args: string[];
  values: Values;
}

/**
 * The one parser: global options around the subcommand name, then strictly the global and that
 * subcommand's options. Throws UsageError.
 */
export function parseCommandLine(argv: string[]): ParsedCommandLine {
  let first: ReturnType<typeof parseArgs>;
  try {
    first = parseArgs({ args: argv, options: GLOBAL_OPTIONS, strict: false, allowPositionals: true });
  } catch (err) {
    throw usageErrorFrom(err, undefined);
  }
  const name = first.positionals[0];
  const command = SUBCOMMANDS.find((c) => c.name === name);
  if (!command) return { ...(name !== undefined ? { name } : {}), args: first.positionals.slice(1), values: first.values as Values };
  try {
    const parsed = parseArgs({ args: argv, options: { ...GLOBAL_OPTIONS, ...command.options }, strict: true, allowPositionals: true });
    return { name: command.name, command, args: parsed.positionals.slice(1), values: parsed.values as Values };
  } catch (err) {
    throw usageErrorFrom(err, command.name);
  }
}

/** `lockstep hub`'s arguments (the same parser as every other command). Throws UsageError. */
export function parseHubArgs(argv: string[]): { dataDir?: string; config?: string; help: boolean } {
  const { values, args } = parseCommandLine(["hub", ...argv]);
  if (args.length > 0) throw new UsageError(`unknown argument ${args[0]}`, 'run "lockstep hub --help"');
  const dataDir = str(values, "data-dir");
  const config = str(values, "config");
  return { ...(dataDir ? { dataDir } : {}), ...(config ? { config } : {}), help: values.help === true };
}

/** Run the CLI; resolves to the process exit code. */
export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  try {
    const { name, command, args, values } = parseCommandLine(argv);
    if (!command) {
      if (name === undefined || name === "help") {
        io.stdout(globalHelp());
        return name === undefined && !values.help ? 2 : 0;
      }
      throw new UsageError(`unknown command "${name}"`);
    }
    if (values.help) {
      io.stdout(`${command.summary}\n\n${command.usage}\n`);
      return 0;
    }
    let loaded: HubBrokerConfig | undefined;
    const config = () => (loaded ??= loadHubBrokerConfig({ file: str(values, "config"), env: io.env, defaults: { dataDir: str(values, "data-dir") ?? DEFAULT_DATA_DIR } }));
    return await command.run({ args, values, io, config });
  } catch (err) {
    if (err instanceof LockstepError) {
      io.stderr(`lockstep: ${err.message}\n`);
      return err instanceof UsageError ? 2 : 1;
    }
    throw err;
  }
}

function defaultIo(): CliIo {
  return {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
  };
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // Everything the command started is stopped; a stray handle must not keep the process up.
      setTimeout(() => process.exit(code), 1000).unref();
    },
    (err: unknown) => {
      process.stderr.write(`lockstep: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
