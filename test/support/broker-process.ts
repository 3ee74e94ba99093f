/**
 * `lockstep broker` (the built CLI, dist/hub/cli.js) as a child process: a broker cluster node for
 * the cluster tests and the cluster benchmark. Resolves once it listens, with its URL.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { HUB_ENTRY, REPO_ROOT } from "../demo/hub-process.js";

/** `lockstep broker` as a child process, and what it printed. */
export interface BrokerProcess {
  child: ChildProcess;
  url: string;
  output(): string;
  exited: Promise<unknown>;
}

export async function startBrokerProcess(dataDir: string, env: NodeJS.ProcessEnv): Promise<BrokerProcess> {
  if (!existsSync(HUB_ENTRY)) throw new Error(`${HUB_ENTRY} is missing: run "npm run build" first`);
  const child = spawn(process.execPath, [HUB_ENTRY, "broker", "--data-dir", dataDir], {
    cwd: REPO_ROOT,
    env: { ...process.env, LOCKSTEP_MQTT_HOST: "127.0.0.1", LOCKSTEP_MQTT_PORT: "0", LOCKSTEP_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const url = await new Promise<string>((resolve, reject) => {
    const check = () => {
      const m = /lockstep broker: listening on (mqtt:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    };
    child.stdout!.on("data", check);
    void exited.then((code) => reject(new Error(`lockstep broker exited with ${String(code)} before it listened:\n${out}`)));
  });
  return { child, url, output: () => out, exited };
}
