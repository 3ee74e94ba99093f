/**
 * The agent installed on disk: what the supervisor (systemd, launchd) would start next. Its
 * version is what `<selfCheck.path> version` prints (argv, timeout, never a shell). Compared with
 * the running agent it says whether a restart would run something else: after a switch the agent
 * restarts into it, and the Agent compartment shows a stale agent that is still running.
 */
import { execFile } from "node:child_process";
import { realpathSync, statSync } from "node:fs";

export interface InstalledAgent {
  path: string;
  /** What `<path> version` printed (its first line). */
  version?: string;
  /** The file `path` resolves to, symlinks followed. */
  resolved?: string;
  /** Why the version is not known (missing file, failing or hanging command, odd output). */
  error?: string;
}

/** A version as `lockstep-agent version` prints it; anything else is not trusted. */
const VERSION_PATTERN = /^[0-9A-Za-z][0-9A-Za-z.+_~-]{0,99}$/;
/** /nix/store/<hash>-<name>: the package a file belongs to. */
const STORE_PREFIX = /^\/nix\/store\/[0-9a-z]{32}-[^/]+/;

export function storePrefix(path: string | undefined): string | undefined {
  return path ? STORE_PREFIX.exec(path)?.[0] : undefined;
}

/** Run `<path> version` and read its first line. */
export function runVersionCommand(path: string, timeoutMs: number, env: NodeJS.ProcessEnv): Promise<{ version?: string; error?: string }> {
  return new Promise((resolve) => {
    execFile(path, ["version"], { timeout: timeoutMs, env, encoding: "utf8", maxBuffer: 64 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const e = err as NodeJS.ErrnoException & { killed?: boolean };
        const why = e.killed ? `timed out after ${timeoutMs} ms` : typeof e.code === "number" ? `exit ${e.code}${stderr.trim() ? `: ${stderr.trim().split("\n").at(-1)}` : ""}` : (e.code ?? e.message);
        resolve({ error: `${path} version failed: ${why}` });
        return;
      }
      const line = stdout.split("\n").map((l) => l.trim()).find((l) => l.length > 0);
      if (!line || !VERSION_PATTERN.test(line)) resolve({ error: `${path} version printed ${line ? `"${line.slice(0, 100)}"` : "nothing"}, not a version` });
      else resolve({ version: line });
    });
  });
}

/**
 * Reads the installed agent's version, again only when the file behind the path changed (a switch
 * moves /run/current-system, an update rewrites the file): the periodic refresh costs a stat.
 */
export class InstalledAgentProbe {
  private cache: { key: string; result: InstalledAgent } | undefined;

  constructor(
    readonly path: string,
    private readonly timeoutMs: number,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  async read(): Promise<InstalledAgent> {
    let resolved: string;
    let key: string;
    try {
      resolved = realpathSync(this.path);
      const st = statSync(resolved);
      key = [resolved, st.ino, st.size, st.mtimeMs, st.ctimeMs].join("\0");
    } catch (e) {
      this.cache = undefined;
      return { path: this.path, error: `${this.path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` };
    }
    if (this.cache?.key === key) return this.cache.result;
    const r = await runVersionCommand(this.path, this.timeoutMs, this.env);
    const result: InstalledAgent = { path: this.path, resolved, ...r };
    // Only a successful read is cached: a failure (a timeout under load) is tried again next time.
    this.cache = r.version ? { key, result } : undefined;
    return result;
  }
}

/**
 * Why a restart would run a different agent, or undefined when it would not (or cannot be told).
 * Different versions, or the same version from a different Nix package (a rebuilt agent).
 */
export function installedDiffers(installed: InstalledAgent, running: { version: string; dir?: string }): string | undefined {
  if (installed.version && installed.version !== running.version) return `running ${running.version} but ${installed.version} is installed`;
  const a = storePrefix(installed.resolved);
  const b = storePrefix(running.dir);
  if (a && b && a !== b) return `running ${running.version} from ${b} but ${a} is installed`;
  return undefined;
}
