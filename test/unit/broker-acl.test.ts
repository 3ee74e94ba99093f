import { describe, expect, it } from "vitest";
import { COMPARTMENTS, Topics } from "../../protocol/index.js";
import {
  canPublish,
  canReceive,
  canSubscribe,
  filterCoveredBy,
  filtersOverlap,
  isValidTopicFilter,
  topicMatches,
  type AclUser,
} from "../../broker/acl.js";

const t = new Topics();
const web1: AclUser = { name: "web1", role: "agent" };
const viewer: AclUser = { name: "page", role: "viewer" };
const operator: AclUser = { name: "ops", role: "operator" };
const hub: AclUser = { name: "hub", role: "hub" };

describe("MQTT matching helpers", () => {
  it.each([
    ["a/b", "a/b", true],
    ["a/+", "a/b", true],
    ["a/+", "a/b/c", false],
    ["a/#", "a", true],
    ["a/#", "a/b/c", true],
    ["+/+", "a/b", true],
    ["#", "$SYS/x", false],
    ["+/x", "$SYS/x", false],
    ["$SYS/#", "$SYS/x", true],
    ["a/b", "a/b/c", false],
    ["a/+/c", "a//c", true],
  ])("topicMatches(%s, %s) = %s", (pattern, topic, expected) => {
    expect(topicMatches(pattern, topic)).toBe(expected);
  });

  it.each([
    ["a/b", "a/#", true],
    ["a/+", "a/#", true],
    ["a/#", "a/#", true],
    ["a", "a/#", true],
    ["a/#", "a/+", false],
    ["a/+", "a/b", false],
    ["#", "a/#", false],
    ["a/+/c", "a/+/c", true],
    ["a/+/c", "a/+/+", true],
    ["a/+/+", "a/+/c", false],
    ["a/b/c", "a/+", false],
    ["a/b/#", "a/b", false],
  ])("filterCoveredBy(%s, %s) = %s", (filter, pattern, expected) => {
    expect(filterCoveredBy(filter, pattern)).toBe(expected);
  });

  it.each([
    ["a/#", "a/b/c", true],
    ["a/+/c", "a/b/+", true],
    ["a/+", "a", false],
    ["a", "a/#", true],
    ["x/#", "a/#", false],
    ["a/b", "a/c", false],
  ])("filtersOverlap(%s, %s) = %s", (a, b, expected) => {
    expect(filtersOverlap(a, b)).toBe(expected);
  });

  it("validates filters", () => {
    expect(isValidTopicFilter("a/+/b/#")).toBe(true);
    expect(isValidTopicFilter("a/#/b")).toBe(false);
    expect(isValidTopicFilter("a/b+")).toBe(false);
    expect(isValidTopicFilter("")).toBe(false);
  });
});

describe("agent", () => {
  const own = [
    t.availability("web1"),
    t.info("web1"),
    ...COMPARTMENTS.map((c) => t.compartment("web1", c)),
    t.job("web1", "j-1"),
    t.jobOutput("web1", "j-1"),
    t.haDiscovery("web1"),
    // Previews it evaluated, for itself or (a builder) for another host; the hub republishes them.
    t.hostPreview("web1", 7, "web1"),
    t.hostPreview("web1", 7, "laptop"),
  ];

  it.each(own)("publishes its own %s", (topic) => {
    expect(canPublish(web1, topic, t)).toBe(true);
  });

  it.each([
    t.availability("web2"),
    t.info("web2"),
    t.compartment("web2", "system"),
    t.job("web2", "j-1"),
    t.haDiscovery("web2"),
    t.hostPreview("web2", 7, "web1"),
    t.preview(7, "web1"),
    t.previewSummary(7),
    t.commands("web1"),
    t.actions("web1"),
    t.commands("web2"),
    t.expected(),
    t.rollout("r1"),
    t.events(),
    t.hubAvailability(),
    t.haStatus(),
    `${t.host("web1")}/other`,
    `${t.host("web1")}/compartments/system/extra`,
    `${t.root}/hosts/web10/info`,
    "homeassistant/device/lockstep_web10/config",
    "$SYS/broker",
    `${t.host("web1")}/+`,
  ])("does not publish %s", (topic) => {
    expect(canPublish(web1, topic, t)).toBe(false);
  });

  it.each([
    t.commands("web1"),
    `${t.host("web1")}/#`,
    `${t.host("web1")}/compartments/+`,
    t.expected(),
    t.hubAvailability(),
    t.haStatus(),
  ])("subscribes to %s", (filter) => {
    expect(canSubscribe(web1, filter, t)).toBe(true);
  });

  it.each([
    "#",
    "+/#",
    `${t.root}/#`,
    t.allHosts(),
    `${t.root}/hosts/+/commands`,
    `${t.root}/hosts/+/info`,
    t.commands("web2"),
    `${t.host("web2")}/#`,
    `${t.root}/fleet/#`,
    t.rollout("r1"),
    t.events(),
    "homeassistant/#",
    t.haDiscovery("web2"),
    "$SYS/#",
    `${t.root}/hosts/web1+/commands`,
  ])("may not subscribe to %s", (filter) => {
    expect(canSubscribe(web1, filter, t)).toBe(false);
  });

  it("receives only its own host's messages and fleet-wide state", () => {
    expect(canReceive(web1, t.commands("web1"), t)).toBe(true);
    expect(canReceive(web1, t.info("web1"), t)).toBe(true);
    expect(canReceive(web1, t.expected(), t)).toBe(true);
    expect(canReceive(web1, t.commands("web2"), t)).toBe(false);
    expect(canReceive(web1, t.info("web2"), t)).toBe(false);
    expect(canReceive(web1, t.rollout("r1"), t)).toBe(false);
  });
});

