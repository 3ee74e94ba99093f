/**
 * Brokers for tests: the same suites run against the embedded Aedes broker and a real Mosquitto.
 *
 * PROVISIONAL: this first version runs a bare Aedes without auth or persistence so the agent work
 * can start; the broker work replaces the body with the real hub broker (auth, ACLs, persistence)
 * and a generated Mosquitto config, keeping this interface.
 */
import { createServer, type Server } from "node:net";
import type { AddressInfo } from "node:net";

export type BrokerKind = "aedes" | "mosquitto";
export type Role = "agent" | "viewer" | "operator" | "hub";

export interface TestBroker {
  kind: BrokerKind;
  /** mqtt://127.0.0.1:PORT */
  url: string;
  /** ws://127.0.0.1:PORT (where the broker has a WebSocket listener) */
  wsUrl?: string;
  /** Create (or return) credentials for a client of the given role. For agents, name is the host id. */
  credentials(role: Role, name: string): Promise<{ username: string; password: string }>;
  /** Stop and start again on the same port, keeping persisted state. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export const BROKER_KINDS: BrokerKind[] = (process.env.LOCKSTEP_TEST_BROKERS?.split(",") as BrokerKind[] | undefined) ?? ["aedes"];

export async function startTestBroker(opts: { kind?: BrokerKind; dataDir?: string } = {}): Promise<TestBroker> {
  const { Aedes } = await import("aedes");
  let aedes = await Aedes.createBroker();
  let server: Server = createServer((s) => {
    s.setNoDelay(true);
    aedes.handle(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  const close = async () => {
    await new Promise<void>((r) => aedes.close(() => r()));
    await new Promise<void>((r) => server.close(() => r()));
  };
  return {
    kind: opts.kind ?? "aedes",
    url: `mqtt://127.0.0.1:${port}`,
    async credentials(role, name) {
      return { username: role === "agent" ? name : `${role}-${name}`, password: "unused" };
    },
    async restart() {
      await close();
      aedes = await Aedes.createBroker();
      server = createServer((s) => {
        s.setNoDelay(true);
        aedes.handle(s);
      });
      await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
    },
    stop: close,
  };
}
