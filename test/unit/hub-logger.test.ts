/** Log lines a person can read on a terminal, JSON for everything else, secrets redacted in both. */
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { wantsPrettyLogs } from "../../hub/logger.js";

const ROOT = join(__dirname, "..", "..");

/** Logs one line through createHubLogger in a child process and returns what reached stderr. */
function logLine(format: "json" | "pretty"): string {
  const script = `
    const { createHubLogger } = require(${JSON.stringify(join(ROOT, "dist", "hub", "logger.js"))});
    const log = createHubLogger({ level: "info", redact: ["token"] });
    log.info({ token: "ghp_secret123", host: "web-1" }, "hub started");`;
  const r = spawnSync(process.execPath, ["-e", script], { env: { ...process.env, LOCKSTEP_LOG_FORMAT: format }, encoding: "utf8", timeout: 30_000 });
  expect(r.status).toBe(0);
  return r.stderr;
}

describe("hub logger", () => {
  it("is pretty on a terminal, JSON otherwise; LOCKSTEP_LOG_FORMAT decides when set", () => {
    expect(wantsPrettyLogs({}, true)).toBe(true);
    expect(wantsPrettyLogs({}, false)).toBe(false);
    expect(wantsPrettyLogs({ LOCKSTEP_LOG_FORMAT: "json" }, true)).toBe(false);
    expect(wantsPrettyLogs({ LOCKSTEP_LOG_FORMAT: "pretty" }, false)).toBe(true);
  });

  it("writes a JSON line or a plain-text line, with the secret redacted in both", () => {
    const json = logLine("json");
    expect(JSON.parse(json.trim())).toMatchObject({ msg: "hub started", host: "web-1", token: "[REDACTED]" });
    const text = logLine("pretty");
    expect(text).toMatch(/INFO.*hub started/);
    expect(text).toContain("web-1");
    expect(() => JSON.parse(text.trim())).toThrow();
    expect(json + text).not.toContain("ghp_secret123");
  });
});
