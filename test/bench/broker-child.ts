/**
 * The embedded broker alone in its own process, so the fleet benchmark can read its CPU time and
 * RSS from /proc (and profile it with --cpu-prof) apart from the simulated hosts.
 *   node broker-child.js DATA_DIR [DIST_DIR]
 * DIST_DIR (default: this build) is a compiled tree whose broker/ is used: a before/after run can
 * point it at an older build. Reports { port, hub } over IPC; stops on the message "stop".
 */
import { join } from "node:path";
import pino from "pino";

interface BrokerModule {
  EmbeddedBroker: new (config: unknown, logger: unknown) => {
    start(): Promise<void>;
    stop(): Promise<void>;
    ports: { tcp: number };
    hubConnection(): { url: string; username: string; password: string };
  };
}

async function main(): Promise<void> {
  const [dataDir, distDir = join(__dirname, "..", "..")] = process.argv.slice(2);
  if (!dataDir || !process.send) throw new Error("usage: fork broker-child.js DATA_DIR [DIST_DIR] with an IPC channel");
  const { EmbeddedBroker } = (await import(join(distDir, "broker", "embedded.js"))) as BrokerModule;
  const configModule = (await import(join(distDir, "broker", "config.js"))) as Record<string, (input: unknown) => unknown>;
  const parse = configModule.parseBrokerConfig ?? configModule.parseHubBrokerConfig;
  const broker = new EmbeddedBroker(parse!({ dataDir, listeners: { tcp: { host: "127.0.0.1", port: 0 } } }), pino({ level: "silent" }));
  await broker.start();
  process.send({ port: broker.ports.tcp, hub: broker.hubConnection() });
  process.on("message", (message) => {
    if (message === "stop") void broker.stop().then(() => process.exit(0));
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
