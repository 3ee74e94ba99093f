/** Every row of the fault matrix, in the order `npm run faults` runs them (fast ones first). */
import type { FaultRow } from "../row.js";
import { agentSigstop } from "./agent-sigstop.js";
import { brokerRestart } from "./broker-restart.js";
import { hubSigkill } from "./hub-sigkill.js";
import { networkCut } from "./network-cut.js";
import { github403, github5xx, githubSecondary, githubTimeout } from "./github.js";
import { hostileCommands } from "./hostile-commands.js";
import { lockBombs } from "./lock-bombs.js";
import { loginFlood } from "./login-flood.js";
import { manyFilters } from "./many-filters.js";
import { oversizedPackets } from "./oversized-packets.js";
import { retainedCommands } from "./retained-commands.js";
import { sessionTakeover } from "./session-takeover.js";
import { soak } from "./soak.js";
import { lostFinalState, stepCancel } from "./steps.js";
import { dataDirFull, dataDirReadOnly } from "./storage.js";

export const ALL_ROWS: FaultRow[] = [
  github5xx,
  github403,
  githubSecondary,
  githubTimeout,
  lockBombs,
  hostileCommands,
  sessionTakeover,
  retainedCommands,
  oversizedPackets,
  manyFilters,
  loginFlood,
  stepCancel,
  hubSigkill,
  agentSigstop,
  networkCut,
  brokerRestart,
  dataDirReadOnly,
  dataDirFull,
  lostFinalState,
  soak,
];
