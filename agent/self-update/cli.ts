/**
 * `lockstep-agent self-update` and `lockstep-agent status`.
 * agent/cli.ts passes the arguments after `lockstep-agent`, starting with the subcommand name:
 *
 *   lockstep-agent self-update [--config PATH] [--json]
 *   lockstep-agent status      [--config PATH] [--json] [--runs N]
 *   lockstep-agent boot-check  [--config PATH] [--json]
 *
 * Exit codes of self-update: 0 succeeded, 1 failed, 2 usage or config error, 3 a health check
 * stopped the run (nothing changed), 4 another run holds the lock (nothing changed), 5 switched
 * but not confirmed by the hub in time, rolled back (magic rollback). Of
 * boot-check: 0 healthy (or nothing to check), 1 unhealthy again after its one rollback, or the
 * rollback failed, 5 rolled back (the previous generation is the boot default, rebooting).
 */
import { existsSync } from "node:fs";
import { z } from "zod";
import { LockstepError } from "../../protocol/index.js";
import { defaultSelfUpdateConfigPaths, loadSelfUpdateConfig, type SelfUpdateConfig } from "./config.js";
import { runSelfUpdate } from "./run.js";
import { runBootCheck } from "./boot-check.js";
import { readRunRecords, type RunRecord, type RunOutcome } from "./runlog.js";
import { runCommand } from "./exec.js";

export const EXIT_CODES: Record<RunOutcome, number> = { succeeded: 0, failed: 1, unhealthy: 3, locked: 4, "rolled-back": 5 };
const EXIT_USAGE = 2;

const HELP = `lockstep-agent self-update: update this host from its flake without a hub, meant for a
nightly systemd timer / launchd job. One run: take the lock (never beside an agent job or another
run) -> health checks (nothing is touched unless they pass) -> update (mode flake-update: nix flake
update + commit; mode git-pull: pull the branch) -> build (an out-link: a failed build leaves the
running generation alone) -> switch -> reboot, only when the kernel, initrd or modules changed and
only inside the reboot window. Every run is appended to <stateDir>/self-update-runs.jsonl and, with
a broker configured, reported to the hub.

lockstep-agent status shows the recorded runs and the next scheduled one.

lockstep-agent boot-check runs once per boot (the lockstep-boot-check unit). After a reboot a
self-update asked for, it checks within bootConfirmSeconds that the new generation is healthy
(system state, required and bootCheck.activeUnits units, the host's test scripts); if not, it makes
the previous generation the boot default and reboots, once: unhealthy again after that, it stops
and reports. Every other boot it does nothing. Exit codes: 0 healthy or nothing to check, 1
unhealthy again (stopped) or the rollback failed, 5 rolled back and rebooting.

With a broker configured (and magicRollback on, the default), a run that switched waits up to
confirmTimeoutSeconds for the hub's confirmation and otherwise switches back to the previous
generation and checkout (magic rollback).

exit codes of self-update: 0 succeeded, 1 failed, 2 usage or config error, 3 a health check
  stopped the run (nothing changed), 4 another run or an agent job holds the lock (nothing changed),
  5 switched but not confirmed by the hub: rolled back
`;

const USAGE = `usage:
  lockstep-agent self-update [--config PATH] [--json]
  lockstep-agent status      [--config PATH] [--json] [--runs N]
  lockstep-agent boot-check  [--config PATH] [--json]
default config: the first that exists of ${defaultSelfUpdateConfigPaths().join(", ")}
`;

interface Flags {
  config: string | undefined;
  json: boolean;
  runs: number;
}

function parseFlags(args: string[]): Flags | string {
  const flags: Flags = { config: undefined, json: false, runs: 10 };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--json") flags.json = true;
    else if (a === "--config" && args[i + 1]) flags.config = args[++i]!;
    else if (a === "--runs" && args[i + 1] && /^\d+$/.test(args[i + 1]!)) flags.runs = Number(args[++i]);
    else return `unknown or incomplete argument: ${a}`;
  }
  return flags;
}

/** `systemctl show UNIT -p NextElapseUSecRealtime` prints `NextElapseUSecRealtime=Sun 2026-11-22 03:17:00 UTC`. */
const NextElapse = z
  .string()
  .transform((s) => /^NextElapseUSecRealtime=(.*)$/m.exec(s)?.[1]?.trim() ?? "")
  .transform((v) => (v === "" || v === "n/a" || v === "0" ? null : v));

export async function nextScheduledRun(cfg: SelfUpdateConfig): Promise<string> {
  if (cfg.nextRunArgv === null) return "not queryable (launchd runs it at its StartCalendarInterval)";
  const r = await runCommand(cfg.nextRunArgv, { timeoutMs: 10_000, env: { ...process.env, ...cfg.env } });
  if (r.exitCode !== 0) return "unknown";
  return NextElapse.parse(r.stdout) ?? "unknown";
}

function formatRun(r: RunRecord): string {
  const gen = r.generationBefore !== undefined || r.generationAfter !== undefined ? ` gen ${r.generationBefore ?? "-"} -> ${r.generationAfter ?? "-"}` : "";
  const secs = (r.durationMs / 1000).toFixed(1);
  return `${r.startedAt}  ${r.outcome.padEnd(9)} ${secs.padStart(7)} s${gen}  ${r.summary}${r.error ? `\n      why: ${r.error}` : ""}`;
}

export async function runSelfUpdateCli(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== "self-update" && command !== "status" && command !== "boot-check") {
    process.stderr.write(USAGE);
    return EXIT_USAGE;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`${HELP}\n${USAGE}`);
    return 0;
  }
  const flags = parseFlags(rest);
  if (typeof flags === "string") {
    process.stderr.write(`${flags}\n${USAGE}`);
    return EXIT_USAGE;
  }
  let cfg: SelfUpdateConfig;
  try {
    const candidates = defaultSelfUpdateConfigPaths();
    cfg = loadSelfUpdateConfig(flags.config ?? candidates.find((p) => existsSync(p)) ?? candidates[0]);
  } catch (e) {
    if (!(e instanceof LockstepError)) throw e;
    process.stderr.write(`${e.message}\n`);
    return EXIT_USAGE;
  }

  if (command === "status") {
    const runs = readRunRecords(cfg.stateDir, flags.runs);
    const next = await nextScheduledRun(cfg);
    if (flags.json) {
      process.stdout.write(JSON.stringify({ host: cfg.host, nextRun: next, runs }, null, 2) + "\n");
    } else {
      const lines = [`self-update of ${cfg.host}`, `next run: ${next}`, runs.length ? `last ${runs.length} run(s), oldest first:` : "no runs recorded yet"];
      process.stdout.write(lines.concat(runs.map(formatRun)).join("\n") + "\n");
    }
    return 0;
  }

  if (command === "boot-check") {
    const checked = await runBootCheck(cfg);
    if (!checked) {
      process.stdout.write(flags.json ? "null\n" : "no reboot into a new generation is waiting for its boot check\n");
      return 0;
    }
    process.stdout.write(flags.json ? JSON.stringify(checked) + "\n" : formatRun(checked) + "\n");
    return EXIT_CODES[checked.outcome];
  }

  const record = await runSelfUpdate(cfg);
  process.stdout.write(flags.json ? JSON.stringify(record) + "\n" : formatRun(record) + "\n");
  return EXIT_CODES[record.outcome];
}
