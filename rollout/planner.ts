/**
 * Turns a RolloutSpec and the fleet as it is now into a RolloutPlan: which hosts, in which phases,
 * and why every other host is left out. Pure: no I/O, the time is a parameter.
 */
import type { HostSnapshot } from "./fleet-port.js";
import { newId } from "./fleet-port.js";
import { RolloutPlanError } from "./errors.js";
import { parseRolloutSpec, type Exclusion, type RolloutPhase, type RolloutPlan, type RolloutSpec, type RolloutSpecInput } from "./spec.js";
import { describeWindow, isWithinWindow } from "../protocol/windows.js";

/** Deployment order: ascending priority number (1 before 100), then host id. */
export function byPriority(a: HostSnapshot, b: HostSnapshot): number {
  const pa = a.info?.priority ?? 100;
  const pb = b.info?.priority ?? 100;
  return pa !== pb ? pa - pb : a.host < b.host ? -1 : a.host > b.host ? 1 : 0;
}

function isSelected(spec: RolloutSpec, h: HostSnapshot): boolean {
  const sel = spec.selection;
  if (sel === "all") return true;
  if ("tags" in sel) return (h.info?.tags ?? []).some((t) => sel.tags.includes(t));
  return sel.hosts.includes(h.host);
}

/**
 * Why host `h` needs no switch for this rollout, or undefined: it already has the target's
 * flake.lock (spec.lockHash, e.g. a rolled-back host and Lockstep's revert) and runs a generation
 * built from its checkout. The engine checks it after the pull (the agent evaluates the commit).
 */
export function pullOnlyReason(spec: RolloutSpec, h: HostSnapshot): string | undefined {
  const info = h.info;
  if (!spec.lockHash || !info || info.lockHash !== spec.lockHash || info.generation === undefined || !info.commit) return undefined;
  const system = h.compartments.system;
  const builtFrom = system?.detail?.builtFrom;
  const exact = system?.detail?.currentSystemPath !== undefined && system.detail.currentSystemPath === system.detail.expectedSystemPath;
  if (builtFrom !== info.commit && !exact) return undefined;
  return `pull only: system already matches (flake.lock is the target's, generation ${info.generation} was built from its checkout ${info.commit.slice(0, 8)})`;
}

