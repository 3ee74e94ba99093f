/** The terminal client's subcommands, in `lockstep --help` order (hub/cli.ts adds them to its table). */
import type { Subcommand } from "../../broker/commands.js";
import { auditCommand, prCommand, statusCommand, watchCommand } from "./fleet-commands.js";
import { hostCommand, logsCommand } from "./host-commands.js";
import { deployCommand, rolloutCommand, rolloutsCommand } from "./rollout-commands.js";
import { historyCommand } from "./history-commands.js";

export const TERMINAL_COMMANDS: Subcommand[] = [statusCommand, watchCommand, prCommand, deployCommand, rolloutsCommand, rolloutCommand, historyCommand, hostCommand, logsCommand, auditCommand];
export { completionCommand } from "./completion.js";
