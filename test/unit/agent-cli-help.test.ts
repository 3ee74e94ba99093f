/**
 * What a new user meets first: `lockstep-agent --help` and the shipped example config, which must
 * stay valid against the very schema the agent loads (a field renamed in agent/config.ts fails here).
 */
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAgentConfig } from "../../agent/config.js";

const ROOT = join(__dirname, "..", "..");
const EXAMPLE = join(ROOT, "agent", "example-config.json");

/** The compiled CLI (`npm run build`; `npm test` builds first). */
function agentCli(args: string[]) {
  return spawnSync(process.execPath, [join(ROOT, "dist", "agent", "cli.js"), ...args], { encoding: "utf8", timeout: 30_000 });
}

describe("agent/example-config.json", () => {
  it("is a complete config the agent accepts, with no field it would ignore", () => {
    const raw = JSON.parse(readFileSync(EXAMPLE, "utf8")) as Record<string, unknown>;
    const parsed = parseAgentConfig(raw, {}, EXAMPLE) as unknown as Record<string, unknown>;
    expect(parsed.host).toBe("web-1");
    for (const key of Object.keys(raw)) expect(parsed, `example field ${key}`).toHaveProperty(key);
  });
});

describe("lockstep-agent --help", () => {
  it("prints real help on stdout and exits 0, for the agent and for run", () => {
    for (const args of [["--help"], ["-h"], ["help"], ["run", "--help"]]) {
      const r = agentCli(args);
      expect(r.status, args.join(" ")).toBe(0);
      expect(r.stdout).toContain("check-config --config FILE");
      expect(r.stdout).toContain("example-config.json");
      expect(r.stdout).toMatch(/exit codes: 0 stopped on request/);
    }
  });

  it("self-update --help explains the run and its exit codes", () => {
    const r = agentCli(["self-update", "--help"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/health checks \(nothing is touched unless they pass\)/);
    expect(r.stdout).toContain("4 another run or an agent job holds the lock");
    expect(r.stdout).toContain("usage:");
  });

  it("no command is a usage error on stderr (exit 2); an unknown one too", () => {
    expect(agentCli([]).status).toBe(2);
    const r = agentCli(["frobnicate"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("usage: lockstep-agent run --config FILE");
  });
});
