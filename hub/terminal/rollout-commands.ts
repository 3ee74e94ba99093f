/** `lockstep rollouts`, `rollout ID [--follow]`, `deploy`: rollouts as the user sees and starts them. */
import { createInterface } from "node:readline/promises";
import type { Subcommand } from "../../broker/commands.js";
import { str, UsageError } from "../../broker/commands.js";
import { HOST_ID_PATTERN, ID_PATTERN, isFinalRolloutState, type RolloutProgress } from "../../protocol/index.js";
import { z } from "zod";
import { ExitCode, TerminalError } from "./errors.js";
import { connectionHelp } from "./fleet-commands.js";
import { JSON_OPTION, positionals, withSession, type TerminalContext } from "./run.js";
import { pendingUpdateText, rolloutDetail, rolloutsTable } from "./views.js";

const rolloutExit = (r: RolloutProgress) => (r.state === "completed" ? ExitCode.ok : isFinalRolloutState(r.state) ? ExitCode.failure : ExitCode.ok);

export const rolloutsCommand: Subcommand = {
  name: "rollouts",
  summary: "the rollouts on the broker, newest first",
  usage: connectionHelp("lockstep rollouts [--json]"),
  options: { ...JSON_OPTION },
  run: (ctx) =>
    withSession(ctx, async (t) => {
      await t.session.fleet();
      const rollouts = t.session.rollouts();
      if (t.json) t.printJson({ rollouts });
      else t.print(rolloutsTable(rollouts));
      return ExitCode.ok;
    }),
};

/** Print a rollout now and on every change until it is final (or Ctrl-C); exit 1 unless it completed. */
async function followRollout(t: TerminalContext, id: string): Promise<number> {
  const print = (r: RolloutProgress) => (t.json ? t.print(JSON.stringify(r) + "\n") : t.print(rolloutDetail(r) + "\n"));
  const current = t.session.rollout(id);
  if (current && isFinalRolloutState(current.state)) return print(current), rolloutExit(current);
  // Ctrl-C is ours before the first output: a script may interrupt as soon as it sees it.
  const stopped = t.interrupted();
  if (current) print(current);
  const final = await new Promise<RolloutProgress | undefined>((resolve) => {
    const off = t.session.onRollout((r) => {
      if (r.id !== id) return;
      print(r);
      if (isFinalRolloutState(r.state)) {
        off();
        resolve(r);
      }
    });
    void stopped.then(() => (off(), resolve(undefined)));
  });
  return final ? rolloutExit(final) : ExitCode.ok;
}

const CancelAnswer = z.object({ cancelled: z.literal(true), rollout_id: z.string(), host: z.string() }).passthrough();

/** `lockstep rollout cancel ID HOST`: POST /api/rollouts/ID/hosts/HOST/cancel (docs/architecture.md, "Cancelling a step"). */
async function cancelStep(t: TerminalContext, args: string[]): Promise<number> {
  const [id, host] = positionals(args, ["ID", "HOST"], "rollout cancel");
  if (!ID_PATTERN.test(id!)) throw new UsageError(`"${id}" is not a rollout id`, 'see "lockstep rollouts"');
  if (!HOST_ID_PATTERN.test(host!)) throw new UsageError(`"${host}" is not a host id`, 'see "lockstep status"');
  const answer = CancelAnswer.safeParse(await t.session.api("POST", `/api/rollouts/${id}/hosts/${host}/cancel`));
  if (!answer.success) throw new TerminalError("the hub's answer to the cancel does not match the API", ExitCode.failure);
  if (t.json) t.printJson(answer.data);
  else t.print(`cancelled the step ${host} was running in rollout ${id}: the host fails and the rollout applies its failure policy\n`);
  return ExitCode.ok;
}

export const rolloutCommand: Subcommand = {
  name: "rollout",
  summary: "one rollout: progress and per-host outcome (--follow: live until it ends); cancel a host's step",
  usage: connectionHelp(
    [
      "lockstep rollout ID [--follow] [--json]",
      "    Exit code 1 when the rollout ended other than completed.",
      "lockstep rollout cancel ID HOST [--json]",
      "    Cancel the step HOST is running in rollout ID (an operator's credentials): the hub stops",
      "    waiting, stops the job on the host (a switch or rollback is left to finish), the host fails",
      "    and the rollout applies its failure policy.",
    ].join("\n"),
  ),
  options: { ...JSON_OPTION, follow: { type: "boolean", short: "f" } },
  run: (ctx) =>
    withSession(ctx, async (t) => {
      if (ctx.args[0] === "cancel") return cancelStep(t, ctx.args.slice(1));
      const [id] = positionals(ctx.args, ["ID"], "rollout");
      await t.session.fleet();
      if (ctx.values.follow === true) return followRollout(t, id!);
      const r = t.session.rollout(id!);
      if (!r) throw new TerminalError(`no rollout ${id} on the broker`, ExitCode.failure, 'see "lockstep rollouts"');
      if (t.json) t.printJson(r);
      else t.print(rolloutDetail(r));
      return rolloutExit(r);
    }),
};

// rollout_id since the API renamed it; job_id is the older name (kept by the hub for one release).
const DeployAnswer = z
  .object({ rollout_id: z.string().optional(), job_id: z.string().optional(), commit: z.string().optional(), pr_number: z.number().optional() })
  .passthrough()
  .refine((a) => a.rollout_id ?? a.job_id, "no rollout id");
