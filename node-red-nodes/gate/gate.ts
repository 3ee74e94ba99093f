/**
 * lockstep-gate: lets a message through only inside the maintenance window, only for hosts not
 * on hold and, with its preview check on, only when the update in msg.payload may be merged by its
 * previews (the hub's previews.gating). Output 1: passed (msg.hosts with held hosts removed).
 * Output 2: held back, with msg.reason saying why (the preview step also sets msg.retryable,
 * msg.guards and msg.prNumber, as the merge node does, so the weekly flow waits or gives up alike).
 */
import { z } from "zod";
import { CommitSha, PendingUpdate } from "../../protocol/schemas.js";
import { ConfigError } from "../../protocol/errors.js";
import { decideGate, gateConfigFromDef, pauseCheckFromDef, pausedStep, previewCheckFromDef, previewPolicy, previewStep, type GateConfig, type PreviewCheck } from "../lib/gate-logic.js";
import { AutomaticReporter } from "../lib/automatic-report.js";
import { lockstepSettings } from "../lib/settings.js";
import { onInput, parseMessageField, requester, HostId } from "../lib/input.js";
import { status } from "../lib/status.js";
import type { FleetConfigNode } from "../lib/fleet-connection.js";
import type { Node, NodeAPI, NodeDef, NodeMessage } from "../lib/red.js";

const PrNumber = z.coerce.number().int().positive();

/** The update the preview step judges: the pending update in msg.payload, or msg.prNumber with msg.headSha. */
function updateOf(msg: NodeMessage): { pr: number; headSha: string } {
  const pending = PendingUpdate.safeParse(msg.payload);
  if (pending.success) return { pr: pending.data.number, headSha: pending.data.headSha };
  if (msg.prNumber === undefined) throw new ConfigError("the preview check needs the pending update in msg.payload (or msg.prNumber and msg.headSha)");
  return { pr: parseMessageField(PrNumber, msg.prNumber, "msg.prNumber"), headSha: parseMessageField(CommitSha, msg.headSha, "msg.headSha") };
}


export = function register(RED: NodeAPI): void {
  function LockstepGateNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    let config: GateConfig;
    let previewCheck: PreviewCheck;
    try {
      config = gateConfigFromDef(def);
      previewCheck = previewCheckFromDef(def);
    } catch (err) {
      node.status(status.failed(err));
      node.error(err);
      return;
    }
    const fleet = typeof def.fleet === "string" && def.fleet ? (RED.nodes.getNode(def.fleet) as FleetConfigNode | null) : null;
    // The hub's previews (absent in a stock Node-RED, or with previews off: then nothing to gate on).
    const previews = fleet?.connection?.previews ?? lockstepSettings(RED).services?.previews;
    const policy = previewPolicy(previewCheck, previews?.gating);
    const reporterFleet = fleet?.connection?.fleet ?? lockstepSettings(RED).services?.fleet;
    const reporter = reporterFleet ? new AutomaticReporter(reporterFleet) : undefined;
    const idle = config.window ? `window ${config.window.start}-${config.window.end}` : "no window";
    const previewNote = previewCheck === "off" ? "" : policy === "ignore" ? ", previews not gated" : `, previews: ${policy}`;
    node.status(status.idle(idle + previewNote));

    // Automatic mode's pause after a failed rollout (the hub's; a stock Node-RED has none).
    const checkPause = pauseCheckFromDef(def);
    const automatic = lockstepSettings(RED).services?.automatic;

    onInput(node, async (msg, send) => {
      if (checkPause && msg.topic === "resume") {
        // An operator's (or a flow's) "resume": automatic mode merges again. The message goes no further.
        const resumed = automatic?.resume(requester(msg, node), "a message to the gate") ?? false;
        node.status(resumed ? status.ok("automatic mode resumed") : status.idle("automatic mode was not paused"));
        return;
      }
      if (checkPause) {
        // Step "automatic-paused": nothing merges automatically after a failed rollout until someone resumes.
        const paused = pausedStep(automatic?.state);
        if (!paused.pass) {
          msg.reason = paused.reason;
          msg.retryable = false;
          msg.guards = [{ guard: "automatic-paused", detail: paused.reason }];
          node.status(status.waiting("automatic updates paused"));
          send([null, msg]);
          return;
        }
      }
      const host = msg.host === undefined ? undefined : parseMessageField(HostId, msg.host, "msg.host");
      const hosts = msg.hosts === undefined ? undefined : parseMessageField(z.array(HostId), msg.hosts, "msg.hosts");
      const heldByFleet = new Map<string, string>();
      for (const h of fleet?.heldHosts() ?? []) heldByFleet.set(h.host, h.reason ?? "");
      const decision = decideGate(config, { host, hosts, heldByFleet }, new Date());
      if (decision.pass && policy !== "ignore") {
        // Step "preview": the update's previews must allow merging it (wait while they run).
        const update = updateOf(msg);
        if (!previews) throw new ConfigError(`the preview check needs the hub's previews (previews.enabled), or set it to "off"`);
        const step = previewStep(previews.mergeVerdict(update.pr, update.headSha, policy));
        const actor = requester(msg, node);
        if (!step.pass) {
          await reporter?.report({ ...update, step: "preview", decision: step.wait ? "waiting" : "refused", reason: step.reason, code: step.guard, actor });
          msg.prNumber = update.pr;
          msg.reason = step.reason;
          msg.retryable = step.wait;
          msg.guards = [{ guard: step.guard, detail: step.reason }];
          msg.held = decision.held;
          node.status(step.wait ? status.waiting(`PR #${update.pr}: previews running`) : status.failed(`PR #${update.pr}: ${step.reason}`));
          send([null, msg]);
          return;
        }
        await reporter?.report({ ...update, step: "preview", decision: "passed", reason: `the previews of PR #${update.pr} allow merging (${policy})`, actor });
      }
      if (decision.pass) {
        if (decision.hosts) msg.hosts = decision.hosts;
        msg.held = decision.held;
        node.status(status.ok(decision.held.length ? `passed, ${decision.held.length} held` : "passed"));
        send([msg, null]);
      } else {
        msg.reason = decision.reason;
        msg.held = decision.held;
        node.status(status.waiting(decision.reason));
        send([null, msg]);
      }
    });
  }
  RED.nodes.registerType("lockstep-gate", LockstepGateNode);
};
