/**
 * Property tests over the configuration inputs inputs-fuzz.test.ts and inputs-fuzz-consumers.test.ts
 * leave out: the hub's LOCKSTEP_* environment on top of its config file (including the *_FILE
 * variables pointing at a missing file, a directory or an empty file), and the terminal client's
 * config file with its environment. Each gives a config or the loader's typed error, never another
 * error, and reads nothing it was not pointed at.
 *
 * CI runs a fixed seed; `npm run fuzz` runs many more cases (FUZZ_RUNS, FUZZ_SEED).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { loadHubConfig } from "../../hub/config.js";
import { CredentialsError, resolveCredentials } from "../../hub/terminal/credentials.js";
import { ConfigError } from "../../protocol/errors.js";
import { FUZZ_RUNS, fuzzParams, near } from "../support/fuzz.js";

const params = fuzzParams(20261209);
const dir = mkdtempSync(join(tmpdir(), "lockstep-fuzz-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const files = { missing: join(dir, "missing"), dir: join(dir, "a-dir"), empty: join(dir, "empty"), secret: join(dir, "secret") };
mkdirSync(files.dir);
writeFileSync(files.empty, "");
writeFileSync(files.secret, "s3cret-value\nsecond line\n");

/** A value for an environment variable: what it expects, near it, or anything. */
const envText = (...good: string[]) => fc.oneof({ weight: 2, arbitrary: fc.constantFrom(...good) }, fc.constantFrom("", " ", "0", "-1", "1e3", "true", "no", "x".repeat(300)), fc.string({ maxLength: 30 }));
const fileVar = fc.constantFrom(...Object.values(files), "", "relative/path", "~/nope");

describe("fuzz: the hub's environment", () => {
  const vars = {
    LOCKSTEP_HTTP_PORT: envText("8080", "0", "65535", "65536"),
    LOCKSTEP_HTTP_HOST: envText("127.0.0.1", "::", "localhost"),
    LOCKSTEP_LOG_LEVEL: envText("info", "debug", "silent"),
    LOCKSTEP_UPDATE_CRON: envText("0 6 * * 1", "*/5 * * * *", "61 * * * *", "@weekly"),
    LOCKSTEP_TIME_ZONE: envText("UTC", "Europe/Berlin", "Mars/Olympus"),
    LOCKSTEP_HA_ENABLED: envText("true", "false"),
    LOCKSTEP_HA_USER: envText("home-assistant", "BAD!"),
    LOCKSTEP_PUBLIC_URL: envText("https://hub.example", "not a url"),
    LOCKSTEP_PAGE_MQTT_URL: envText("wss://hub.example/mqtt"),
    LOCKSTEP_MERGE_DELAY_MINUTES: envText("0", "30", "1.5"),
    LOCKSTEP_MAX_WAIT_HOURS: envText("24"),
    LOCKSTEP_RECHECK_MINUTES: envText("5"),
    LOCKSTEP_PREVIEWS_GATING: envText("all", "none", "canary"),
    LOCKSTEP_GITHUB_OWNER: envText("acme"),
    LOCKSTEP_GITHUB_REPO: envText("fleet"),
    LOCKSTEP_GITHUB_TOKEN: envText("ghp_x"),
    LOCKSTEP_GITHUB_TOKEN_FILE: fileVar,
    LOCKSTEP_GITHUB_WEBHOOK_SECRET_FILE: fileVar,
    LOCKSTEP_GITHUB_API_URL: envText("https://api.github.com", "ftp://x"),
    LOCKSTEP_BRIDGE_URL: envText("mqtts://upstream:8883", "nope"),
    LOCKSTEP_BRIDGE_USERNAME: envText("lockstep"),
    LOCKSTEP_BRIDGE_PASSWORD_FILE: fileVar,
  };
  // A few variables at a time, so a case can be valid as a whole.
  const entry = fc.oneof(...Object.entries(vars).map(([k, v]) => v.map((value) => [k, value] as const)));
  const env = fc.array(entry, { maxLength: 4 }).map((entries) => Object.fromEntries(entries) as Record<string, string>);
  const base = { http: { port: 8080 }, automatic: { cron: "0 6 * * 1", timeZone: "UTC" } };

  it("any environment over any config loads or stops with a ConfigError", () => {
    const file = join(dir, "hub.json");
    let loaded = 0;
    fc.assert(
      fc.property(env, fc.oneof(near(base).map((v) => JSON.stringify(v)), fc.constant("{}")), (e, text) => {
        writeFileSync(file, text);
        try {
          const c = loadHubConfig({ file, dataDir: dir, env: e });
          expect(c.http.port).toBeGreaterThanOrEqual(0);
          loaded++;
        } catch (err) {
          expect(err, String(err)).toBeInstanceOf(ConfigError);
        }
      }),
      { ...params, numRuns: Math.min(FUZZ_RUNS, 2000) },
    );
    expect(loaded).toBeGreaterThan(0);
  });
});

describe("fuzz: the terminal client's config file and environment", () => {
  const base = { hub: "http://hub:1880", user: "alice", passwordFile: files.secret, mqtt: "ws://hub:1880/mqtt" };

  it("gives the hub, user and password or a CredentialsError; never prompts when told the password", async () => {
    const file = join(dir, "cli.json");
    let resolved = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(near(base).map((v) => JSON.stringify(v)), fc.string({ maxLength: 100 })),
        fc.record({ LOCKSTEP_HUB: envText("http://hub:1880", "hub:1880"), LOCKSTEP_USER: envText("alice"), LOCKSTEP_PASSWORD: envText("pw"), LOCKSTEP_PASSWORD_FILE: fileVar, LOCKSTEP_MQTT_URL: envText("ws://hub/mqtt") }, { requiredKeys: [] }),
        async (text, env) => {
          writeFileSync(file, text);
          const prompts: string[] = [];
          try {
            const c = await resolveCredentials({ configFile: file, env: { HOME: dir, ...env }, prompt: async (q) => (prompts.push(q), "typed") });
            expect(c.user.length).toBeGreaterThan(0);
            expect(c.password.length).toBeGreaterThan(0);
            expect(() => new URL(c.hub)).not.toThrow();
            if (env.LOCKSTEP_PASSWORD) expect(prompts).toEqual([]);
            // A password file gives its first line only.
            if (!env.LOCKSTEP_PASSWORD && env.LOCKSTEP_PASSWORD_FILE === files.secret) expect(c.password).toBe("s3cret-value");
            resolved++;
          } catch (err) {
            expect(err, String(err)).toBeInstanceOf(CredentialsError);
          }
        },
      ),
      params,
    );
    expect(resolved).toBeGreaterThan(0);
  });
});