const HOST_LIST = /^[a-z0-9][a-z0-9_-]{0,62}(,[a-z0-9][a-z0-9_-]{0,62})*$/;
/** How many canaries: digits only (a host id may be digits too; a list with one such host is written "07,"). */
const CANARY_COUNT = /^\d{1,4}$/;

/** --canary HOSTS|N as the API's `canary` field: a list of hosts, or how many (0: no canary phase). */
export function parseCanary(text: string | undefined): string[] | number | undefined {
  if (text === undefined) return undefined;
  if (CANARY_COUNT.test(text)) return Number(text);
  const list = text.replace(/,$/, "");
  if (!HOST_LIST.test(list)) throw new UsageError("--canary needs host ids separated by commas, or a number of hosts", 'run "lockstep deploy --help"');
  return list.split(",");
}

/** The plan's canary line, as the rollout planner will pick them (rollout/planner.ts). */
export function canaryPlanText(canary: string[] | number | undefined): string {
  if (canary === undefined) return "canary: as the hub's rollout settings say (by default the hosts flagged canary, else the highest-priority host)";
  if (Array.isArray(canary)) return `canary: ${canary.join(", ")} first, alone; the other hosts after it`;
  if (canary === 0) return "canary: none (no canary phase; the waves start at once)";
  return `canary: ${canary} host${canary === 1 ? "" : "s"} first, alone (online hosts flagged canary first, then by priority)`;
}

export const deployCommand: Subcommand = {
  name: "deploy",
  summary: "merge the pending lock update and roll it out (asks first; --yes for scripts)",
  usage: connectionHelp(
    [
      "lockstep deploy [--pr N] [--hosts a,b] [--canary a,b|N] [--yes] [--no-follow] [--json]",
      "    Shows the plan (the pending PR, its lock diff and CI, the hosts, the canary), asks, then",
      "    POST /api/flake-updates/merge-and-deploy and follows the rollout to its end.",
      "    --pr N        the PR to merge (default: the pending update)",
      "    --hosts a,b   only these hosts (default: the whole fleet)",
      "    --canary a,b  these hosts first, alone, before the waves (they must be online)",
      "    --canary N    the first N hosts (flagged canary first, then by priority); 0: no canary",
      "                  (default: the hub's rollout settings)",
      "    --yes         do not ask (needed when stdin is not a terminal)",
    ].join("\n"),
  ),
  options: { ...JSON_OPTION, pr: { type: "string" }, hosts: { type: "string" }, canary: { type: "string" }, yes: { type: "boolean", short: "y" }, "no-follow": { type: "boolean" } },
  run: (ctx) =>
    withSession(ctx, async (t) => {
      if (ctx.args.length > 0) throw new UsageError(`unknown argument ${ctx.args[0]}`, 'run "lockstep deploy --help"');
      const prText = str(ctx.values, "pr");
      if (prText !== undefined && !/^[1-9]\d{0,8}$/.test(prText)) throw new UsageError("--pr needs a PR number", 'run "lockstep deploy --help"');
      const hostsText = str(ctx.values, "hosts");
      if (hostsText !== undefined && !HOST_LIST.test(hostsText)) throw new UsageError("--hosts needs host ids separated by commas", 'run "lockstep deploy --help"');
      const canary = parseCanary(str(ctx.values, "canary"));
      const fleet = await t.session.fleet();
      const expected = (await t.session.expected());
      const pr = prText !== undefined ? Number(prText) : expected?.pendingUpdate?.number;
      if (pr === undefined) throw new TerminalError("there is no pending lock update to deploy", ExitCode.failure, "give --pr N");
      const hosts = hostsText?.split(",");
      const canaryHosts = Array.isArray(canary) ? canary : [];
      const unknown = [...(hosts ?? []), ...canaryHosts].filter((h) => !fleet.host(h));
      if (unknown.length > 0) throw new TerminalError(`unknown host(s): ${[...new Set(unknown)].join(", ")}`, ExitCode.failure, 'see "lockstep status"');
      const outside = hosts ? canaryHosts.filter((h) => !hosts.includes(h)) : [];
      if (outside.length > 0) throw new UsageError(`canary host(s) ${outside.join(", ")} not among --hosts`, "a canary is one of the hosts the rollout deploys to");
      if (!t.json) {
        t.print(pendingUpdateText(expected));
        t.print(`plan: merge PR #${pr}, then roll out to ${hosts ? hosts.join(", ") : `the whole fleet (${fleet.hosts().length} hosts)`}\n`);
        t.print(`  ${canaryPlanText(canary)}\n`);
      }
      if (ctx.values.yes !== true) {
        if (!process.stdin.isTTY) throw new UsageError("not a terminal: confirm with --yes", 'run "lockstep deploy --help"');
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        const answer = await rl.question("Deploy? [y/N] ");
        rl.close();
        if (!/^y(es)?$/i.test(answer.trim())) {
          t.print("not deployed\n");
          return ExitCode.failure;
        }
      }
      const raw = await t.session.api("POST", "/api/flake-updates/merge-and-deploy", { pr_number: pr, ...(hosts ? { hosts } : {}), ...(canary !== undefined ? { canary } : {}) });
      const started = DeployAnswer.safeParse(raw);
      if (!started.success) throw new TerminalError("the hub's answer to the deploy does not match the API", ExitCode.failure);
      const rolloutId = (started.data.rollout_id ?? started.data.job_id)!;
      if (t.json) t.print(JSON.stringify({ started: started.data }) + "\n");
      else t.print(`rollout ${rolloutId} started\n`);
      if (ctx.values["no-follow"] === true) return ExitCode.ok;
      return followRollout(t, rolloutId);
    }),
};
