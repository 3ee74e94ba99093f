/**
 * The gate's decision, without Node-RED: may this message go on now? It is held back when the time
 * is outside the maintenance window, or when the host(s) it is about are on the hold list (or
 * reported held by their agents). A message naming several hosts passes with the held ones removed.
 *
 * Each check is a named step: `decideGate` (window, hold) and `previewStep` (an update's previews
 * must allow automatic mode to merge it, issue 11). The gate node runs them in that order; the
 * first that holds the message back decides.
 */
import { MaintenanceWindow } from "../../protocol/schemas.js";
import { HOST_ID_PATTERN } from "../../protocol/topics.js";
import { ConfigError } from "../../protocol/errors.js";
import { formatZodError } from "../../protocol/payload.js";
import { optionalString } from "./input.js";
import { checkTimeZone, describeWindow, isWithinWindow } from "../../protocol/windows.js";
import type { PreviewMergePolicy, PreviewVerdict } from "../../protocol/preview.js";

export interface GateConfig {
  window?: MaintenanceWindow;
  /** Host ids that must be left alone. */
  hold: string[];
}

export type GateDecision =
  | { pass: true; hosts?: string[]; held: Array<{ host: string; reason: string }> }
  | { pass: false; reason: string; held: Array<{ host: string; reason: string }> };

export interface GateSubject {
  /** A single host (msg.host), several (msg.hosts), or neither (a fleet-wide step). */
  host?: string;
  hosts?: string[];
  /** Hosts the fleet reports as held, with their reasons. */
  heldByFleet?: Map<string, string>;
}

export function decideGate(config: GateConfig, subject: GateSubject, now: Date): GateDecision {
  if (config.window && !isWithinWindow(config.window, now)) {
    return { pass: false, reason: `outside the maintenance window (${describeWindow(config.window)})`, held: [] };
  }
  const holdReason = (host: string): string | undefined => {
    if (config.hold.includes(host)) return `${host} is on the gate's hold list`;
    const fleetReason = subject.heldByFleet?.get(host);
    return fleetReason === undefined ? undefined : `${host} is held${fleetReason ? `: ${fleetReason}` : ""}`;
  };
  if (subject.host !== undefined) {
    const reason = holdReason(subject.host);
    return reason ? { pass: false, reason, held: [{ host: subject.host, reason }] } : { pass: true, held: [] };
  }
  if (subject.hosts !== undefined) {
    const held = subject.hosts.flatMap((host) => {
      const reason = holdReason(host);
      return reason ? [{ host, reason }] : [];
    });
    const hosts = subject.hosts.filter((h) => !held.some((x) => x.host === h));
    if (hosts.length === 0 && subject.hosts.length > 0) return { pass: false, reason: "every host in msg.hosts is held", held };
    return { pass: true, hosts, held };
  }
  return { pass: true, held: [] };
}

/** Parse the editor's fields into a GateConfig; throws ConfigError naming the bad field. */
export function gateConfigFromDef(def: Record<string, unknown>): GateConfig {
  const hold = String(def.hold ?? "")
    .split(/[\s,]+/)
    .filter(Boolean);
  for (const h of hold) if (!HOST_ID_PATTERN.test(h)) throw new ConfigError(`hold list: "${h}" is not a host id`);
  const days = optionalString(def.days);
  const start = optionalString(def.start);
  const end = optionalString(def.end);
  if (!start && !end) return { hold };
  const parsed = MaintenanceWindow.safeParse({
    days: days ? days.split(/[\s,]+/).filter(Boolean) : undefined,
    start,
    end,
    timeZone: optionalString(def.timeZone) ?? "UTC",
  });
  if (!parsed.success) throw new ConfigError(`maintenance window is invalid: ${formatZodError(parsed.error)}`);
  checkTimeZone(parsed.data.timeZone);
  return { window: parsed.data, hold };
}

/** What the gate's preview step requires: the hub's previews.gating ("hub"), a policy of its own, or nothing ("off"). */
export const PREVIEW_CHECKS = ["off", "hub", "all", "canary"] as const;
export type PreviewCheck = (typeof PREVIEW_CHECKS)[number];

export function previewCheckFromDef(def: Record<string, unknown>): PreviewCheck {
  const v = optionalString(def.preview) ?? "off";
  if (!(PREVIEW_CHECKS as readonly string[]).includes(v)) throw new ConfigError(`preview check: "${v}" is not one of ${PREVIEW_CHECKS.join(", ")}`);
  return v as PreviewCheck;
}

/** The policy a preview check stands for, given the hub's gating (undefined: no hub previews here). */
export function previewPolicy(check: PreviewCheck, hubGating: PreviewMergePolicy | undefined): PreviewMergePolicy {
  if (check === "off") return "ignore";
  if (check === "hub") return hubGating ?? "ignore";
  return check;
}

export type PreviewStepDecision =
  | { pass: true; step: "preview" }
  | { pass: false; step: "preview"; reason: string; /** More previews to come: ask again later. */ wait: boolean; guard: "preview-pending" | "preview-refused" };

/**
 * Step "preview": automatic mode merges an update only when the previews of its current head allow
 * it (rollout/preview-service.ts mergeVerdict, per the hub's previews.gating). While previews of
 * that head are still running it waits; a head that does not build (or was not previewed, a fork)
 * is refused with the previews' reason.
 */
export function previewStep(verdict: PreviewVerdict): PreviewStepDecision {
  if (verdict.ok) return { pass: true, step: "preview" };
  return { pass: false, step: "preview", reason: verdict.reason, wait: verdict.wait, guard: verdict.wait ? "preview-pending" : "preview-refused" };
}

/** Whether the gate checks automatic mode's pause (editor field `paused`: "check", or "off"). */
export function pauseCheckFromDef(def: Record<string, unknown>): boolean {
  return optionalString(def.paused) === "check";
}

export type PausedStepDecision = { pass: true; step: "automatic-paused" } | { pass: false; step: "automatic-paused"; reason: string };

/**
 * Step "automatic-paused": after a failed rollout automatic mode merges nothing until an operator
 * resumes it (the page, POST /api/automatic/resume, a msg with topic "resume" to this gate) or a
 * later PR's preview builds on every host.
 */
export function pausedStep(state: { paused: boolean; prNumber?: number | undefined; rolloutId?: string | undefined } | undefined): PausedStepDecision {
  if (!state?.paused) return { pass: true, step: "automatic-paused" };
  const after = state.prNumber !== undefined ? `after PR #${state.prNumber} failed` : "after a failed rollout";
  return {
    pass: false,
    step: "automatic-paused",
    reason: `automatic updates are paused ${after}${state.rolloutId ? ` (rollout ${state.rolloutId})` : ""}: resume on the fleet page, with Home Assistant's "Resume automatic updates" button, POST /api/automatic/resume, or a message with topic "resume" to this gate`,
  };
}
