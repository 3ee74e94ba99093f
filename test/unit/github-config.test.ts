import { describe, it, expect } from "vitest";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { loadGitHubConfig, createGitHubLogger } from "../../github/config.js";
import { ConfigError } from "../../protocol/errors.js";
import { LogCapture } from "../github/harness.js";

const TOKEN = "ghp_unitTestToken_abcdef0123456789";

describe("GitHub config", () => {
  it("fills in defaults: rules, merge method, revert mode, api.github.com", () => {
    const c = loadGitHubConfig({ owner: "acme", repo: "fleet" }, { LOCKSTEP_GITHUB_TOKEN: TOKEN });
    expect(c.baseBranch).toBe("main");
    expect(c.apiBaseUrl).toBe("https://api.github.com");
    expect(c.detection).toEqual({
      labels: ["automated", "dependencies"],
      titlePatterns: ["flake.lock", "flake input", "lock file maintenance", "update", "bump"],
      headBranchPatterns: ["update_flake_lock_action", "update-nixfleet-*", "renovate/lock-file-maintenance", "renovate/*-digest", "flake-update*", "update-flake-*"],
      excludeHeadBranchPatterns: ["lockstep/revert-*"],
      ignoreReverts: true,
      onlyFlakeLock: true,
      groupDisjointPrs: true,
    });
    expect([c.mergeMethod, c.revertMode]).toEqual(["merge", "pr"]);
    expect(c.token.reveal()).toBe(TOKEN);
  });

  it("reads the token from a file (trimmed), and prefers it over the environment", () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-ghcfg-"));
    writeFileSync(join(dir, "token"), `${TOKEN}\n`);
    const c = loadGitHubConfig({ owner: "acme", repo: "fleet", tokenFile: join(dir, "token"), apiBaseUrl: "https://ghe.example.com/api/v3/" }, { LOCKSTEP_GITHUB_TOKEN: "other" });
    expect(c.token.reveal()).toBe(TOKEN);
    expect(c.apiBaseUrl).toBe("https://ghe.example.com/api/v3");
  });

  it("bad config gives a ConfigError naming the field and what to do", () => {
    expect(() => loadGitHubConfig({ owner: "acme", repo: "fleet" }, {})).toThrow(/no token.*LOCKSTEP_GITHUB_TOKEN/);
    expect(() => loadGitHubConfig({ owner: "acme", repo: "fleet", mergeMethod: "fast-forward" }, { LOCKSTEP_GITHUB_TOKEN: TOKEN })).toThrow(ConfigError);
    expect(() => loadGitHubConfig({ owner: "acme", repo: "fleet", mergeMethod: "fast-forward" }, { LOCKSTEP_GITHUB_TOKEN: TOKEN })).toThrow(/mergeMethod/);
    expect(() => loadGitHubConfig({ owner: "a/b", repo: "fleet" }, { LOCKSTEP_GITHUB_TOKEN: TOKEN })).toThrow(/owner/);
    expect(() => loadGitHubConfig({ owner: "acme", repo: "fleet", tokenFile: "/nonexistent/token" }, {})).toThrow(/cannot read the GitHub token file/);
    expect(() => loadGitHubConfig({ owner: "acme", repo: "fleet", typo: 1 }, { LOCKSTEP_GITHUB_TOKEN: TOKEN })).toThrow(/typo|unrecognized/i);
  });

  it("the token never serialises: JSON, String, inspect and pino all show [REDACTED]", () => {
    const c = loadGitHubConfig({ owner: "acme", repo: "fleet", webhookSecret: "whsec_unit" }, { LOCKSTEP_GITHUB_TOKEN: TOKEN });
    expect(JSON.stringify(c)).not.toContain(TOKEN);
    expect(JSON.stringify(c)).not.toContain("whsec_unit");
    expect(String(c.token)).toBe("[REDACTED]");
    expect(inspect(c, { depth: 5 })).not.toContain(TOKEN);
    const logs = new LogCapture();
    const log = createGitHubLogger({ level: "trace", destination: logs });
    log.info({ config: c }, "config");
    log.info({ token: TOKEN, headers: { authorization: `token ${TOKEN}` } }, "careless");
    log.info({ request: { headers: { authorization: `bearer ${TOKEN}` } } }, "careless 2");
    expect(logs.lines).toHaveLength(3);
    for (const line of logs.lines) expect(line).not.toContain(TOKEN);
  });
});
