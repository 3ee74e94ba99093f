/**
 * Discovery payloads checked against Home Assistant's documented MQTT options, one zod schema per
 * platform written from the configuration tables of the HA docs (integrations/mqtt device
 * discovery payload; sensor.mqtt, binary_sensor.mqtt, button.mqtt, update.mqtt). Schemas are
 * strict: a key HA does not document for that platform fails the test (HA would silently ignore it).
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { buildPreviewSummary, Topics, type Compartment, type FleetExpected, type HostInfo, type HostPreview } from "../../protocol/index.js";
import {
  buildHostDiscovery,
  buildHostState,
  buildUpdateState,
  lockVersion,
  parseHaAction,
  type HaHost,
} from "../../ha/discovery.js";
import { buildFleetDiscovery, FLEET_ENTITIES } from "../../ha/fleet-device.js";
import { parseHubAction } from "../../protocol/hub-actions.js";

// --- schemas from the HA docs ------------------------------------------------------------------

const availabilityEntry = z
  .object({
    topic: z.string().min(1),
    payload_available: z.string().optional(),
    payload_not_available: z.string().optional(),
    value_template: z.string().optional(),
  })
  .strict();

/** Options every MQTT entity platform documents. */
const entityCommon = {
  unique_id: z.string().min(1), // required for device-based discovery
  name: z.string().nullable().optional(),
  object_id: z.string().optional(),
  icon: z.string().regex(/^mdi:[a-z0-9-]+$/).optional(),
  entity_category: z.enum(["config", "diagnostic"]).optional(),
  entity_picture: z.string().optional(),
  enabled_by_default: z.boolean().optional(),
  encoding: z.string().optional(),
  qos: z.union([z.literal(0), z.literal(1), z.literal(2)]).optional(),
  availability: z.array(availabilityEntry).min(1).optional(),
  availability_mode: z.enum(["all", "any", "latest"]).optional(),
  availability_template: z.string().optional(),
  availability_topic: z.string().optional(),
  payload_available: z.string().optional(),
  payload_not_available: z.string().optional(),
  json_attributes_topic: z.string().optional(),
  json_attributes_template: z.string().optional(),
};

const SENSOR_DEVICE_CLASSES = ["enum", "duration", "timestamp", "date"] as const; // the subset we may use
const sensor = z
  .object({
    p: z.literal("sensor"),
    ...entityCommon,
    state_topic: z.string().min(1),
    value_template: z.string().optional(),
    device_class: z.enum(SENSOR_DEVICE_CLASSES).nullable().optional(),
    options: z.array(z.string()).min(1).optional(),
    state_class: z.enum(["measurement", "total", "total_increasing", "measurement_angle"]).optional(),
    unit_of_measurement: z.string().nullable().optional(),
    suggested_display_precision: z.number().int().optional(),
    expire_after: z.number().int().optional(),
    force_update: z.boolean().optional(),
    last_reset_value_template: z.string().optional(),
  })
  .strict()
  .refine((s) => !s.options || s.device_class === "enum", "options needs device_class enum")
  .refine((s) => !s.options || (s.state_class === undefined && s.unit_of_measurement === undefined), "options excludes state_class/unit");

const binarySensor = z
  .object({
    p: z.literal("binary_sensor"),
    ...entityCommon,
    state_topic: z.string().min(1),
    value_template: z.string().optional(),
    device_class: z.enum(["connectivity", "problem", "running", "update"]).nullable().optional(),
    payload_on: z.string().optional(),
    payload_off: z.string().optional(),
    off_delay: z.number().int().optional(),
    expire_after: z.number().int().optional(),
    force_update: z.boolean().optional(),
  })
  .strict()
  .refine((s) => s.entity_category !== "config", "sensors may only use entity_category diagnostic");

const button = z
  .object({
    p: z.literal("button"),
    ...entityCommon,
    command_topic: z.string().min(1),
    command_template: z.string().optional(),
    payload_press: z.string().optional(),
    retain: z.boolean().optional(),
    device_class: z.enum(["identify", "restart", "update"]).nullable().optional(),
  })
  .strict();

const update = z
  .object({
    p: z.literal("update"),
    ...entityCommon,
    state_topic: z.string().optional(),
    value_template: z.string().optional(),
    latest_version_topic: z.string().optional(),
    latest_version_template: z.string().optional(),
    command_topic: z.string().optional(),
    payload_install: z.string().optional(),
    title: z.string().optional(),
    release_summary: z.string().max(255).optional(),
    release_url: z.string().optional(),
    retain: z.boolean().optional(),
    device_class: z.enum(["firmware"]).nullable().optional(),
    display_precision: z.number().int().optional(),
  })
  .strict();

