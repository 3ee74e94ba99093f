import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../protocol/index.js";
import { parseBrokerConfig } from "../../broker/config.js";
import { loadHubBrokerConfig } from "../../hub/config.js";

describe("broker config", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "lockstep-config-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("fills defaults: credentials file in dataDir, TCP 1883, anonymous off", () => {
    const config = parseBrokerConfig({ dataDir: "/var/lib/lockstep" });
    expect(config).toMatchObject({
      dataDir: "/var/lib/lockstep",
      credentialsFile: "/var/lib/lockstep/credentials.json",
      topicPrefix: "lockstep",
      haPrefix: "homeassistant",
      listeners: { tcp: { host: "0.0.0.0", port: 1883 } },
      allowAnonymous: false,
      limits: { maxPacketBytes: 16 * 1024 * 1024, maxFiltersPerSubscribe: 64, maxSubscriptionsPerClient: 512, publishRate: { perSecond: 50, burst: 500 }, loginBackoff: { freeFailures: 3, baseDelayMs: 1000 } },
    });
    expect(parseBrokerConfig({ dataDir: "/d", limits: { publishRate: { burst: 20 } } }).limits).toMatchObject({ maxFiltersPerSubscribe: 64, publishRate: { perSecond: 50, burst: 20 } });
    expect(config.listeners.ws).toBeUndefined();
    expect(config.listeners.tls).toBeUndefined();
    expect(config.external).toBeUndefined();
  });

  it.each([
    [{ dataDir: "/d", listeners: { tcp: { port: 70000 } } }, /listeners\.tcp\.port: expected a number 0-65535/],
    [{ dataDir: "/d", listeners: { tcp: { port: "1883" } } }, /listeners\.tcp\.port: expected a number 0-65535/],
    [{ dataDir: "/d", listeners: { ws: { path: "mqtt" } } }, /listeners\.ws\.path: expected a URL path/],
    [{ dataDir: "/d", listeners: { tls: { port: 8883 } } }, /listeners\.tls\.certFile: expected a file path/],
    [{ dataDir: "/d", topicPrefix: "a/#" }, /topicPrefix: expected letters/],
    [{ dataDir: "/d", allowAnonymous: "yes" }, /allowAnonymous: expected true or false/],
    [{ dataDir: "/d", external: { url: "http://x", username: "hub", passwordFile: "/p" } }, /external\.url: expected an mqtt:\/\//],
    [{ dataDir: "/d", listner: {} }, /unknown field\(s\) "listner"/],
    [{ dataDir: "/d", limits: { maxPacketBytes: 10 } }, /limits\.maxPacketBytes: expected at least 1024 bytes/],
    [{ dataDir: "/d", limits: { maxFiltersPerSubscribe: 0 } }, /limits\.maxFiltersPerSubscribe: expected a whole number 1-100000/],
    [{ dataDir: "/d", limits: { publishRate: { perSecond: -1 } } }, /limits\.publishRate\.perSecond: expected a number > 0/],
    [{}, /dataDir: expected a file path/],
  ])("names the bad field: %j", (input, message) => {
    expect(() => parseBrokerConfig(input)).toThrow(ConfigError);
    expect(() => parseBrokerConfig(input)).toThrow(message);
  });

  it("applies LOCKSTEP_* environment overrides on top of the file and says where a bad value came from", async () => {
    const file = join(dir, "broker.json");
    await writeFile(file, JSON.stringify({ dataDir: "/from-file", listeners: { tcp: { port: 1884 } } }));
    const config = loadHubBrokerConfig({
      file,
      env: { LOCKSTEP_MQTT_PORT: "1999", LOCKSTEP_WS_PORT: "9001", LOCKSTEP_ALLOW_ANONYMOUS: "true", LOCKSTEP_TOPIC_PREFIX: "home" },
    });
    expect(config.dataDir).toBe("/from-file");
    expect(config.listeners.tcp).toEqual({ host: "0.0.0.0", port: 1999 });
    expect(config.listeners.ws).toEqual({ host: "0.0.0.0", port: 9001, path: "/mqtt" });
    expect(config.allowAnonymous).toBe(true);
    expect(config.topicPrefix).toBe("home");

    expect(() => loadHubBrokerConfig({ file, env: { LOCKSTEP_MQTT_PORT: "abc" } })).toThrow(
      "listeners.tcp.port: expected a number 0-65535 (from LOCKSTEP_MQTT_PORT)",
    );
  });

  it("takes a Redis cluster (opt-in, from the file or LOCKSTEP_REDIS_URL / LOCKSTEP_BROKER_NODE_ID), never together with an external broker", () => {
    expect(parseBrokerConfig({ dataDir: "/d" }).cluster).toBeUndefined();
    const fromEnv = loadHubBrokerConfig({ env: { LOCKSTEP_DATA_DIR: "/d", LOCKSTEP_REDIS_URL: "redis://10.0.0.5:6379/2", LOCKSTEP_BROKER_NODE_ID: "node-b" } });
    expect(fromEnv.cluster).toEqual({ redisUrl: "redis://10.0.0.5:6379/2", nodeId: "node-b" });
    expect(() => parseBrokerConfig({ dataDir: "/d", cluster: { redisUrl: "http://x" } })).toThrow(/cluster\.redisUrl: expected a redis:\/\/ or rediss:\/\/ URL/);
    expect(() => loadHubBrokerConfig({ env: { LOCKSTEP_DATA_DIR: "/d", LOCKSTEP_REDIS_URL: "redis://r", LOCKSTEP_BROKER_NODE_ID: "a b" } })).toThrow(/cluster\.nodeId: expected 1-64 letters.*\(from LOCKSTEP_BROKER_NODE_ID\)/);
    expect(loadHubBrokerConfig({ env: { LOCKSTEP_DATA_DIR: "/d", LOCKSTEP_REDIS_URL: "redis://r", LOCKSTEP_BROKER_WILL_CHECK_MS: "5000" } }).cluster?.willCheckMs).toBe(5000);
    expect(() => loadHubBrokerConfig({ env: { LOCKSTEP_DATA_DIR: "/d", LOCKSTEP_REDIS_URL: "redis://r", LOCKSTEP_BROKER_WILL_CHECK_MS: "10" } })).toThrow(/cluster\.willCheckMs: expected milliseconds.*\(from LOCKSTEP_BROKER_WILL_CHECK_MS\)/);
    expect(() => parseBrokerConfig({ dataDir: "/d", cluster: { redisUrl: "redis://r" }, external: { url: "mqtt://m", username: "hub", passwordFile: "/p" } })).toThrow(/cluster: set either external/);
  });

  it("reads the broker section of a hub config file and uses defaults last", async () => {
    const file = join(dir, "hub.json");
    await writeFile(file, JSON.stringify({ http: { port: 1880 }, broker: { listeners: { tcp: { port: 1885 } } } }));
    const config = loadHubBrokerConfig({ file, env: {}, defaults: { dataDir: "/from-flag" } });
    expect(config.dataDir).toBe("/from-flag");
    expect(config.listeners.tcp.port).toBe(1885);
    expect(loadHubBrokerConfig({ file, env: { LOCKSTEP_DATA_DIR: "/from-env" }, defaults: { dataDir: "/from-flag" } }).dataDir).toBe("/from-env");
  });

  it("reports unreadable and non-JSON files", async () => {
    expect(() => loadHubBrokerConfig({ file: join(dir, "missing.json"), env: {} })).toThrow(/cannot read config file/);
    const bad = join(dir, "bad.json");
    await writeFile(bad, "{ not json");
    expect(() => loadHubBrokerConfig({ file: bad, env: {} })).toThrow(/not valid JSON/);
  });
});
