// Payload checks. The browser has no zod: each payload is checked for the fields the page relies
// on; a bad one is counted, warned about and ignored (the last good state stays).
import { ATTENTION_REASONS, STATUSES, SUMMARY_MAX_LISTED } from "../generated/protocol.js";
import { isObj, isStr } from "./dom.js";
import { stats } from "./state.js";

export function decode(payload) {
  const text = new TextDecoder().decode(payload);
  if (text.length === 0) return { empty: true };
  try {
    return { value: JSON.parse(text), text };
  } catch {
    return { error: "not JSON", text };
  }
}

const count = (n) => Number.isInteger(n) && n >= 0;

export const checks = {
  info: (v, host) => isObj(v) && v.host === host && isStr(v.os) && isStr(v.agentVersion) && isStr(v.updatedAt),
  compartment: (v) => isObj(v) && STATUSES.includes(v.status) && isStr(v.summary) && isStr(v.checkedAt),
  job: (v) => isObj(v) && isStr(v.id) && isStr(v.op) && isStr(v.state) && isStr(v.acceptedAt),
  jobOutput: (v) => isObj(v) && isStr(v.id) && Number.isInteger(v.seq) && Array.isArray(v.lines),
  expected: (v) => isObj(v) && isStr(v.headCommit) && isStr(v.lockHash),
  rollout: (v) => isObj(v) && isStr(v.id) && isStr(v.state) && Array.isArray(v.phases) && isObj(v.hosts) && isObj(v.counts),
  history: (v) => isObj(v) && isStr(v.rolloutId) && isStr(v.state) && Array.isArray(v.hosts),
  hubStatus: (v) => isObj(v) && isStr(v.version) && isObj(v.github) && typeof v.github.configured === "boolean" && (v.mqttPort === undefined || Number.isInteger(v.mqttPort)),
  preview: (v, pr, host) =>
    isObj(v) && v.pr === pr && v.host === host && isStr(v.headSha) && isStr(v.outcome) && isStr(v.summary) && isStr(v.builtOn) && Array.isArray(v.packages) &&
    v.packages.every((c) => isObj(c) && isStr(c.name) && Array.isArray(c.old) && Array.isArray(c.new)) &&
    (v.reboot == null || (isObj(v.reboot) && Array.isArray(v.reboot.changed))),
  previewSummary: (v, pr) => isObj(v) && v.pr === pr && isStr(v.headSha) && isStr(v.text) && isObj(v.hosts) && Number.isInteger(v.hosts.total) && Number.isInteger(v.hosts.previewed),
  storage: (v) => isObj(v) && ["ok", "fault"].includes(v.state) && isStr(v.since) && isStr(v.dataDir) && Array.isArray(v.faults) && Array.isArray(v.heldRollouts),
  automaticPause: (v) => isObj(v) && typeof v.paused === "boolean" && isStr(v.updatedAt),
  automatic: (v) => isObj(v) && Number.isInteger(v.pr) && isStr(v.headSha) && isStr(v.step) && ["waiting", "refused", "passed"].includes(v.decision) && isStr(v.reason),
  fleetSummary: (v) =>
    isObj(v) && count(v.hosts) && count(v.online) && isObj(v.attention) && ATTENTION_REASONS.every((r) => count(v.attention[r])) &&
    Array.isArray(v.needsAttention) && v.needsAttention.length <= SUMMARY_MAX_LISTED && v.needsAttention.every((x) => isObj(x) && isStr(x.host) && ATTENTION_REASONS.includes(x.why)),
  event: (v) => isObj(v) && isStr(v.id) && isStr(v.at) && isStr(v.actor) && isStr(v.action) && (v.target === undefined || isStr(v.target)),
};

export function rejectPayload(topic, why) {
  stats.invalid++;
  console.warn(`lockstep: ignoring invalid payload on ${topic}: ${why}`);
}
