/**
 * Entry of the fleet page's protocol module: what the browser uses from protocol/, bundled by
 * scripts/build-page.mjs into dashboard/generated/protocol.js (an ES module; no zod, no Node).
 * test/unit/page-protocol.test.ts checks that it exports every name the page imports and that the
 * bundle pulls in nothing from node_modules.
 */
export { PROTOCOL_VERSION, Topics, isValidHostId } from "./topics.js";
export {
  COMMAND_OPS,
  COMPARTMENTS,
  FINAL_ROLLOUT_STATES,
  HOST_ROLLOUT_STATES,
  JOB_STATES,
  ROLLOUT_STATES,
  STATUSES,
  TERMINAL_JOB_STATES,
  hostRunsStep,
  isFinalRolloutState,
  worstStatus,
} from "./enums.js";
export { ATTENTION_REASONS, SUMMARY_MAX_LISTED, attentionOf } from "./attention.js";
export { compareUrl, describeLockDiff, describeRow, describeSide, lockDiffRows } from "./lock-diff-view.js";
export { formatPackageChange, formatSizeDelta, PREVIEW_OUTCOME_LABEL, previewProgress, previewRow } from "./preview-view.js";
export { FLEET_STREAM_PATH, LineSplitter } from "./fleet-stream.js";
