/**
 * The bridge's topic rules (what goes out to the upstream broker, what comes in, with which retain
 * flag) and the hub config's bridge section.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Topics } from "../../protocol/index.js";
import { filtersOverlap } from "../../broker/acl.js";
import { bridgeFilters, forwardsIn, forwardsOut, redactUrl, retainOut } from "../../hub/upstream-bridge.js";
import { loadHubConfig } from "../../hub/config.js";

const t = new Topics();

describe("bridge topic rules", () => {
  it("sends host state, fleet/#, hub availability and Lockstep's discovery out", () => {
    for (const topic of [
      t.availability("web-1"),
      t.info("web-1"),
      t.compartment("web-1", "lock"),
      t.job("web-1", "j-1"),
      t.expected(),
      t.rollout("r1"),
      t.history("r1"),
      t.events(),
      t.haUpdate("web-1"),
      t.haState("web-1"),
      t.hubAvailability(),
      t.haDiscovery("web-1"),
      t.haFleetDiscovery(),
    ]) {
      expect(forwardsOut(t, topic), topic).toBe(true);
    }
  });

  it("never sends commands, actions, job output or other HA devices out", () => {
    for (const topic of [
      t.commands("web-1"),
      t.actions("web-1"),
      t.hubActions("home-assistant"),
      t.jobOutput("web-1", "j-1"),
      t.haStatus(),
      "homeassistant/device/other_thing/config",
      "homeassistant/device/lockstep_BAD!/config",
      "homeassistant/sensor/lockstep_web-1/config",
      "lockstep/v1/hosts/BAD!/info",
      "lockstep/v1/hosts/web-1/compartments/nope",
      "lockstep/v2/hosts/web-1/info",
    ]) {
      expect(forwardsOut(t, topic), topic).toBe(false);
    }
  });

  it("lets in only HA's actions and birth message, never commands", () => {
    expect(forwardsIn(t, t.actions("web-1"))).toBe(true);
    expect(forwardsIn(t, t.hubActions("home-assistant"))).toBe(true);
    expect(forwardsIn(t, t.haStatus())).toBe(true);
    for (const topic of [t.commands("web-1"), t.info("web-1"), t.expected(), t.hubAvailability(), t.haDiscovery("web-1"), "lockstep/v1/hosts/BAD!/actions", "lockstep/v1/hub/actions/a/b", "lockstep/v1/hub/actions/BAD!"]) {
      expect(forwardsIn(t, topic), topic).toBe(false);
    }
  });

  it("keeps the out and in topic sets disjoint (the loop prevention)", () => {
    for (const prefix of [new Topics(), new Topics("acme/fleet", "ha")]) {
      const { out, in: inbound } = bridgeFilters(prefix);
      for (const o of out) for (const i of inbound) expect(filtersOverlap(o, i) || filtersOverlap(i, o), `${o} vs ${i}`).toBe(false);
    }
  });

  it("retains everything out except audit events, whatever the live delivery's flag says", () => {
    expect(retainOut(t, t.compartment("web-1", "git"), false)).toBe(true);
    expect(retainOut(t, t.haDiscovery("web-1"), false)).toBe(true);
    expect(retainOut(t, t.events(), false)).toBe(false);
    expect(retainOut(t, t.events(), true)).toBe(true);
  });

  it("follows a custom prefix", () => {
    const c = new Topics("acme/fleet", "ha");
    expect(forwardsOut(c, "acme/fleet/v1/hosts/a/info")).toBe(true);
    expect(forwardsOut(c, "ha/device/lockstep_a/config")).toBe(true);
    expect(forwardsOut(c, t.info("a"))).toBe(false);
    expect(forwardsIn(c, "ha/status")).toBe(true);
    expect(forwardsIn(c, "homeassistant/status")).toBe(false);
  });

  it("logs URLs without credentials", () => {
    expect(redactUrl("mqtt://u:secret@ha.local:1883")).not.toContain("secret");
    expect(redactUrl("mqtt://ha.local:1883")).toBe("mqtt://ha.local:1883");
  });
});

describe("hub config: bridge", () => {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-bridge-config-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is off by default and set by LOCKSTEP_BRIDGE_* variables", () => {
    expect(loadHubConfig({ dataDir: dir, env: {} }).bridge).toBeUndefined();
    const c = loadHubConfig({
      dataDir: dir,
      env: { LOCKSTEP_BRIDGE_URL: "mqtt://ha.local:1883", LOCKSTEP_BRIDGE_USERNAME: "lockstep", LOCKSTEP_BRIDGE_PASSWORD_FILE: "/run/secrets/bridge" },
    });
    expect(c.bridge).toEqual({ url: "mqtt://ha.local:1883", username: "lockstep", passwordFile: "/run/secrets/bridge" });
  });

  it("refuses a bridge next to an external broker, and says why", () => {
    expect(() =>
      loadHubConfig({
        dataDir: dir,
        env: { LOCKSTEP_BRIDGE_URL: "mqtt://ha.local:1883", LOCKSTEP_EXTERNAL_URL: "mqtt://ha.local:1883", LOCKSTEP_EXTERNAL_USERNAME: "hub", LOCKSTEP_EXTERNAL_PASSWORD_FILE: "/p" },
      }),
    ).toThrow(/bridge is only for the embedded broker/);
  });

  it("names bad fields: URL scheme, credentials in the URL, unknown keys, password without user", () => {
    expect(() => loadHubConfig({ dataDir: dir, env: { LOCKSTEP_BRIDGE_URL: "http://ha.local" } })).toThrow(/bridge\.url.*(mqtt:\/\/|from LOCKSTEP_BRIDGE_URL)/);
    expect(() => loadHubConfig({ dataDir: dir, env: { LOCKSTEP_BRIDGE_URL: "mqtt://u:pw@ha.local" } })).toThrow(/must not contain a user or password/);
    expect(() => loadHubConfig({ dataDir: dir, env: { LOCKSTEP_BRIDGE_URL: "mqtt://ha.local", LOCKSTEP_BRIDGE_PASSWORD_FILE: "/p" } })).toThrow(/passwordFile needs a username/);
    expect(() => loadHubConfig({ dataDir: dir, env: { LOCKSTEP_BRIDGE_USERNAME: "x" } })).toThrow(/bridge\.url/);
  });
});
