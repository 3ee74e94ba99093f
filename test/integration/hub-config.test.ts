/**
 * The hub's configuration: file, then LOCKSTEP_* environment on top, validated; errors name the
 * field and where the value came from. Also the API's Basic auth parsing.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadHubConfig } from "../../hub/config.js";
import { parseBasicAuth } from "../../hub/node-red.js";
import { parseHubArgs } from "../../hub/cli.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-hub-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("hub config", () => {
  it("has working defaults: port 1880, embedded broker on 1883, weekly Monday 06:00 UTC", () => {
    const c = loadHubConfig({ dataDir: join(dir, "d1"), env: {} });
    expect(c.http).toEqual({ host: "0.0.0.0", port: 1880 });
    expect(c.broker.listeners.tcp.port).toBe(1883);
    expect(c.broker.external).toBeUndefined();
    expect(c.automatic).toMatchObject({ cron: "0 6 * * 1", timeZone: "UTC", mergeDelayMinutes: 60 });
    expect(c.dataDir).toBe(join(dir, "d1"));
    expect(c.github).toBeUndefined();
    expect(c.audit).toEqual({ maxMegabytes: 10, keepFiles: 5 });
  });

  it("reads the file, then lets LOCKSTEP_* variables override it", () => {
    const file = join(dir, "hub.json");
    writeFileSync(file, JSON.stringify({ http: { port: 8080 }, github: { owner: "acme", repo: "fleet" }, broker: { listeners: { tcp: { port: 1884 } } } }));
    const c = loadHubConfig({
      file,
      dataDir: join(dir, "d2"),
      env: { LOCKSTEP_HTTP_PORT: "9090", LOCKSTEP_GITHUB_REPO: "me/nixos", LOCKSTEP_MERGE_DELAY_MINUTES: "0.5", LOCKSTEP_APPRISE_URL: "http://apprise:8000/notify/x" },
    });
    expect(c.http.port).toBe(9090);
    expect(c.github).toMatchObject({ owner: "me", repo: "nixos" });
    expect(c.broker.listeners.tcp.port).toBe(1884);
    expect(c.automatic.mergeDelayMinutes).toBe(0.5);
    expect(c.notify.appriseUrl).toBe("http://apprise:8000/notify/x");
  });

  it("names the bad field and the variable it came from", () => {
    expect(() => loadHubConfig({ dataDir: dir, env: { LOCKSTEP_HTTP_PORT: "http" } })).toThrow(/http\.port.*environment: http\.port from LOCKSTEP_HTTP_PORT/);
    const file = join(dir, "typo.json");
    writeFileSync(file, JSON.stringify({ htp: { port: 1 } }));
    expect(() => loadHubConfig({ file, env: {} })).toThrow(/invalid hub config.*htp/);
    expect(() => loadHubConfig({ file: join(dir, "missing.json"), env: {} })).toThrow(/cannot read config file/);
    writeFileSync(file, JSON.stringify({ audit: { keepFiles: -1 } }));
    expect(() => loadHubConfig({ file, env: {} })).toThrow(/audit\.keepFiles/);
  });

  it("checks the weekly schedule and the rollout defaults before the hub starts, naming the field", () => {
    const file = join(dir, "bad-automatic.json");
    const load = (content: unknown, env: NodeJS.ProcessEnv = {}) => {
      writeFileSync(file, JSON.stringify(content));
      return () => loadHubConfig({ file, dataDir: dir, env });
    };
    expect(load({ automatic: { cron: "every monday" } })).toThrow(/automatic\.cron.*"every monday" is not a cron expression/);
    expect(load({ automatic: { cron: "0 6 * * 9" } })).toThrow(/automatic\.cron/);
    expect(load({}, { LOCKSTEP_UPDATE_CRON: "61 * * * *" })).toThrow(/automatic\.cron.*LOCKSTEP_UPDATE_CRON/);
    expect(load({ automatic: { timeZone: "Europe/Atlantis" } })).toThrow(/automatic\.timeZone.*"Europe\/Atlantis" is not a time zone/);
    expect(load({ rollout: { strategy: { soakMs: -5 } } })).toThrow(/rollout\.strategy\.soakMs/);
    expect(load({ rollout: { onFailur: "halt" } })).toThrow(/rollout.*onFailur/);
    expect(load({ rollout: { commit: "a".repeat(40) } })).toThrow(/rollout\.commit.*per rollout/);
    // Good values still load.
    const ok = load({ automatic: { cron: "30 5 * * 1-5", timeZone: "Europe/Berlin" }, rollout: { strategy: { soakMs: 60000 }, onFailure: "halt" } })();
    expect(ok.automatic).toMatchObject({ cron: "30 5 * * 1-5", timeZone: "Europe/Berlin" });
  });

  it("previews: on by default, every affected host builds and must build before automatic mode merges; forks are not previewed", () => {
    const file = join(dir, "previews.json");
    const load = (content: unknown, env: NodeJS.ProcessEnv = {}) => {
      writeFileSync(file, JSON.stringify(content));
      return () => loadHubConfig({ file, dataDir: dir, env });
    };
    expect(load({})().previews).toEqual({ enabled: true, build: "all", allowForks: false, allowMoreThanLock: false, gating: "all", githubComment: false });
    expect(load({}, { LOCKSTEP_PREVIEWS_GITHUB_COMMENT: "true" })().previews.githubComment).toBe(true);
    // Gating on the canary only needs the canary to build; previews off means nothing to gate on.
    expect(load({ previews: { gating: "canary" } })().previews).toMatchObject({ build: "canary", gating: "canary" });
    expect(load({ previews: { enabled: false } })().previews).toMatchObject({ enabled: false, gating: "ignore" });
    expect(load({}, { LOCKSTEP_PREVIEWS_ALLOW_FORKS: "true", LOCKSTEP_PREVIEWS_GATING: "ignore", LOCKSTEP_PREVIEWS_BUILD: "none" })().previews).toMatchObject({ allowForks: true, gating: "ignore", build: "none" });
    // A combination that could never let automatic mode merge is refused before the hub starts.
    expect(load({ previews: { build: "canary" } })).toThrow(/previews\.build.*gating "all" needs every affected host to build/);
    expect(load({ previews: { gating: "canary", build: "none" } })).toThrow(/previews\.build/);
    expect(load({ previews: { enabled: false, gating: "all" } })).toThrow(/previews\.gating.*previews are off/);
    expect(load({}, { LOCKSTEP_PREVIEWS_GATING: "sometimes" })).toThrow(/previews\.gating.*LOCKSTEP_PREVIEWS_GATING/);
    expect(load({ previews: { allowFork: true } })).toThrow(/previews.*allowFork/);
  });

  it("parses the command line", () => {
    expect(parseHubArgs(["--data-dir", "/d", "--config", "/c.json"])).toEqual({ dataDir: "/d", config: "/c.json", help: false });
    expect(() => parseHubArgs(["--data-dir"])).toThrow(/--data-dir needs a value/);
    expect(() => parseHubArgs(["--port", "1"])).toThrow(/unknown argument --port/);
  });
});

describe("API Basic auth header", () => {
  it("parses user and password (the password may contain colons) and rejects anything else", () => {
    const header = (s: string) => `Basic ${Buffer.from(s).toString("base64")}`;
    expect(parseBasicAuth(header("admin:pa:ss"))).toEqual({ name: "admin", password: "pa:ss" });
    expect(parseBasicAuth(header(":nouser"))).toBeNull();
    expect(parseBasicAuth("Bearer abc")).toBeNull();
    expect(parseBasicAuth(undefined)).toBeNull();
  });
});
