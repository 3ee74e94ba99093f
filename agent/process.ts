/**
 * Running one child process for a job: argv only (never a shell), its own process group so
 * `stop` can kill it and everything it started, a timeout, and output delivered line by line.
 */
import { spawn } from "node:child_process";

export type OutputStream = "stdout" | "stderr";

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  onLine?: (stream: OutputStream, text: string) => void;
}

export interface RunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  cancelled: boolean;
  /** The last lines of combined output (for summaries and error texts). */
  tail: string[];
  /** Set when the process could not be started at all (ENOENT, EACCES). */
  spawnError?: string;
}

export interface RunningProcess {
  pid: number | undefined;
  done: Promise<RunResult>;
  /** Cancel: SIGTERM to the whole process group, SIGKILL after a grace period. */
  cancel(): void;
}

const TAIL_LINES = 40;
const KILL_GRACE_MS = 3000;

/** Splits a byte stream into lines; call flush() at the end for a last unterminated line. */
export class LineSplitter {
  private buf = "";
  constructor(private readonly onLine: (line: string) => void) {}
  push(chunk: Buffer | string): void {
    this.buf += chunk.toString();
    let i: number;
    while ((i = this.buf.indexOf("\n")) >= 0) {
      this.onLine(this.buf.slice(0, i).replace(/\r$/, ""));
      this.buf = this.buf.slice(i + 1);
    }
  }
  flush(): void {
    if (this.buf.length > 0) this.onLine(this.buf);
    this.buf = "";
  }
}

/** Does a process with this pid exist (EPERM: it does, but belongs to someone else)? */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function killGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    try {
      process.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}

export function runProcess(argv: string[], opts: RunOptions = {}): RunningProcess {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error("runProcess: empty argv");
  const tail: string[] = [];
  let timedOut = false;
  let cancelled = false;
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const line = (stream: OutputStream) => (text: string) => {
    tail.push(text);
    if (tail.length > TAIL_LINES) tail.shift();
    opts.onLine?.(stream, text);
  };
  const out = new LineSplitter(line("stdout"));
  const err = new LineSplitter(line("stderr"));
  child.stdout?.on("data", (c: Buffer) => out.push(c));
  child.stderr?.on("data", (c: Buffer) => err.push(c));

  let killTimer: NodeJS.Timeout | undefined;
  const terminate = () => {
    if (child.pid === undefined || child.exitCode !== null) return;
    killGroup(child.pid, "SIGTERM");
    killTimer = setTimeout(() => child.pid !== undefined && killGroup(child.pid, "SIGKILL"), KILL_GRACE_MS);
    killTimer.unref();
  };
  const timeout = opts.timeoutMs
    ? setTimeout(() => {
        timedOut = true;
        terminate();
      }, opts.timeoutMs)
    : undefined;

  const done = new Promise<RunResult>((resolve) => {
    let spawnError: string | undefined;
    child.on("error", (e: NodeJS.ErrnoException) => {
      spawnError = `${cmd}: ${e.code ?? e.message}`;
    });
    child.on("close", (code, signal) => {
      if (timeout) clearTimeout(timeout);
      if (killTimer) clearTimeout(killTimer);
      out.flush();
      err.flush();
      resolve({ exitCode: code, signal, timedOut, cancelled, tail, ...(spawnError ? { spawnError } : {}) });
    });
  });
  return {
    pid: child.pid,
    done,
    cancel() {
      cancelled = true;
      terminate();
    },
  };
}

/** The line that best explains a failure: the last "error:" line, else the last non-empty one. */
export function meaningfulErrorLine(lines: string[]): string | undefined {
  const cleaned = lines
    .map((l) => l.replace(/^\s*>\s?/, "").trim())
    .filter((l) => l.length > 0 && !/^For full logs, run/.test(l));
  const err = [...cleaned].reverse().find((l) => /(^|\s)error:/i.test(l) && !/^error: builder for .* failed with exit code/.test(l));
  return (err ?? cleaned[cleaned.length - 1])?.slice(0, 500);
}
