/**
 * Protocol payloads for a seeded fleet, each checked by its zod schema before it is published,
 * so the page is tested against exactly what agents and the hub send.
 */
import type { MqttClient } from "mqtt";
import {
  COMPARTMENTS,
  Compartment,
  FleetExpected,
  HostInfo,
  RolloutHistoryEntry,
  RolloutProgress,
  type CompartmentName,
  type PendingUpdate,
  type Status,
  type Topics,
} from "../../protocol/index.js";

export const HEAD = "c0ffee".padEnd(40, "0");
export const OLD_HEAD = "bada55".padEnd(40, "0");
export const day = (iso: string) => Math.floor(Date.parse(iso) / 1000);

export const PENDING_PR: PendingUpdate = {
  number: 17,
  title: "flake.lock: Update",
  url: "https://github.com/example/fleet/pull/17",
  headSha: "feed".padEnd(40, "1"),
  headBranch: "update-flake-lock",
  openedAt: new Date(Date.now() - 3 * 3600_000).toISOString(),
  lockDiff: {
    added: [],
    removed: [],
    updated: [
      { input: "nixpkgs", old: { type: "github", date: "2025-12-10", rev: "aaaaaaa1" }, new: { type: "github", date: "2025-12-17", rev: "bbbbbbb2" } },
      { input: "home-manager", old: { type: "github", date: "2025-12-08" }, new: { type: "github", date: "2025-12-16" } },
    ],
  },
  ci: { state: "success", summary: "3/3 checks passed" },
  mergeable: true,
  superseded: [],
};

export function hostInfo(host: string, extra: Partial<HostInfo> = {}): HostInfo {
  const now = new Date().toISOString();
  return HostInfo.parse({
    host,
    hostname: `${host}.fleet.example`,
    os: "nixos",
    agentVersion: "0.1.0",
    branch: "main",
    repo: "example/fleet",
    commit: HEAD,
    lockHash: "1".repeat(64),
    generation: 41,
    tags: [],
    startedAt: now,
    updatedAt: now,
    ...extra,
  });
}

export function compartment(status: Status, summary: string, detail?: Record<string, unknown>, generation?: number): Compartment {
  return Compartment.parse({ status, summary, checkedAt: new Date().toISOString(), ...(detail ? { detail } : {}), ...(generation !== undefined ? { generation } : {}) });
}

export interface SeedHost {
  info: HostInfo;
  availability: "online" | "offline";
  compartments: Partial<Record<CompartmentName, Compartment>>;
}

export function expectedState(pending: PendingUpdate | null): FleetExpected {
  return FleetExpected.parse({
    repo: "example/fleet",
    branch: "main",
    headCommit: HEAD,
    lockHash: "1".repeat(64),
    lockLastModified: day("2025-12-10T00:00:00Z"),
    agentVersion: "0.1.0",
    pendingUpdate: pending,
    updatedAt: new Date().toISOString(),
  });
}

/** The three hosts of the browser tests: one green, one outdated by the pending PR, one broken and offline. */
export function threeHosts(): SeedHost[] {
  const lockDetail = { lockHash: "1".repeat(64), expectedLockHash: "1".repeat(64), lastModified: day("2025-12-10T00:00:00Z"), ageDays: 8 };
  const okAll = (gen: number) => ({
    agent: compartment("ok", "agent 0.1.0", { version: "0.1.0", expectedVersion: "0.1.0" }),
    git: compartment("ok", `at head ${HEAD.slice(0, 8)}`, { branch: "main", head: HEAD, expectedHead: HEAD }),
    lock: compartment("ok", "matches head (inputs 8 d old)", lockDetail),
    system: compartment("ok", `generation ${gen} is current`, { currentSystemPath: "/nix/store/abc-nixos-system" }, gen),
    tests: compartment("ok", "4/4 passed", { total: 4, failed: [], testedGeneration: gen }, gen),
  });
  return [
    { info: hostInfo("web-1", { location: "Berlin", tags: ["web", "prod"], canary: true, priority: 10 }), availability: "online", compartments: okAll(41) },
    {
      info: hostInfo("db-1", { location: "Frankfurt", tags: ["db"], generation: 17 }),
      availability: "online",
      compartments: {
        ...okAll(17),
        lock: compartment("outdated", "update PR #17 pending: nixpkgs 2025-12-10 → 2025-12-17, home-manager 2025-12-08 → 2025-12-16", {
          ...lockDetail,
          pendingUpdate: { number: 17, url: PENDING_PR.url, ci: "success", lockDiff: PENDING_PR.lockDiff },
        }),
        git: compartment("outdated", `2 commits behind head ${HEAD.slice(0, 8)}`, { branch: "main", head: OLD_HEAD, expectedHead: HEAD, behindBy: 2 }),
        system: compartment("outdated", "generation 17 built from a checkout that is not current (git)", {}, 17),
      },
    },
    {
      info: hostInfo("mac-1", { os: "darwin", location: "Office", tags: ["laptop"], agentVersion: "0.0.9", generation: 5 }),
      availability: "offline",
      compartments: {
        agent: compartment("failed", "agent 0.0.9, fleet expects 0.1.0", { version: "0.0.9", expectedVersion: "0.1.0" }),
        git: compartment("ok", `at head ${HEAD.slice(0, 8)}`, { branch: "main", head: HEAD, expectedHead: HEAD }),
        lock: compartment("ok", "matches head", lockDetail),
        system: compartment("failed", "switch failed: darwin-rebuild exited with 1", { lastSwitch: { ok: false, error: "darwin-rebuild exited with 1" } }, 5),
      },
    },
  ];
}

