/**
 * A private redis-server (Debian package `redis-server`) for the broker cluster's tests and bench:
 * its own free port on 127.0.0.1, its own temporary directory, no persistence to disk, never the
 * system's Redis. `stop()` kills it and removes the directory.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitForPort } from "./mosquitto.js";

export const REDIS_BINARY = process.env.LOCKSTEP_REDIS_BIN ?? "/usr/bin/redis-server";

export function redisAvailable(): boolean {
  return existsSync(REDIS_BINARY);
}

const running = new Set<ChildProcess>();
// A test process that dies must not leave a redis-server behind.
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export interface TestRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
}

export async function startTestRedis(): Promise<TestRedis> {
  if (!redisAvailable()) throw new Error(`${REDIS_BINARY} not found: install the Debian package redis-server (scripts/setup.sh does)`);
  const dir = await mkdtemp(join(tmpdir(), "lockstep-redis-"));
  const port = await freePort();
  const child = spawn(REDIS_BINARY, ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no", "--protected-mode", "yes"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  let log = "";
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-4000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let dead = false;
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      dead = true;
      running.delete(child);
      resolve();
    }),
  );
  try {
    await waitForPort(port, 10_000, () => dead);
  } catch (err) {
    child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
    throw new Error(`redis-server did not start: ${(err as Error).message}\n${log}`);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      if (!dead) {
        child.kill("SIGKILL");
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
