#!/usr/bin/env node
/**
 * lockstep-agent
 *   run --config FILE            run the agent (systemd / launchd start this)
 *   check-config --config FILE   validate a config file and print the result
 *   self-update ... | status ... standalone nightly self-update for hosts without a hub
 *   boot-check ...               after a self-update's reboot: boot rollback if the new generation is unhealthy
 *   version
 *
 * Exit codes: 0 stopped on request, 1 runtime error, 2 usage or config error,
 * 75 restart requested by a `restart` command (Restart=on-failure restarts it).
 */
import "./lean-heap.js"; // first: before the other modules allocate
import pino from "pino";
import { LockstepError } from "../protocol/index.js";
import { Agent, RESTART_EXIT_CODE } from "./agent.js";
import { loadAgentConfig } from "./config.js";
import { AGENT_VERSION } from "./version.js";

const USAGE = `usage: lockstep-agent run --config FILE
       lockstep-agent check-config --config FILE
       lockstep-agent self-update [options] | status [options] | boot-check [options]
       lockstep-agent version
       lockstep-agent --help`;

const HELP = `lockstep-agent: the per-host daemon of Lockstep. It publishes this host's five compartments
(Agent, Git, Lock, System, Tests) to the hub's MQTT broker and runs the allow-listed jobs the hub
sends (pull, switch, test, rollback, ...). No shell text ever comes from the network.

commands:
  run --config FILE            run the agent (systemd / launchd start this; runs until SIGTERM)
  check-config --config FILE   validate a config file, print what it says, exit 0 (or 2 with the field named)
  self-update [--config FILE] [--json]
                               standalone nightly update for hosts without a hub (see self-update --help)
  status [--config FILE] [--json] [--runs N]
                               the self-update's recent runs and its next scheduled run
  boot-check [--config FILE] [--json]
                               once per boot: after a self-update's reboot, roll back to the previous
                               generation (once) if the new one is unhealthy (see self-update --help)
  version                      print the agent version

config: a JSON file; a complete example is agent/example-config.json in the source (shipped as
  example-config.json next to this program), every field is documented in agent/README.md.
  LOCKSTEP_AGENT_CONFIG may name the file instead of --config.
environment overrides: LOCKSTEP_AGENT_BROKER_URL, LOCKSTEP_AGENT_PASSWORD_FILE,
  LOCKSTEP_AGENT_LOG_LEVEL, LOCKSTEP_AGENT_STATE_DIR
exit codes: 0 stopped on request, 1 runtime error, 2 usage or config error,
  75 restart requested by a \`restart\` command (Restart=on-failure restarts it)
first steps: on the hub, \`lockstep users add HOST --role agent\` prints the host's password; put it
  in the file broker.passwordFile names, then \`lockstep-agent check-config --config FILE\` and \`run\`.`;

const wantsHelp = (args: string[]): boolean => args.some((a) => a === "--help" || a === "-h");

function configArg(args: string[]): string | undefined {
  const i = args.indexOf("--config");
  if (i >= 0) return args[i + 1];
  const eq = args.find((a) => a.startsWith("--config="));
  return eq?.slice("--config=".length) ?? process.env.LOCKSTEP_AGENT_CONFIG;
}

async function run(args: string[]): Promise<number> {
  const file = configArg(args);
  if (!file) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const config = loadAgentConfig(file);
  const log = pino({ level: config.logLevel, base: { host: config.host }, redact: ["password", "*.password", "brokerPassword"] });
  const agent = new Agent(config, log);
  let exitCode = 0;
  let shuttingDown = false;
  const shutdown = async (code: number, why: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info({ why }, "stopping");
    exitCode = code;
    await agent.stop();
    process.exit(exitCode);
  };
  process.on("SIGTERM", () => void shutdown(0, "SIGTERM"));
  process.on("SIGINT", () => void shutdown(0, "SIGINT"));
  agent.on("restart-requested", () => void shutdown(RESTART_EXIT_CODE, "restart command"));
  await agent.start();
  log.info({ version: AGENT_VERSION, os: config.os.kind, repo: config.repo.checkoutDir }, "agent started");
  return new Promise<number>(() => undefined); // runs until a signal or a restart command
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h" || ((cmd === "run" || cmd === "check-config") && wantsHelp(rest))) {
    (cmd === undefined ? process.stderr : process.stdout).write(`${HELP}\n`);
    return cmd === undefined ? 2 : 0;
  }
  switch (cmd) {
    case "run":
      return run(rest);
    case "check-config": {
      const file = configArg(rest);
      if (!file) {
        process.stderr.write(`${USAGE}\n`);
        return 2;
      }
      const c = loadAgentConfig(file);
      process.stdout.write(`config OK: host ${c.host}, os ${c.os.kind}, broker ${c.broker.url}, checkout ${c.repo.checkoutDir}\n`);
      return 0;
    }
    case "self-update":
    case "status":
    case "boot-check":
      // Loaded only for these commands: the daemon never needs the standalone self-update.
      return (await import("./self-update/cli.js")).runSelfUpdateCli(argv);
    case "version":
    case "--version":
      process.stdout.write(`${AGENT_VERSION}\n`);
      return 0;
    default:
      process.stderr.write(`${USAGE}\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof LockstepError) {
      process.stderr.write(`lockstep-agent: ${e.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`lockstep-agent: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
