/**
 * A TCP proxy between an agent and its broker that a test can cut and restore: the stand-in for
 * an activation that takes the host's network down. Cut: every open connection is destroyed and
 * new ones are dropped at once (the port stays ours, so nothing else can take it meanwhile).
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  private open = true;
  private cutBefore: ((chunk: Buffer) => boolean) | undefined;
  private onCut: (() => void) | undefined;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    let proxy!: TcpProxy;
    const server = createServer((client) => {
      if (!proxy.open) return void client.destroy();
      const upstream = connect(target.port, target.host);
      for (const s of [client, upstream]) {
        proxy.sockets.add(s);
        s.on("close", () => proxy.sockets.delete(s));
        s.on("error", () => undefined);
      }
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
      client.on("data", (chunk: Buffer) => {
        // A chunk the test wants lost: the network goes down before the broker gets it.
        if (proxy.cutBefore?.(chunk)) {
          proxy.cutBefore = undefined;
          proxy.cut();
          proxy.onCut?.();
          return;
        }
        if (!upstream.write(chunk)) client.pause();
      });
      upstream.on("drain", () => client.resume());
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const address = server.address();
    if (!address || typeof address === "string") throw new Error("tcp proxy: no port");
    proxy = new TcpProxy(server, address.port);
    return proxy;
  }

  get isOpen(): boolean {
    return this.open;
  }

  /** The network goes down: drop every connection and refuse new ones. */
  cut(): void {
    this.open = false;
    for (const s of this.sockets) s.destroy();
  }

  /**
   * Cut the network right before the first chunk from the client that `matches` (e.g. one MQTT
   * PUBLISH) reaches the broker: that chunk is lost. Resolves once it happened.
   */
  cutBeforeClientSends(matches: (chunk: Buffer) => boolean): Promise<void> {
    return new Promise<void>((resolve) => {
      this.cutBefore = matches;
      this.onCut = resolve;
    });
  }

  restore(): void {
    this.open = true;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
