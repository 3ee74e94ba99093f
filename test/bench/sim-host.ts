/**
 * A simulated Lockstep host for the fleet benchmark: speaks the agent's MQTT conversation (a
 * persistent session with an "offline" will, the agent's four subscriptions, a retained "online",
 * info and five compartments) over a bare socket with mqtt-packet, so 10,000 of them fit in one
 * process (MQTT.js costs ~100 KB per client). With `answerCommands` it also runs the commands it
 * gets like a quick agent: a retained job state "running", then "succeeded" (the soak's jobs).
 */
import { connect as netConnect, type Socket } from "node:net";
import mqttPacket, { type Packet } from "mqtt-packet";
import { COMPARTMENTS, type Topics } from "../../protocol/index.js";

export const HOST_RETAINED_TOPICS = 2 + COMPARTMENTS.length; // availability, info, compartments

// Payloads the hub's fleet view accepts (protocol HostInfo and Compartment), so the hub counts the
// simulated hosts like real ones (the hub-restart benchmark waits for its fleet summary).
const infoPayload = (host: string) => {
  const now = new Date().toISOString();
  return JSON.stringify({
    host,
    hostname: host,
    os: "nixos",
    agentVersion: "0.1.0",
    repo: "github:example/fleet",
    branch: "main",
    commit: "0123456789abcdef0123456789abcdef01234567",
    generation: 412,
    systemPath: "/nix/store/0000000000000000000000000000000-nixos-system",
    startedAt: now,
    updatedAt: now,
  });
};

export const compartmentPayload = (n: number) =>
  JSON.stringify({ status: n % 7 === 0 ? "outdated" : "ok", summary: `at head ${n}`, checkedAt: new Date().toISOString(), detail: { commit: "0123456789abcdef0123456789abcdef01234567" } });

export class SimulatedHost {
  private socket?: Socket;
  private nextId = 1;
  private acks = new Map<number, () => void>();
  private onSuback?: () => void;

  /** Final job states the broker acknowledged (answerCommands). */
  jobsFinished = 0;
  /** Called when the connection closes (not after stop()). */
  onClose?: () => void;
  private stopped = false;

  constructor(
    readonly host: string,
    private readonly topics: Topics,
    private readonly opts: { answerCommands?: boolean } = {},
  ) {}

