/** `lockstep status`, `watch`, `pr`, `audit`: reading the fleet as the user. */
import type { Subcommand } from "../../broker/commands.js";
import { str, UsageError } from "../../broker/commands.js";
import { AuditEvent, decodeJson, HostPreview, PreviewSummary, type PendingUpdate } from "../../protocol/index.js";
import { z } from "zod";
import { ExitCode, TerminalError } from "./errors.js";
import { JSON_OPTION, withSession, type TerminalContext } from "./run.js";
import { auditTable, pendingUpdateText, rowIsRed, statusRows, statusTable } from "./views.js";

const CONNECTION_HELP = [
  "Connection: the hub and user from --config FILE (default ~/.config/lockstep/cli.json: {hub, user, passwordFile, mqtt}),",
  "LOCKSTEP_HUB, LOCKSTEP_USER, LOCKSTEP_PASSWORD_FILE (or LOCKSTEP_PASSWORD); otherwise a password prompt.",
  "Exit codes: 0 ok, 1 failure or something red, 2 usage, 3 cannot reach the hub or login refused.",
].join("\n");

export const connectionHelp = (usage: string) => `${usage}\n\n${CONNECTION_HELP}`;

async function statusOnce(t: TerminalContext) {
  const fleet = await t.session.fleet();
  return statusRows(fleet.hosts(), t.session.rollouts());
}

export const statusCommand: Subcommand = {
  name: "status",
  summary: "the fleet: every host's five compartments, online, generation, last rollout",
  usage: connectionHelp("lockstep status [--json]\n    Exit code 1 when any host has a failed compartment."),
  options: { ...JSON_OPTION },
  run: (ctx) =>
    withSession(ctx, async (t) => {
      if (ctx.args.length > 0) throw new UsageError(`unknown argument ${ctx.args[0]}`, 'run "lockstep status --help"');
      const rows = await statusOnce(t);
      if (t.json) t.printJson({ hosts: rows });
      else t.print(statusTable(rows, t.colour));
      return rows.some(rowIsRed) ? ExitCode.failure : ExitCode.ok;
    }),
};

export const watchCommand: Subcommand = {
  name: "watch",
  summary: "the status table, redrawn on every change until Ctrl-C",
  usage: connectionHelp("lockstep watch [--json]\n    --json prints one JSON line per change."),
  options: { ...JSON_OPTION },
  run: (ctx) =>
    withSession(ctx, async (t) => {
      const fleet = await t.session.fleet();
      const draw = () => {
        const rows = statusRows(fleet.hosts(), t.session.rollouts());
        if (t.json) t.print(JSON.stringify({ at: new Date().toISOString(), hosts: rows }) + "\n");
        else t.print((t.colour ? "\x1b[2J\x1b[H" : "") + `${new Date().toISOString()}\n` + statusTable(rows, t.colour) + "\n");
      };
      // Ctrl-C is ours before the first frame is out: a script may interrupt as soon as it sees it.
      const stopped = t.interrupted();
      draw();
      let pending = false;
      // Retained updates come in bursts: one redraw per burst.
      const schedule = () => {
        if (pending) return;
        pending = true;
        setImmediate(() => {
          pending = false;
          draw();
        });
      };
      const offFleet = fleet.onChange(schedule);
      const offRollouts = t.session.onRollout(schedule);
      await stopped;
      offFleet();
      offRollouts();
      return ExitCode.ok;
    }),
};

/** The pending PR head's preview: its fleet summary and each host's preview (older heads' are not this update's). */
async function readPreview(t: TerminalContext, pending: PendingUpdate): Promise<{ summary: PreviewSummary; hosts: HostPreview[] } | undefined> {
  const topics = t.session.topics;
  const summary = await t.session.retained(topics.previewSummary(pending.number), (p) => decodeJson(PreviewSummary, p));
  if (!summary || summary.headSha !== pending.headSha) return undefined;
  const filter = topics.preview(pending.number, "+");
  const byTopic = await t.session.retainedAll(filter, (topic) => { const k = topics.parse(topic); return k?.kind === "preview" && k.pr === pending.number; }, (p) => decodeJson(HostPreview, p));
  const hosts = [...byTopic.values()].filter((h) => h.headSha === pending.headSha).sort((a, b) => a.host.localeCompare(b.host));
  return { summary, hosts };
}

export const prCommand: Subcommand = {
  name: "pr",
  summary: "the pending lock update: PR, lock diff, CI, and the preview once it exists",
  usage: connectionHelp("lockstep pr [--json]"),
  options: { ...JSON_OPTION },
  run: (ctx) =>
    withSession(ctx, async (t) => {
      const fleet = await t.session.fleet();
      const expected = (await t.session.expected());
      const pending = expected?.pendingUpdate ?? null;
      const preview = pending ? await readPreview(t, pending) : undefined;
      if (t.json) t.printJson({ expected: expected ?? null, pending, preview: preview?.summary ?? null, previews: preview?.hosts ?? [] });
      else t.print(pendingUpdateText(expected, preview));
      return ExitCode.ok;
    }),
};

const AuditResponse = z.object({ events: z.array(AuditEvent) });

export const auditCommand: Subcommand = {
  name: "audit",
  summary: "the audit log, newest first (GET /api/audit)",
  usage: connectionHelp("lockstep audit [--limit N] [--before EVENT_ID] [--json]"),
  options: { ...JSON_OPTION, limit: { type: "string" }, before: { type: "string" } },
  run: (ctx) =>
    withSession(ctx, async (t) => {
      const query = new URLSearchParams();
      const limit = str(ctx.values, "limit");
      if (limit !== undefined) {
        if (!/^\d+$/.test(limit)) throw new UsageError("--limit needs a number (1-500)", 'run "lockstep audit --help"');
        query.set("limit", limit);
      }
      const before = str(ctx.values, "before");
      if (before) query.set("before", before);
      const raw = await t.session.api("GET", `/api/audit${query.size ? `?${query}` : ""}`);
      const parsed = AuditResponse.safeParse(raw);
      if (!parsed.success) throw new TerminalError("the hub's audit answer does not match the protocol", ExitCode.failure, "the hub and this client may be different versions");
      if (t.json) t.printJson(parsed.data);
      else t.print(auditTable(parsed.data.events));
      return ExitCode.ok;
    }),
};
