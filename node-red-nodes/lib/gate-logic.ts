/**
 * The gate's decision, without Node-RED: may this message go on now? It is held back when the time
 * is outside the maintenance window, or when the host(s) it is about are on the hold list (or
 * reported held by their agents). A message naming several hosts passes with the held ones removed.
 */
import { MaintenanceWindow } from "../../protocol/schemas.js";
import { HOST_ID_PATTERN } from "../../protocol/topics.js";
import { ConfigError } from "../../protocol/errors.js";
import { formatZodError } from "../../protocol/payload.js";
import { optionalString } from "./input.js";
import { checkTimeZone, describeWindow, isWithinWindow } from "../../protocol/windows.js";

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

