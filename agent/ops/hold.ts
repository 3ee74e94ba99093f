/** `hold {reason?}` and `release`: persisted; a held host refuses ops that change what it runs (admission.ts). */
import type { CommandOf } from "../../protocol/index.js";
import type { AgentContext } from "../context.js";

export function hold(ctx: AgentContext, cmd: CommandOf<"hold">): string {
  ctx.state.update((s) => (s.hold = { held: true, since: new Date().toISOString(), ...(cmd.args.reason ? { reason: cmd.args.reason } : {}) }));
  void ctx.remeasure();
  return cmd.args.reason ? `held: ${cmd.args.reason}` : "held";
}

export function release(ctx: AgentContext): string {
  ctx.state.update((s) => delete s.hold);
  void ctx.remeasure();
  return "released";
}
