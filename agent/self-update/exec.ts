/** Run one argv (never through a shell) and capture its output, with a timeout (see process.ts). */
import { runProcess, type OutputStream } from "../process.js";

export interface CommandResult {
  argv: string[];
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Set when the program could not be started at all (e.g. ENOENT). */
  spawnError?: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs: number;
}

/** Keep the last part of a long output: the error is almost always at the end. */
const MAX_CAPTURE = 256 * 1024;

export async function runCommand(argv: readonly string[], opts: RunOptions): Promise<CommandResult> {
  const captured: Record<OutputStream, string> = { stdout: "", stderr: "" };
  const r = await runProcess([...argv], {
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    env: opts.env ?? process.env,
    timeoutMs: opts.timeoutMs,
    onLine: (stream, text) => (captured[stream] = (captured[stream] + text + "\n").slice(-MAX_CAPTURE)),
  }).done;
  return { argv: [...argv], exitCode: r.exitCode, signal: r.signal, ...captured, timedOut: r.timedOut, ...(r.spawnError ? { spawnError: r.spawnError } : {}) };
}

/** One line saying why a command failed, for run records and job summaries. */
export function describeFailure(r: CommandResult): string {
  if (r.spawnError) return `${r.argv[0]} could not be started: ${r.spawnError}`;
  if (r.timedOut) return `${r.argv[0]} timed out`;
  const tail = lastErrorLines(r.stderr || r.stdout);
  const how = r.exitCode !== null ? `exit code ${r.exitCode}` : `signal ${r.signal}`;
  return tail ? `${r.argv[0]} failed (${how}): ${tail}` : `${r.argv[0]} failed (${how})`;
}

/**
 * The first "error:" line, plus the build log lines Nix quotes under it ("> ..."), which is where
 * a failed builder says what went wrong. Falls back to the last two lines of output.
 */
function lastErrorLines(text: string): string {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  const first = lines.findIndex((l) => /^error:/i.test(l));
  if (first < 0) return lines.slice(-2).join(" / ").slice(0, 500);
  const quoted = lines.slice(first + 1).filter((l) => l.startsWith(">")).slice(-5).map((l) => l.replace(/^>\s?/, ""));
  return [lines[first], ...quoted].join(" / ").slice(0, 1000);
}