const component = z.discriminatedUnion("p", [sensor, binarySensor, button, update]);

/** Device registry abbreviations (HA docs: "Supported abbreviations for device registry configuration"). */
const device = z
  .object({
    ids: z.union([z.string(), z.array(z.string()).min(1)]),
    name: z.string().min(1), // needed so HA shows a name (shared device configuration)
    mf: z.string().optional(),
    mdl: z.string().optional(),
    mdl_id: z.string().optional(),
    sw: z.string().optional(),
    hw: z.string().optional(),
    sn: z.string().optional(),
    sa: z.string().optional(),
    cu: z.string().regex(/^(https?|homeassistant):\/\//).optional(),
    cns: z.array(z.tuple([z.string(), z.string()])).optional(),
  })
  .strict();

/** Origin: "name" required; sw_version / support_url (or their abbreviations sw / url). */
const origin = z
  .object({
    name: z.string().min(1),
    sw_version: z.string().optional(),
    support_url: z.string().url().optional(),
  })
  .strict();

const deviceDiscovery = z
  .object({
    dev: device,
    o: origin,
    cmps: z.record(z.string().regex(/^[a-zA-Z0-9_-]+$/), component),
  })
  .strict();

/** The update platform's documented state JSON. */
const updateState = z
  .object({
    installed_version: z.string().optional(),
    latest_version: z.string().optional(),
    title: z.string().optional(),
    release_summary: z.string().max(255).optional(),
    release_url: z.string().optional(),
    entity_picture: z.string().optional(),
    in_progress: z.boolean().optional(),
    update_percentage: z.number().min(0).max(100).nullable().optional(),
  })
  .strict();

// --- fixtures -----------------------------------------------------------------------------------

const topics = new Topics();
const now = new Date("2025-12-20T12:00:00Z");
const sha = (c: string) => c.repeat(40);
const day = (iso: string) => Math.floor(Date.parse(iso) / 1000);

const info: HostInfo = HostInfoFixture();
function HostInfoFixture(): HostInfo {
  return {
    host: "web-1",
    hostname: "web-1.example.org",
    os: "nixos",
    agentVersion: "0.1.0",
    branch: "main",
    commit: sha("a"),
    lockHash: "1".repeat(64),
    generation: 42,
    tags: ["web"],
    location: "Berlin",
    priority: 100,
    canary: false,
    hold: false,
    startedAt: now.toISOString(),
    updatedAt: now.toISOString(),
  };
}

function compartment(status: Compartment["status"], detail?: Record<string, unknown>): Compartment {
  return { status, summary: status, checkedAt: now.toISOString(), ...(detail ? { detail } : {}) };
}

const expected: FleetExpected = {
  repo: "example/fleet",
  branch: "main",
  headCommit: sha("b"),
  lockHash: "1".repeat(64),
  lockLastModified: day("2025-12-10T00:00:00Z"),
  pendingUpdate: null,
  updatedAt: now.toISOString(),
};

const pendingUpdate: NonNullable<FleetExpected["pendingUpdate"]> = {
  number: 17,
  title: "flake.lock: update",
  url: "https://github.com/example/fleet/pull/17",
  headSha: sha("c"),
  headBranch: "update-flake-lock",
  openedAt: now.toISOString(),
  lockDiff: {
    added: [],
    removed: [],
    updated: [{ input: "nixpkgs", old: { type: "github", date: "2025-12-10" }, new: { type: "github", date: "2025-12-17" } }],
  },
  ci: { state: "success" },
  superseded: [],
};

/**
 * AwesomeVersion (what Home Assistant's update entity compares with), for versions of the form
 * lockVersion writes: its PEP 440 pattern must match in full (else the strategy is "unknown" and HA
 * offers every different version), then compare_handler_sections compares the "."-separated
 * sections by their first run of digits and nothing else decides (awesomeversion/comparehandlers/
 * sections.py; checked against AwesomeVersion itself for 8,000 random pairs).
 */
const PEP440 = /^([1-9][0-9]*!)?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*([-_.]?(?:alpha|beta|c|pre|preview|a|b|rc)(0|[1-9][0-9]*))?([-_.]?(?:post|r|rev)(0|[1-9][0-9]*))?([-_.]?(?:d|dev)(0|[1-9][0-9]*))?(?:\+([a-z0-9]+(?:[-_.][a-z0-9]+)*))?$/;
function awesomeVersionNewer(a: string, b: string): boolean {
  if (a === b) return false;
  if (!PEP440.test(a) || !PEP440.test(b)) throw new Error(`AwesomeVersion cannot compare ${a} and ${b}`);
  const sections = (v: string) => v.split(".").map((p) => Number(/^[a-z]*(\d+)/.exec(p)?.[1] ?? 0));
  const x = sections(a), y = sections(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  return false;
}

// --- tests ---------------------------------------------------------------------------------------

describe("HA device discovery payload", () => {
  const payload = buildHostDiscovery(info, {
    topics,
    origin: { name: "Lockstep", sw_version: "0.1.0", support_url: "https://github.com/example/lockstep" },
    configurationUrl: "http://hub.local:1880/",
  });

  it("is valid per HA's documented keys for every platform", () => {
    const r = deviceDiscovery.safeParse(payload);
    expect(r.success, r.success ? "" : JSON.stringify(r.error.issues, null, 2)).toBe(true);
  });

  it("goes to the device discovery topic", () => {
    expect(topics.haDiscovery("web-1")).toBe("homeassistant/device/lockstep_web-1/config");
  });

  it("has a sensor per compartment bound to the compartment topic, with all statuses as options", () => {
    for (const name of ["agent", "git", "lock", "system", "tests"] as const) {
      const c = payload.cmps[name]!;
      expect(c.p).toBe("sensor");
      expect(c.state_topic).toBe(topics.compartment("web-1", name));
      expect(c.json_attributes_topic).toBe(topics.compartment("web-1", name));
      expect(c.options).toEqual(["ok", "outdated", "failed", "working", "unknown"]);
    }
  });

  it("binds availability to the host and the hub (all), except connectivity (hub only)", () => {
    expect(payload.cmps.git!.availability).toEqual([
      { topic: topics.availability("web-1") },
      { topic: topics.hubAvailability() },
    ]);
    expect(payload.cmps.git!.availability_mode).toBe("all");
    expect(payload.cmps.online!.availability).toEqual([{ topic: topics.hubAvailability() }]);
    expect(payload.cmps.online!.state_topic).toBe(topics.availability("web-1"));
  });

  it("has buttons and an update entity that publish bare ops on the actions topic", () => {
    for (const op of ["pull", "switch", "test", "rollback"]) {
      expect(payload.cmps[`${op}_button`]).toMatchObject({ p: "button", command_topic: topics.actions("web-1"), payload_press: op });
    }
    expect(payload.cmps.update).toMatchObject({
      p: "update",
      command_topic: topics.actions("web-1"),
      payload_install: "install",
      state_topic: topics.haUpdate("web-1"),
    });
  });

  it("uses unique ids that are unique across hosts", () => {
    const other = buildHostDiscovery({ ...info, host: "db-1" }, { topics, origin: { name: "Lockstep" } });
    const ids = [...Object.values(payload.cmps), ...Object.values(other.cmps)].map((c) => c.unique_id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("rejects what HA does not document (the schema can fail)", () => {
    const bad = structuredClone(payload);
    (bad.cmps.pull_button as Record<string, unknown>).payload_install = "install";
    expect(deviceDiscovery.safeParse(bad).success).toBe(false);
    const noOrigin: Record<string, unknown> = { ...payload };
    delete noOrigin.o;
    expect(deviceDiscovery.safeParse(noOrigin).success).toBe(false);
  });
});

describe("HA derived states", () => {
  const snapshot: HaHost = {
    info,
    compartments: {
      lock: compartment("ok", { lastModified: day("2025-12-10T00:00:00Z") }),
      git: compartment("ok"),
      system: compartment("failed"),
    },
  };

  it("update state: up to date when the lock matches head and nothing is pending", () => {
    const s = buildUpdateState(snapshot, expected);
    expect(updateState.safeParse(s).success).toBe(true);
    expect(s.installed_version).toBe(`2025.12.10.0+${info.lockHash!.slice(0, 7)}`);
    expect(s.latest_version).toBe(s.installed_version);
  });

  it("update state: a pending PR is the latest version, its lock diff the summary", () => {
    const s = buildUpdateState(snapshot, { ...expected, pendingUpdate });
    expect(updateState.safeParse(s).success).toBe(true);
    expect(s.latest_version).toBe(`2025.12.17.0+${sha("c").slice(0, 7)}`); // stored without lockLastModified: the diff's newest date
    expect(awesomeVersionNewer(s.latest_version!, s.installed_version!)).toBe(true);
    expect(s.release_summary).toBe("PR #17: nixpkgs 2025-12-10 → 2025-12-17");
    expect(s.release_url).toBe(pendingUpdate.url);
    const withLock = buildUpdateState(snapshot, { ...expected, pendingUpdate: { ...pendingUpdate, lockHash: "9".repeat(64), lockLastModified: day("2025-12-17T16:30:00Z") } });
    expect(withLock.latest_version).toBe("2025.12.17.1630+9999999");
  });

  it("update state: once previewed, the release summary is the fleet's package-level preview summary (≤ 255), the URL the PR", () => {
    const at = now.toISOString();
    const hp = (host: string, over: Partial<HostPreview>): HostPreview => ({ pr: 17, host, headSha: sha("c"), outcome: "affected", summary: "", affected: true, builds: true, packages: [], reboot: null, units: null, builtOn: host, startedAt: at, finishedAt: at, ...over });
    const previews = [
      hp("alpha", { packages: [{ name: "hello", old: ["2.12"], new: ["2.13"] }, { name: "linux", old: ["6.6.58"], new: ["6.6.60"] }], reboot: { needed: true, changed: ["kernel"] } }),
      hp("beta", { outcome: "not-affected", affected: false, builds: null }),
    ];
    const summary = buildPreviewSummary(17, sha("c"), ["alpha", "beta"], previews, { now });
    const s = buildUpdateState(snapshot, { ...expected, pendingUpdate }, summary);
    expect(s.release_summary).toBe("PR #17: affects 1 of 2 hosts · 1 needs a reboot · builds everywhere · hello 2.12 → 2.13, linux 6.6.58 → 6.6.60");
    expect(s.release_url).toBe(pendingUpdate.url);
    expect(updateState.safeParse(s).success).toBe(true);

    // Hundreds of package changes: the headline stays whole, the list ends in "+N more".
    const many = Array.from({ length: 300 }, (_, i) => ({ name: `python3-package-${i}`, old: ["1.0.0"], new: ["1.0.1"] }));
    const big = buildUpdateState(snapshot, { ...expected, pendingUpdate }, buildPreviewSummary(17, sha("c"), ["alpha"], [hp("alpha", { packages: many })], { now }));
    expect([...big.release_summary!].length).toBeLessThanOrEqual(255);
    expect(big.release_summary).toMatch(/^PR #17: affects 1 of 1 host · builds everywhere · python3-package-0 1\.0\.0 → 1\.0\.1, .*, \+\d+ more$/);

    // A summary of another head, or with nothing previewed yet, leaves the lock diff.
    for (const other of [{ ...summary, headSha: sha("d") }, buildPreviewSummary(17, sha("c"), ["alpha"], [], { now })]) {
      expect(buildUpdateState(snapshot, { ...expected, pendingUpdate }, other).release_summary).toBe("PR #17: nixpkgs 2025-12-10 → 2025-12-17");
    }
    // A PR that is not previewed says why.
    const fork = { ...buildPreviewSummary(17, sha("c"), ["alpha"], [], { now }), notPreviewed: "PR #17 comes from a fork: not previewed" };
    expect(buildUpdateState(snapshot, { ...expected, pendingUpdate }, fork).release_summary).toBe("PR #17: PR #17 comes from a fork: not previewed");
  });

  it("update state: several PRs of one update are one version, summarised together", () => {
    const part = (number: number, input: string, at: string) => ({ ...pendingUpdate, number, lockHash: String(number).repeat(64).slice(0, 64), lockLastModified: day(at), lockDiff: { added: [], removed: [], updated: [{ input, kind: "updated" as const, old: { type: "github", date: "2025-12-10" }, new: { type: "github", date: at.slice(0, 10) } }] } });
    const parts = [part(21, "nixpkgs", "2025-12-17T08:00:00Z"), part(22, "home-manager", "2025-12-18T09:05:00Z")];
    const s = buildUpdateState(snapshot, { ...expected, pendingUpdate: { ...parts[0]!, superseded: [], parts } });
    expect(s.latest_version).toBe("2025.12.18.905+2222222");
    expect(s.release_summary).toBe("PR #21, #22: nixpkgs 2025-12-10 → 2025-12-17, home-manager 2025-12-10 → 2025-12-18");
  });

  it("update state: a host behind the fleet head's lock has an update; a host ahead sees no downgrade", () => {
    const behind = { ...snapshot, info: { ...info, lockHash: "2".repeat(64) } };
    const s = buildUpdateState(behind, { ...expected, lockLastModified: day("2025-12-17T00:00:00Z") });
    expect(s.latest_version).toBe(`2025.12.17.0+${"1".repeat(7)}`);
    expect(s.installed_version).toBe(`2025.12.10.0+${"2".repeat(7)}`);
    expect(awesomeVersionNewer(s.latest_version!, s.installed_version!)).toBe(true);

    const ahead = { ...snapshot, info: { ...info, lockHash: "3".repeat(64) }, compartments: { ...snapshot.compartments, lock: compartment("ok", { lastModified: day("2025-12-20T12:00:00Z") }) } };
    for (const e of [expected, { ...expected, pendingUpdate: { ...pendingUpdate, lockLastModified: day("2025-12-17T00:00:00Z") } }]) {
      const a = buildUpdateState(ahead, e);
      expect(a.latest_version).not.toBe(a.installed_version);
      expect(awesomeVersionNewer(a.latest_version!, a.installed_version!)).toBe(false); // HA: no update offered
    }
  });

  it("versions compare by time in AwesomeVersion's way, whatever the hash (all digits included)", () => {
    const at = (iso: string) => day(iso);
    const pairs: [string, string][] = [["2025-12-17T00:00:00Z", "2025-12-10T23:59:00Z"], ["2025-12-10T10:05:00Z", "2025-12-10T09:59:00Z"], ["2026-01-01T00:00:00Z", "2025-12-31T23:59:00Z"], ["2025-10-02T00:00:00Z", "2025-09-30T00:00:00Z"]];
    for (const [newer, older] of pairs) {
      for (const [h1, h2] of [["0123456", "abcdef0"], ["fffffff", "0000000"], ["e679bb6", "1234567"]]) {
        const n = lockVersion(at(newer), h1!)!, o = lockVersion(at(older), h2!)!;
        expect(n).toMatch(PEP440);
        expect(awesomeVersionNewer(n, o), `${n} > ${o}`).toBe(true);
        expect(awesomeVersionNewer(o, n), `${o} > ${n}`).toBe(false);
      }
    }
    // Same time, another lock: not newer either way (HA: no update).
    expect(awesomeVersionNewer(lockVersion(at(pairs[0]![0]), "a".repeat(64))!, lockVersion(at(pairs[0]![0]), "b".repeat(64))!)).toBe(false);
    expect(lockVersion(undefined, "c".repeat(64))).toBe("c".repeat(12));
    expect(lockVersion(undefined, undefined)).toBeUndefined();
  });

  it("update state: in progress while a compartment is working; summary capped at 255", () => {
    const many = { ...pendingUpdate, lockDiff: { ...pendingUpdate.lockDiff, updated: Array.from({ length: 40 }, (_, i) => ({ input: `input-number-${i}`, old: { type: "git" }, new: { type: "git", date: "2025-12-17" } })) } };
    const s = buildUpdateState({ ...snapshot, compartments: { ...snapshot.compartments, system: compartment("working") } }, { ...expected, pendingUpdate: many });
    expect(s.in_progress).toBe(true);
    expect(s.release_summary!.length).toBeLessThanOrEqual(255);
    expect(updateState.safeParse(s).success).toBe(true);
  });

  it("host state: problem when a compartment failed, lock age in days", () => {
    expect(buildHostState(snapshot, now)).toEqual({ problem: "ON", worst: "failed", failed: ["system"], lock_age_days: 10 });
    const fine = buildHostState({ info, compartments: { agent: compartment("ok") } }, now);
    expect(fine.problem).toBe("OFF");
    expect(fine.lock_age_days).toBeNull();
    const unknownLock = buildUpdateState({ info: { ...info, lockHash: undefined }, compartments: {} }, null);
    expect(updateState.safeParse(unknownLock).success).toBe(true);
    expect(unknownLock).not.toHaveProperty("installed_version");
  });

  it("parses action payloads strictly", () => {
    expect(parseHaAction("switch")).toBe("switch");
    expect(parseHaAction(" install\n")).toBe("install");
    expect(parseHaAction("rm -rf /")).toBeNull();
    expect(parseHaAction("restart")).toBeNull();
  });
});

describe("the fleet device (Lockstep fleet)", () => {
  const origin = { name: "Lockstep", sw_version: "1.2.3" };
  const fleet = buildFleetDiscovery({ topics, haUser: "home-assistant", origin, configurationUrl: "http://hub:8080/" });

  it("is a valid device discovery whose id no host device can have", () => {
    expect(() => deviceDiscovery.parse(fleet)).not.toThrow();
    expect(fleet.dev).toMatchObject({ ids: ["lockstep-fleet"], name: "Lockstep fleet", mf: "Lockstep", sw: "1.2.3", cu: "http://hub:8080/" });
    expect(topics.haFleetDiscovery()).toBe("homeassistant/device/lockstep-fleet/config");
    // Host devices are lockstep_<host>, and a host id has no "-" right after "lockstep": never the same topic.
    expect(topics.haFleetDiscovery()).not.toBe(topics.haDiscovery("fleet"));
  });

  it("has automatic mode's paused sensor, read from the hub's retained pause state, with why as attributes", () => {
    const paused = fleet.cmps.automatic_paused!;
    expect(paused).toMatchObject({ p: "binary_sensor", unique_id: "lockstep-fleet_automatic_paused", name: "Automatic updates paused", state_topic: topics.automaticPause(), json_attributes_topic: topics.automaticPause() });
    expect(paused.availability).toEqual([{ topic: topics.hubAvailability() }]);
    expect(paused.value_template).toBe("{{ 'ON' if value_json.paused else 'OFF' }}");
    for (const key of ["reason", "prNumber", "rolloutId", "pausedAt", "resumedBy"]) expect(paused.json_attributes_template).toContain(`value_json.get('${key}')`);
  });

  it("has a problem sensor for the hub's storage, on while hub/storage says fault, with the code, path and hint as attributes", () => {
    const storage = fleet.cmps.storage_problem!;
    expect(storage).toMatchObject({ p: "binary_sensor", device_class: "problem", unique_id: "lockstep-fleet_storage_problem", state_topic: topics.hubStorage(), json_attributes_topic: topics.hubStorage() });
    expect(storage.value_template).toBe("{{ 'ON' if value_json.state == 'fault' else 'OFF' }}");
    for (const key of ["code", "path", "since", "hint", "heldRollouts"]) expect(storage.json_attributes_template).toContain(`value_json.get('${key}')`);
  });

  it("has a resume button on the HA user's own hub-actions topic, pressable while paused and the hub is up", () => {
    const button = fleet.cmps.resume_automatic!;
    expect(button).toMatchObject({ p: "button", unique_id: "lockstep-fleet_resume_automatic", name: "Resume automatic updates", command_topic: "lockstep/v1/hub/actions/home-assistant", qos: 1, availability_mode: "all" });
    expect(parseHubAction(String(button.payload_press))).toBe("resume-automatic");
    expect(button.availability).toEqual([{ topic: topics.hubAvailability() }, { topic: topics.automaticPause(), value_template: "{{ 'online' if value_json.paused else 'offline' }}" }]);
    const custom = buildFleetDiscovery({ topics: new Topics("acme"), haUser: "ha@home", origin });
    expect(custom.cmps.resume_automatic!.command_topic).toBe("acme/v1/hub/actions/ha@home");
  });

  it("takes another entity as one entry (unique id and the hub's availability added)", () => {
    const more = buildFleetDiscovery({ topics, haUser: "home-assistant", origin }, {
      ...FLEET_ENTITIES,
      storage_problem: ({ topics: t }) => ({ p: "binary_sensor", name: "Storage problem", device_class: "problem", state_topic: `${t.root}/hub/storage` }),
    });
    expect(() => deviceDiscovery.parse(more)).not.toThrow();
    expect(Object.keys(more.cmps)).toEqual(["automatic_paused", "resume_automatic", "storage_problem"]);
    expect(more.cmps.storage_problem).toMatchObject({ unique_id: "lockstep-fleet_storage_problem", availability: [{ topic: topics.hubAvailability() }] });
  });

  it("parses the hub-action payload with zod: only known words, bounded", () => {
    expect(parseHubAction(Buffer.from(" resume-automatic\n"))).toBe("resume-automatic");
    for (const bad of ["", "resume", "RESUME-AUTOMATIC", "resume-automatic " + "x".repeat(100)]) expect(parseHubAction(bad), bad).toBeNull();
  });
});
