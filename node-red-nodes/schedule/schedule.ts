/**
 * lockstep-schedule: fires a message on a cron schedule in a chosen time zone (node-cron). Blank
 * fields take the hub's weekly-update settings (settings.lockstep.automatic), so the shipped weekly
 * flow follows the hub's config file.
 */
import cron, { type ScheduledTask } from "node-cron";
import { ConfigError } from "../../protocol/errors.js";
import { checkTimeZone } from "../../protocol/windows.js";
import { onClose, optionalString } from "../lib/input.js";
import { lockstepSettings } from "../lib/settings.js";
import { status } from "../lib/status.js";
import type { Node, NodeAPI, NodeDef } from "../lib/red.js";

const DEFAULT_CRON = "0 6 * * 1";

function formatNext(date: Date | null, timeZone: string): string {
  if (!date) return "no next run";
  return `next ${date.toLocaleString("sv-SE", { timeZone, dateStyle: "short", timeStyle: "short" })}`;
}

export = function register(RED: NodeAPI): void {
  function LockstepScheduleNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    let task: ScheduledTask | undefined;
    try {
      const defaults = lockstepSettings(RED).automatic;
      const expression = optionalString(def.cron) ?? defaults.cron ?? DEFAULT_CRON;
      const timeZone = optionalString(def.timeZone) ?? defaults.timeZone ?? "UTC";
      const detail = cron.validateDetailed(expression);
      if (!detail.valid) {
        throw new ConfigError(`cron expression "${expression}" is invalid: ${detail.errors.map((e) => `${e.field}: ${e.message}`).join("; ")}`);
      }
      checkTimeZone(timeZone);
      task = cron.schedule(
        expression,
        (ctx) => {
          node.send({ topic: "lockstep/schedule", payload: ctx.date.toISOString(), cron: expression, timeZone });
          node.status(status.ok(formatNext(task?.getNextRun() ?? null, timeZone)));
        },
        { timezone: timeZone, name: `lockstep-schedule-${node.id}`, noOverlap: true },
      );
      node.status(status.idle(formatNext(task.getNextRun(), timeZone)));
    } catch (err) {
      node.status(status.failed(err));
      node.error(err);
    }

    onClose(node, async () => {
      await task?.destroy();
    });
  }
  RED.nodes.registerType("lockstep-schedule", LockstepScheduleNode);
};