export class RolloutPlanner {
  /**
   * Plan a rollout. Throws RolloutSpecError for an invalid spec and RolloutPlanError when nothing
   * can be deployed or a named canary host is not eligible.
   */
  plan(specInput: RolloutSpecInput | RolloutSpec, hosts: HostSnapshot[], now: Date = new Date(), id: string = newId("r")): RolloutPlan {
    const spec = parseRolloutSpec(specInput);
    const excluded: Exclusion[] = [];
    const eligible: HostSnapshot[] = [];
    const known = new Set(hosts.map((h) => h.host));

    if (typeof spec.selection === "object" && "hosts" in spec.selection) {
      for (const name of spec.selection.hosts) {
        if (!known.has(name)) excluded.push({ host: name, code: "unknown-host", reason: "no such host has reported to the broker" });
      }
    }

    for (const h of [...hosts].sort(byPriority)) {
      const why = this.exclusion(spec, h, now);
      if (why) excluded.push(why);
      else eligible.push(h);
    }

    if (eligible.length === 0) {
      const reasons = excluded.filter((e) => e.code !== "not-selected").map((e) => `${e.host}: ${e.reason}`);
      throw new RolloutPlanError(
        "no host can receive this rollout",
        reasons.length ? reasons.join("; ") : "no host matches the selection",
      );
    }

    const online = (h: HostSnapshot) => h.availability === "online";
    const queueOffline = typeof spec.offline === "object" && "queue" in spec.offline;
    // Offline hosts under the queue policy get their commands at the end, so they never hold up a wave.
    const queued = queueOffline ? eligible.filter((h) => !online(h)) : [];
    const ordered = eligible.filter((h) => !queued.includes(h));

    const canaries = this.pickCanaries(spec, ordered.filter(online), eligible);
    const rest = ordered.filter((h) => !canaries.includes(h));

    const phases: RolloutPhase[] = [];
    if (canaries.length > 0) phases.push({ name: "canary", kind: "canary", hosts: canaries.map((h) => h.host) });
    const waveSize =
      "size" in spec.strategy.waves ? spec.strategy.waves.size : Math.max(1, Math.ceil((rest.length * spec.strategy.waves.percent) / 100));
    for (let i = 0; i < rest.length; i += waveSize) {
      phases.push({ name: `wave-${phases.filter((p) => p.kind === "wave").length + 1}`, kind: "wave", hosts: rest.slice(i, i + waveSize).map((h) => h.host) });
    }
    if (queued.length > 0) phases.push({ name: "queued", kind: "queued", hosts: queued.map((h) => h.host) });

    const generationsAtPlan: Record<string, number> = {};
    for (const h of eligible) if (h.info?.generation !== undefined) generationsAtPlan[h.host] = h.info.generation;
    const commitsAtPlan: Record<string, string> = {};
    for (const h of eligible) if (h.info?.commit !== undefined) commitsAtPlan[h.host] = h.info.commit;

    const pullOnly: Record<string, string> = {};
    const notAffected: string[] = [];
    const reboot: Record<string, string> = {};
    for (const h of eligible) {
      const why = pullOnlyReason(spec, h);
      if (why) pullOnly[h.host] = why;
      else if (spec.preview?.notAffected.includes(h.host)) {
        pullOnly[h.host] = `pull only: the preview of PR #${spec.preview.pr} at ${spec.preview.headSha.slice(0, 8)} showed this host not affected (its system does not change)`;
        notAffected.push(h.host);
      }
      const changed = spec.preview?.reboot[h.host];
      if (changed && !pullOnly[h.host]) reboot[h.host] = `reboot needed: ${changed.join(", ") || "boot components changed"}`;
    }

    return {
      id,
      commit: spec.commit,
      createdAt: now.toISOString(),
      spec,
      phases,
      excluded,
      offlineAtPlan: eligible.filter((h) => !online(h)).map((h) => h.host),
      generationsAtPlan,
      commitsAtPlan,
      pullOnly,
      notAffected,
      reboot,
    };
  }

  /** Why a host is left out, or undefined when it takes part. */
  private exclusion(spec: RolloutSpec, h: HostSnapshot, now: Date): Exclusion | undefined {
    if (!isSelected(spec, h)) return { host: h.host, code: "not-selected", reason: "not in the selection" };
    if (!h.info) return { host: h.host, code: "no-info", reason: "the host has not published its info yet" };
    if (h.info.hold) {
      return { host: h.host, code: "held", reason: h.info.holdReason ? `held: ${h.info.holdReason}` : "held by an operator" };
    }
    const w = h.info.maintenanceWindow;
    if (spec.respectWindows && w) {
      let inside: boolean;
      try {
        inside = isWithinWindow(w, now);
      } catch (e) {
        return { host: h.host, code: "window", reason: `maintenance window unusable: ${(e as Error).message}` };
      }
      if (!inside) return { host: h.host, code: "window", reason: `outside maintenance window ${describeWindow(w)}` };
    }
    if (h.availability !== "online" && spec.offline === "skip") {
      return { host: h.host, code: "offline", reason: h.lastSeen ? `offline since ${h.lastSeen}` : "offline" };
    }
    return undefined;
  }

  private pickCanaries(spec: RolloutSpec, onlineOrdered: HostSnapshot[], eligible: HostSnapshot[]): HostSnapshot[] {
    const c = spec.strategy.canary;
    if (Array.isArray(c)) {
      return c.map((name) => {
        const h = onlineOrdered.find((x) => x.host === name);
        if (!h) {
          const inPlan = eligible.some((x) => x.host === name);
          throw new RolloutPlanError(
            `canary host "${name}" cannot be a canary: ${inPlan ? "it is offline" : "it is excluded or unknown"}`,
            "name an online, selected host that is not held and is inside its maintenance window",
          );
        }
        return h;
      });
    }
    const flagged = onlineOrdered.filter((h) => h.info?.canary);
    if (c === undefined) return flagged.length > 0 ? flagged : onlineOrdered.slice(0, 1);
    const unflagged = onlineOrdered.filter((h) => !h.info?.canary);
    return [...flagged, ...unflagged].slice(0, c);
  }
}