export async function publishHost(client: MqttClient, topics: Topics, h: SeedHost): Promise<void> {
  const host = h.info.host;
  const opts = { qos: 1 as const, retain: true };
  await client.publishAsync(topics.availability(host), h.availability, opts);
  await client.publishAsync(topics.info(host), JSON.stringify(HostInfo.parse(h.info)), opts);
  for (const name of COMPARTMENTS) {
    const c = h.compartments[name];
    if (c) await client.publishAsync(topics.compartment(host, name), JSON.stringify(Compartment.parse(c)), opts);
  }
}

/** Host `i` of a large fleet: `host-00042`; every tenth on a compartment outdated or failed, every 17th offline. */
export function largeFleetHost(i: number): SeedHost {
  const id = `host-${String(i).padStart(5, "0")}`;
  const statuses: Status[] = ["ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "outdated", "failed"];
  const compartments: SeedHost["compartments"] = {};
  COMPARTMENTS.forEach((name, k) => (compartments[name] = compartment(i % 7 === k ? statuses[i % statuses.length]! : "ok", `${name} of ${id}`)));
  return { info: hostInfo(id, { tags: [`rack-${i % 20}`], location: `site-${i % 3}` }), availability: i % 17 === 0 ? "offline" : "online", compartments };
}

/** The hosts of a seeded fleet that need attention (offline, or a compartment not ok), in order. */
export const needingAttention = (hosts: SeedHost[]) =>
  hosts.filter((h) => h.availability !== "online" || COMPARTMENTS.some((c) => h.compartments[c]?.status !== "ok")).map((h) => h.info.host);

/**
 * Every host's retained state, fast: QoS 0, with a QoS 1 publish every 200 hosts and at the end
 * (one connection keeps order: when that is acknowledged, the broker has everything before it).
 */
export async function publishFleet(client: MqttClient, topics: Topics, hosts: SeedHost[]): Promise<void> {
  const opts = { qos: 0 as const, retain: true };
  for (let i = 0; i < hosts.length; i++) {
    const h = hosts[i]!;
    const host = h.info.host;
    client.publish(topics.availability(host), h.availability, opts);
    client.publish(topics.info(host), JSON.stringify(HostInfo.parse(h.info)), opts);
    for (const name of COMPARTMENTS) {
      const c = h.compartments[name];
      if (c) client.publish(topics.compartment(host, name), JSON.stringify(Compartment.parse(c)), opts);
    }
    if (i % 200 === 199 || i === hosts.length - 1) await client.publishAsync(topics.availability(host), h.availability, { qos: 1, retain: true });
  }
}

export function rolloutProgress(id: string, hosts: string[], states: Record<string, RolloutProgress["hosts"][string]["state"]>, state: RolloutProgress["state"]): RolloutProgress {
  const now = new Date().toISOString();
  const hostStates: RolloutProgress["hosts"] = {};
  for (const h of hosts) hostStates[h] = { host: h, phase: h === hosts[0] ? "canary" : "wave-1", state: states[h] ?? "pending", jobIds: [] };
  const count = (s: string) => Object.values(hostStates).filter((x) => x.state === s).length;
  return RolloutProgress.parse({
    id,
    commit: HEAD,
    state,
    summary: state === "completed" ? "all hosts updated" : "rolling out PR #17",
    requestedBy: "olga",
    prNumber: 17,
    lockDiff: PENDING_PR.lockDiff,
    phases: [
      { name: "canary", hosts: hosts.slice(0, 1) },
      { name: "wave-1", hosts: hosts.slice(1) },
    ],
    currentPhase: count("succeeded") === 0 ? "canary" : "wave-1",
    hosts: hostStates,
    counts: { total: hosts.length, succeeded: count("succeeded"), failed: count("failed"), skipped: count("skipped") },
    createdAt: now,
    updatedAt: now,
    ...(state === "completed" ? { finishedAt: now } : {}),
  });
}

export function historyEntry(
  id: string,
  finishedAt: string,
  hosts: { host: string; state: RolloutHistoryEntry["hosts"][number]["state"]; reason?: string }[],
  prNumber = 12,
  lockDiff: RolloutHistoryEntry["lockDiff"] = { added: [], removed: [], updated: [{ input: "nixpkgs", old: { type: "github", date: "2025-12-03" }, new: { type: "github", date: "2025-12-10" } }] },
  commit = OLD_HEAD,
): RolloutHistoryEntry {
  return RolloutHistoryEntry.parse({
    rolloutId: id,
    commit,
    state: hosts.some((h) => h.state === "failed") ? "failed" : "completed",
    summary: "weekly update",
    requestedBy: "schedule",
    prNumber,
    lockDiff,
    startedAt: new Date(Date.parse(finishedAt) - 20 * 60_000).toISOString(),
    finishedAt,
    hosts,
  });
}
