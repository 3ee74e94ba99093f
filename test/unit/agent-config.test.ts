import { describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { homedir } from "node:os";
import { loadAgentConfig, parseAgentConfig, selfCheckPathOf } from "../../agent/config.js";
import { brokerServer } from "../../agent/session.js";
import { ConfigError } from "../../protocol/index.js";

const minimal = () => ({
  host: "web1",
  broker: { url: "mqtt://hub:1883" },
  repo: { url: "git@github.com:acme/fleet.git", checkoutDir: "/var/lib/lockstep-agent/checkout" },
  stateDir: "/var/lib/lockstep-agent",
  os: { kind: "nixos" },
});

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("agent config", () => {
  it("fills defaults for a minimal config", () => {
    const c = parseAgentConfig(minimal());
    expect(c.repo.branch).toBe("main");
    expect(c.topicPrefix).toBe("lockstep");
    expect(c.testsDir).toBe("tests");
    expect(c.timeouts.switchSeconds).toBe(3600);
    expect(c.priority).toBe(100);
    expect(c.hold).toBe(false);
  });

  it("takes other broker cluster nodes as failoverUrls, MQTT.js servers tried in turn", () => {
    const c = parseAgentConfig({ ...minimal(), broker: { ...minimal().broker, url: "mqtt://node-a:1883", failoverUrls: ["mqtts://node-b", "mqtt://10.0.0.7:1884"] } });
    expect([c.broker.url, ...c.broker.failoverUrls!].map(brokerServer)).toEqual([
      { host: "node-a", port: 1883, protocol: "mqtt" },
      { host: "node-b", port: 8883, protocol: "mqtts" },
      { host: "10.0.0.7", port: 1884, protocol: "mqtt" },
    ]);
    expect(errorOf(() => parseAgentConfig({ ...minimal(), broker: { ...minimal().broker, failoverUrls: ["ws://node-b/mqtt"] } })).message).toMatch(/broker\.failoverUrls\.0: use mqtt:\/\/ or mqtts:\/\/host:port/);
  });

  it("names the bad field", () => {
    expect(errorOf(() => parseAgentConfig({ ...minimal(), host: "Web 1" })).message).toMatch(/^config: host: host ids are/);
    expect(errorOf(() => parseAgentConfig({ ...minimal(), os: { kind: "windows" } })).message).toMatch(/os\.kind/);
    expect(errorOf(() => parseAgentConfig({ ...minimal(), stateDir: "state" })).message).toMatch(/stateDir: must be an absolute path/);
    expect(errorOf(() => parseAgentConfig({ ...minimal(), broker: { url: "http://hub" } })).message).toMatch(/broker\.url: use mqtt:\/\//);
    expect(errorOf(() => parseAgentConfig({ ...minimal(), testsDir: "../etc" })).message).toMatch(/testsDir: must be a path inside the checkout/);
    expect(errorOf(() => parseAgentConfig({ ...minimal(), repo: { ...minimal().repo, branch: "-x" } })).message).toMatch(/repo\.branch/);
    expect(errorOf(() => parseAgentConfig({ ...minimal(), maintenanceWindow: { start: "25:00", end: "05:00" } })).message).toMatch(/maintenanceWindow\.start/);
    expect(errorOf(() => parseAgentConfig({ ...minimal(), brokr: {} })).message).toMatch(/brokr/);
    expect(errorOf(() => parseAgentConfig({ ...minimal(), os: { kind: "generic", argv: { switch: [[]] } } })).message).toMatch(/os\.argv\.switch/);
    expect(errorOf(() => parseAgentConfig([])).message).toMatch(/expected a JSON object/);
  });

  it("applies environment overrides before validating", () => {
    const c = parseAgentConfig(minimal(), { LOCKSTEP_AGENT_BROKER_URL: "mqtts://other:8883", LOCKSTEP_AGENT_LOG_LEVEL: "debug" });
    expect(c.broker.url).toBe("mqtts://other:8883");
    expect(c.logLevel).toBe("debug");
    expect(errorOf(() => parseAgentConfig(minimal(), { LOCKSTEP_AGENT_LOG_LEVEL: "loud" })).message).toMatch(/logLevel/);
  });

  it("reads the password file and reports unreadable or invalid files clearly", () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-agent-config-"));
    const pw = join(dir, "pw");
    writeFileSync(pw, "s3cret\n");
    const file = join(dir, "agent.json");
    writeFileSync(file, JSON.stringify({ ...minimal(), broker: { url: "mqtt://hub", passwordFile: pw } }));
    const c = loadAgentConfig(file, {});
    expect(c.brokerPassword).toBe("s3cret");

    writeFileSync(file, JSON.stringify({ ...minimal(), broker: { url: "mqtt://hub", passwordFile: join(dir, "missing") } }));
    expect(errorOf(() => loadAgentConfig(file, {})).message).toMatch(/cannot read the broker\.passwordFile file .*missing: ENOENT/);
    writeFileSync(file, "{ not json");
    expect(errorOf(() => loadAgentConfig(file, {})).message).toMatch(/is not valid JSON/);
    expect(errorOf(() => loadAgentConfig(join(dir, "nope.json"), {})).message).toMatch(/cannot read config file .*ENOENT/);
  });

  it("knows where the installed agent is per OS kind; restartAfterSwitch and keepJobs have safe defaults", () => {
    const c = parseAgentConfig(minimal());
    expect(c.restartAfterSwitch).toBe("if-changed");
    expect(c.keepJobs).toBe(20);
    expect(c.selfCheck.timeoutSeconds).toBe(10);
    expect(selfCheckPathOf(c)).toBe("/run/current-system/sw/bin/lockstep-agent");
    expect(selfCheckPathOf(parseAgentConfig({ ...minimal(), os: { kind: "darwin" } }))).toBe("/run/current-system/sw/bin/lockstep-agent");
    expect(selfCheckPathOf(parseAgentConfig({ ...minimal(), os: { kind: "home-manager" } }))).toBe(join(homedir(), ".nix-profile", "bin", "lockstep-agent"));
    expect(selfCheckPathOf(parseAgentConfig({ ...minimal(), os: { kind: "generic" } }))).toBeUndefined();
    expect(selfCheckPathOf(parseAgentConfig({ ...minimal(), os: { kind: "generic" }, selfCheck: { path: "/opt/agent" } }))).toBe("/opt/agent");
    expect(selfCheckPathOf(parseAgentConfig({ ...minimal(), selfCheck: { path: null } }))).toBeUndefined();
    expect(errorOf(() => parseAgentConfig({ ...minimal(), selfCheck: { path: "bin/agent" } })).message).toMatch(/selfCheck\.path: must be an absolute path/);
    expect(errorOf(() => parseAgentConfig({ ...minimal(), restartAfterSwitch: "sometimes" })).message).toMatch(/restartAfterSwitch/);
    expect(errorOf(() => parseAgentConfig({ ...minimal(), keepJobs: 0 })).message).toMatch(/keepJobs/);
  });
});
