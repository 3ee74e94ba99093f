/**
 * A host's network (test/support/tcp-proxy.ts) in a worker thread. The rows' own thread blocks in
 * synchronous git and Nix calls (FleetRepo: `nix flake update` takes seconds on a loaded machine);
 * a proxy on that thread would stop forwarding meanwhile and the agents would miss their keepalive.
 *
 *   const net = await WorkerProxy.start({ host: "127.0.0.1", port: 1883 });
 *   await net.cut(); await net.restore(); await net.stop();
 */
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { TcpProxy } from "../support/tcp-proxy.js";

type Request = { id: number; op: "cut" | "restore" | "stop" };

export class WorkerProxy {
  private next = 1;
  private readonly pending = new Map<number, () => void>();

  private constructor(
    private readonly worker: Worker,
    readonly port: number,
  ) {
    worker.on("message", (m: { id: number }) => {
      this.pending.get(m.id)?.();
      this.pending.delete(m.id);
    });
  }

  static async start(target: { host: string; port: number }): Promise<WorkerProxy> {
    const worker = new Worker(__filename, { workerData: target });
    const port = await new Promise<number>((resolve, reject) => {
      worker.once("message", (m: { port: number }) => resolve(m.port));
      worker.once("error", reject);
    });
    return new WorkerProxy(worker, port);
  }

  private ask(op: Request["op"]): Promise<void> {
    const id = this.next++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.worker.postMessage({ id, op } satisfies Request);
    });
  }

  /** The network goes down: every open connection dropped, new ones refused. */
  cut(): Promise<void> {
    return this.ask("cut");
  }

  restore(): Promise<void> {
    return this.ask("restore");
  }

  async stop(): Promise<void> {
    await this.ask("stop");
    await this.worker.terminate();
  }
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  void TcpProxy.start(workerData as { host: string; port: number }).then((proxy) => {
    port.postMessage({ port: proxy.port });
    port.on("message", (m: Request) => {
      void (async () => {
        if (m.op === "cut") proxy.cut();
        else if (m.op === "restore") proxy.restore();
        else await proxy.stop();
        port.postMessage({ id: m.id });
      })();
    });
  });
}