  /**
   * Connect, subscribe like an agent and publish the retained state; resolves when all is
   * acknowledged. With `connectTimeoutMs`, a CONNACK that does not come in time closes the socket.
   */
  async start(port: number, password: string, connectTimeoutMs?: number): Promise<void> {
    const socket = netConnect(port, "127.0.0.1");
    socket.setNoDelay(true);
    this.socket = socket;
    const parser = mqttPacket.parser();
    let connack: ((code: number) => void) | undefined;
    const connacked = new Promise<number>((resolve) => (connack = resolve));
    parser.on("packet", (packet: Packet) => {
      if (packet.cmd === "connack") connack?.(packet.returnCode ?? 0);
      else if (packet.cmd === "puback") {
        const done = this.acks.get(packet.messageId!);
        this.acks.delete(packet.messageId!);
        done?.();
      } else if (packet.cmd === "suback") this.onSuback?.();
      else if (packet.cmd === "publish") {
        if (packet.qos === 1) this.write({ cmd: "puback", messageId: packet.messageId! });
        if (this.opts.answerCommands && packet.topic === this.topics.commands(this.host)) void this.runJob(packet.payload.toString());
        // As the agent (agent/session.ts): an earlier connection's "offline" (its will, published
        // late, e.g. by a broker that restarted) landing while connected is answered with "online".
        else if (packet.topic === this.topics.availability(this.host) && packet.payload.toString() === "offline" && this.socket === socket) {
          void this.publish(this.topics.availability(this.host), "online");
        }
      }
    });
    socket.on("data", (chunk) => parser.parse(chunk));
    const failed = new Promise<never>((_, reject) => {
      socket.once("error", reject);
      socket.once("close", () => {
        reject(new Error(`${this.host}: connection closed`));
        if (!this.stopped && this.socket === socket) this.onClose?.();
      });
    });
    failed.catch(() => undefined);
    await Promise.race([new Promise((resolve) => socket.once("connect", resolve)), failed]);
    this.write({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 4,
      clientId: `lockstep-agent-${this.host}`,
      clean: false,
      keepalive: 600,
      username: this.host,
      password: Buffer.from(password),
      will: { topic: this.topics.availability(this.host), payload: Buffer.from("offline"), qos: 1, retain: true },
    });
    // As the agent's MQTT.js (connectTimeout): no CONNACK in time, drop the connection (and retry).
    const noConnack = connectTimeoutMs === undefined ? undefined : setTimeout(() => socket.destroy(), connectTimeoutMs);
    const code = await Promise.race([connacked, failed]).finally(() => clearTimeout(noConnack));
    if (code !== 0) throw new Error(`${this.host}: CONNACK ${code}`);
    const subscribed = new Promise<void>((resolve) => (this.onSuback = resolve));
    this.write({
      cmd: "subscribe",
      messageId: this.id(),
      subscriptions: [
        { topic: this.topics.commands(this.host), qos: 1 },
        { topic: this.topics.expected(), qos: 1 },
        { topic: this.topics.hubAvailability(), qos: 0 },
        { topic: this.topics.availability(this.host), qos: 1 },
      ],
    });
    await Promise.race([
      Promise.all([
        subscribed,
        this.publish(this.topics.availability(this.host), "online"),
        this.publish(this.topics.info(this.host), infoPayload(this.host)),
        ...COMPARTMENTS.map((c, i) => this.publish(this.topics.compartment(this.host, c), compartmentPayload(i))),
      ]),
      failed,
    ]);
  }

  /** A retained QoS 1 publish; resolves on its PUBACK. */
  publish(topic: string, payload: string): Promise<void> {
    const messageId = this.id();
    const acked = new Promise<void>((resolve) => this.acks.set(messageId, resolve));
    this.write({ cmd: "publish", topic, payload: Buffer.from(payload), qos: 1, retain: true, dup: false, messageId });
    return acked;
  }

  /** Change one compartment (n picks which and what). */
  change(n: number): Promise<void> {
    return this.publish(this.topics.compartment(this.host, COMPARTMENTS[n % COMPARTMENTS.length]!), compartmentPayload(n));
  }

  /** A command's job: "running", then "succeeded", each retained QoS 1 like the agent's. */
  private async runJob(payload: string): Promise<void> {
    let command: { id?: unknown; op?: unknown; requestedBy?: unknown };
    try {
      command = JSON.parse(payload) as typeof command;
    } catch {
      return;
    }
    if (typeof command.id !== "string" || typeof command.op !== "string") return;
    const acceptedAt = new Date().toISOString();
    const job = { id: command.id, host: this.host, op: command.op, requestedBy: String(command.requestedBy ?? ""), acceptedAt, startedAt: acceptedAt };
    const topic = this.topics.job(this.host, command.id);
    await this.publish(topic, JSON.stringify({ ...job, state: "running", summary: "running" }));
    await this.publish(topic, JSON.stringify({ ...job, state: "succeeded", summary: "done", exitCode: 0, finishedAt: new Date().toISOString() }));
    this.jobsFinished++;
  }

  stop(): void {
    this.stopped = true;
    if (this.socket && !this.socket.destroyed) this.write({ cmd: "disconnect" });
    this.socket?.end();
    this.socket?.destroy();
  }

  /** Drop the connection without a DISCONNECT (its will is published; onClose is called). */
  drop(): void {
    this.socket?.destroy();
  }

  private id(): number {
    const id = this.nextId;
    this.nextId = (this.nextId % 65535) + 1;
    return id;
  }

  private write(packet: Packet): void {
    this.socket?.write(mqttPacket.generate(packet));
  }
}
