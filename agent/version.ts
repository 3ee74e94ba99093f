/** The agent's own version: the package version (from dist/agent/ or agent/ alike). */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

function readVersion(): string {
  for (const rel of ["../../package.json", "../package.json"]) {
    const p = join(__dirname, rel);
    if (!existsSync(p)) continue;
    try {
      const pkg = JSON.parse(readFileSync(p, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "lockstep" && pkg.version) return pkg.version;
    } catch {
      // try the next candidate
    }
  }
  return "0.0.0-unknown";
}

export const AGENT_VERSION: string = process.env.LOCKSTEP_AGENT_VERSION_OVERRIDE || readVersion();
