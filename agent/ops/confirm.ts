/** `confirm {job}`: the hub saw the switched host healthy and online; the switch stays (magic-rollback.ts). */
import type { CommandOf } from "../../protocol/index.js";
import type { ConfirmationWatch } from "../magic-rollback.js";

export function confirm(watch: ConfirmationWatch, cmd: CommandOf<"confirm">): string {
  return watch.confirm(cmd.args.job);
}
