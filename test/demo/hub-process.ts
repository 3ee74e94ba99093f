/**
 * Runs `lockstep hub` as a child process (Node-RED cannot restart inside one process) and reads
 * what it prints: the URLs and, on first start, the operator's password. Used by the demo and the
 * hub / end-to-end tests.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";

/** Repository root, from dist/test/demo or test/demo. */
export const REPO_ROOT = (() => {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "protocol"))) return dir;
    dir = resolve(dir, "..");
  }
  throw new Error(`cannot find the repository root above ${__dirname}`);
})();

export const HUB_ENTRY = join(REPO_ROOT, "dist", "hub", "cli.js");

export interface HubProcessOptions {
  dataDir: string;
  configFile?: string;
  /** Extra environment (LOCKSTEP_*). Ports default to 0 (any free port) on 127.0.0.1. */
  env?: NodeJS.ProcessEnv;
  /** Called with every stdout/stderr line (the demo prints some of them). */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
  startTimeoutMs?: number;
  /** Start through `npm run hub` (set-up check, build if stale, then the hub) instead of node directly. */
  viaNpm?: boolean;
  /** Run the hub's command line through another command (e.g. `unshare` for its own mount namespace). */
  wrap?: (command: string, args: string[]) => [string, string[]];
}

export interface HubProcess {
  child: ChildProcess;
  baseUrl: string;
  mqttUrl: string;
  /** The hub's own MQTT over WebSocket (embedded broker only). */
  mqttWsUrl?: string;
  /** Printed on first start only. */
  operatorPassword?: string;
  /** Everything printed so far. */
  output(): string;
  /** SIGTERM and wait for the exit; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startHubProcess(opts: HubProcessOptions): Promise<HubProcess> {
  if (!opts.viaNpm && !existsSync(HUB_ENTRY)) throw new Error(`${HUB_ENTRY} is missing: run "npm run build" first`);
  const hubArgs = ["--data-dir", opts.dataDir, ...(opts.configFile ? ["--config", opts.configFile] : [])];
  const [plainCmd, plainArgs]: [string, string[]] = opts.viaNpm ? ["npm", ["run", "--silent", "hub", "--", ...hubArgs]] : [process.execPath, [HUB_ENTRY, "hub", ...hubArgs]];
  const [cmd, args] = opts.wrap ? opts.wrap(plainCmd, plainArgs) : [plainCmd, plainArgs];
  const child = spawn(cmd, args, {
    cwd: REPO_ROOT,
    // Its own process group: a stop reaches the hub behind npm too.
    detached: opts.viaNpm === true,
    env: {
      ...process.env,
      LOCKSTEP_HTTP_HOST: "127.0.0.1",
      LOCKSTEP_HTTP_PORT: "0",
      LOCKSTEP_MQTT_HOST: "127.0.0.1",
      LOCKSTEP_MQTT_PORT: "0",
      ...opts.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => {
    exitCode = code;
    r(code);
  }));
  for (const stream of ["stdout", "stderr"] as const) {
    let partial = "";
    child[stream]!.on("data", (d: Buffer) => {
      const text = d.toString();
      out += text;
      partial += text;
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) opts.onLine?.(line, stream);
    });
  }

  const kill = (sig: NodeJS.Signals) => (opts.viaNpm && child.pid ? process.kill(-child.pid, sig) : child.kill(sig));
  // From here on a failure must not leave the hub running.
  const killOnError = (err: unknown) => {
    if (exitCode === undefined) kill("SIGKILL");
    throw err;
  };
  await new Promise<void>((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`hub did not start within ${opts.startTimeoutMs ?? 60_000} ms:\n${out}`)), opts.startTimeoutMs ?? 60_000);
    const check = () => {
      if (/data dir:/.test(out)) {
        clearTimeout(timer);
        resolveReady();
      }
    };
    child.stdout!.on("data", check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`hub exited with ${code} before it was ready:\n${out}`));
    });
  }).catch(killOnError);

  const match = (re: RegExp) => {
    const m = re.exec(out);
    if (!m?.[1]) killOnError(new Error(`hub output lacks ${re}:\n${out}`));
    return m![1]!;
  };
  const wsUrl = /MQTT over WS:\s+(ws:\/\/\S+)/.exec(out)?.[1];
  const password = /created the operator "admin" with password (\S+)/.exec(out)?.[1];
  return {
    child,
    baseUrl: match(/fleet page:\s+(http:\/\/\S+?)\/?$/m),
    mqttUrl: match(/MQTT:\s+(mqtt:\/\/\S+)/),
    ...(wsUrl ? { mqttWsUrl: wsUrl } : {}),
    ...(password ? { operatorPassword: password } : {}),
    output: () => out,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (exitCode !== undefined) return exitCode;
      kill(signal);
      const timer = setTimeout(() => kill("SIGKILL"), 20_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
