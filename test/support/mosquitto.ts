/**
 * A real Mosquitto (Debian package, /usr/sbin/mosquitto) as a child process, configured by the
 * files broker/mosquitto.ts generates. Used by the test brokers and the broker benchmark.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer, connect, type AddressInfo } from "node:net";
import { writeMosquittoConfig, type GeneratedMosquittoFiles, type MosquittoConfOptions } from "../../broker/mosquitto.js";
import type { CredentialStore } from "../../broker/credentials.js";

export const MOSQUITTO_BINARY = process.env.LOCKSTEP_MOSQUITTO_BIN ?? "/usr/sbin/mosquitto";

export function mosquittoAvailable(): boolean {
  return existsSync(MOSQUITTO_BINARY);
}

/** A currently free TCP port on 127.0.0.1 (Mosquitto cannot listen on port 0 and report it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Resolve once a TCP connection to port succeeds, or throw after timeoutMs. */
export async function waitForPort(port: number, timeoutMs = 10_000, isDead: () => boolean = () => false): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    if (isDead()) throw new Error(`mosquitto exited before listening on port ${port}`);
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const running = new Set<ChildProcess>();
// A test process that dies must not leave brokers behind.
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export class MosquittoProcess {
  private child?: ChildProcess;
  private exited?: Promise<void>;
  /** Last lines of Mosquitto's log, for error messages. */
  private logTail: string[] = [];
  files?: GeneratedMosquittoFiles;

  constructor(
    private readonly store: CredentialStore,
    readonly options: MosquittoConfOptions,
  ) {}

  /** Process id while running (the benchmark reads its CPU time and RSS from /proc). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  get log(): string {
    return this.logTail.join("\n");
  }

  /** Write the config files from the store (call before start, and after user changes). */
  async generate(): Promise<GeneratedMosquittoFiles> {
    const runAsUser = this.options.runAsUser ?? (process.getuid?.() === 0 ? "root" : undefined);
    this.files = await writeMosquittoConfig(this.store, { ...this.options, ...(runAsUser ? { runAsUser } : {}) });
    return this.files;
  }

  async start(): Promise<void> {
    if (this.child) throw new Error("mosquitto already running");
    const files = this.files ?? (await this.generate());
    const child = spawn(MOSQUITTO_BINARY, ["-c", files.confFile], { stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    running.add(child);
    let dead = false;
    let resolveExited: () => void = () => undefined;
    this.exited = new Promise<void>((resolve) => (resolveExited = resolve));
    child.once("exit", () => {
      dead = true;
      running.delete(child);
      resolveExited();
    });
    child.once("error", (err) => {
      // e.g. ENOENT: the binary is missing. "exit" may not follow, so settle here too.
      this.logTail.push(`cannot run ${MOSQUITTO_BINARY}: ${err.message} (install the Debian package "mosquitto" or set LOCKSTEP_MOSQUITTO_BIN)`);
      dead = true;
      running.delete(child);
      resolveExited();
    });
    const collect = (chunk: Buffer) => {
      this.logTail.push(...chunk.toString("utf8").trimEnd().split("\n"));
      if (this.logTail.length > 200) this.logTail.splice(0, this.logTail.length - 200);
    };
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    try {
      await waitForPort(this.options.tcp.port, 10_000, () => dead);
      if (this.options.ws) await waitForPort(this.options.ws.port, 10_000, () => dead);
    } catch (err) {
      await this.stop();
      throw new Error(`${(err as Error).message}\nmosquitto log:\n${this.log}`);
    }
  }

  /** Regenerate passwd/acl from the store and make Mosquitto re-read them (SIGHUP). */
  async reload(): Promise<void> {
    await this.generate();
    this.child?.kill("SIGHUP");
  }

  /** SIGTERM and wait for exit: Mosquitto writes its persistence file on the way out. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await this.exited;
    clearTimeout(timer);
    this.child = undefined;
  }
}