describe("viewer", () => {
  it("publishes nothing", () => {
    for (const topic of [t.commands("web1"), t.actions("web1"), t.info("web1"), t.expected(), t.haStatus(), "x"]) {
      expect(canPublish(viewer, topic, t)).toBe(false);
    }
  });

  it.each([
    `${t.root}/#`,
    t.allHosts(),
    ...t.allHostState(),
    t.allJobs(),
    t.allRollouts(),
    t.allHistory(),
    t.expected(),
    t.events(),
    t.hubAvailability(),
    "homeassistant/#",
    t.haDiscovery("web1"),
  ])("subscribes to %s", (filter) => {
    expect(canSubscribe(viewer, filter, t)).toBe(true);
  });

  it.each(["#", "+/v1/#", t.commands("web1"), `${t.root}/hosts/+/commands`, "other/#", "$SYS/#"])("may not subscribe to %s", (filter) => {
    expect(canSubscribe(viewer, filter, t)).toBe(false);
  });

  it("never receives commands, even through a broad subscription", () => {
    expect(canReceive(viewer, t.commands("web1"), t)).toBe(false);
    expect(canReceive(viewer, t.info("web1"), t)).toBe(true);
    expect(canReceive(viewer, t.jobOutput("web1", "j1"), t)).toBe(true);
    expect(canReceive(viewer, t.actions("web1"), t)).toBe(true);
    expect(canReceive(viewer, t.rollout("r1"), t)).toBe(true);
    expect(canReceive(viewer, t.haDiscovery("web1"), t)).toBe(true);
    expect(canReceive(viewer, "elsewhere/x", t)).toBe(false);
  });
});

describe("operator", () => {
  it("commands any host and presses HA-style actions", () => {
    expect(canPublish(operator, t.commands("web1"), t)).toBe(true);
    expect(canPublish(operator, t.actions("web2"), t)).toBe(true);
    expect(canPublish(operator, t.haStatus(), t)).toBe(true);
  });

  it("asks the hub only on its own hub-actions topic; agents and viewers never", () => {
    expect(canPublish(operator, t.hubActions("ops"), t)).toBe(true);
    expect(canPublish(operator, t.hubActions("home-assistant"), t)).toBe(false);
    expect(canPublish({ name: "home-assistant", role: "operator" }, t.hubActions("home-assistant"), t)).toBe(true);
    expect(canPublish(operator, t.hubActions("+"), t)).toBe(false);
    for (const user of [web1, viewer]) {
      for (const name of [user.name, "ops"]) expect(canPublish(user, t.hubActions(name), t), `${user.role} as ${name}`).toBe(false);
    }
  });

  it("does not write state, fleet topics or discovery", () => {
    for (const topic of [t.info("web1"), t.availability("web1"), t.expected(), t.rollout("r1"), t.events(), t.haDiscovery("web1"), t.hubAvailability()]) {
      expect(canPublish(operator, topic, t)).toBe(false);
    }
  });

  it("reads like a viewer", () => {
    expect(canSubscribe(operator, t.allHosts(), t)).toBe(true);
    expect(canReceive(operator, t.commands("web1"), t)).toBe(false);
    expect(canSubscribe(operator, "#", t)).toBe(false);
  });
});

describe("hub", () => {
  it("may do everything", () => {
    for (const topic of [t.commands("web1"), t.info("web1"), t.expected(), t.events(), t.haDiscovery("web1"), "anything/else"]) {
      expect(canPublish(hub, topic, t)).toBe(true);
      expect(canReceive(hub, topic, t)).toBe(true);
    }
    expect(canSubscribe(hub, "#", t)).toBe(true);
    expect(canSubscribe(hub, "a/#/b", t)).toBe(false); // invalid filter
  });
});

describe("custom prefixes", () => {
  const custom = new Topics("home/fleet", "ha");
  it("follows the configured topic and Home Assistant prefixes", () => {
    expect(canPublish(web1, "home/fleet/v1/hosts/web1/info", custom)).toBe(true);
    expect(canPublish(web1, t.info("web1"), custom)).toBe(false);
    expect(canPublish(web1, "ha/device/lockstep_web1/config", custom)).toBe(true);
    expect(canSubscribe(viewer, "home/fleet/v1/#", custom)).toBe(true);
    expect(canSubscribe(viewer, `${t.root}/#`, custom)).toBe(false);
    expect(canSubscribe(web1, "ha/status", custom)).toBe(true);
  });
});
