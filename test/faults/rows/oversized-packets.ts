import { connect as netConnect } from "node:net";
import { Topics } from "../../../protocol/index.js";
import { Checks, mib, settle, type FaultRow } from "../row.js";
import { startRowBroker } from "./embedded-broker.js";

const topics = new Topics();
const MIB = 2 ** 20;

/** Length header of a PUBLISH announcing `bytes` (MQTT's variable-length integer). */
function publishHeader(bytes: number): Buffer {
  const out = [0x30];
  let n = bytes;
  do {
    let digit = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) digit |= 0x80;
    out.push(digit);
  } while (n > 0);
  return Buffer.from(out);
}

/** One 256 MiB publish cost the hub +1 GB before the broker had a packet size limit (issue 14). */
export const oversizedPackets: FaultRow = {
  name: "oversized-packets",
  scenario: "a client announces a 256 MiB PUBLISH (before CONNECT, and as a logged-in operator: 17 MiB actually sent)",
  expected: "connection closed on the length header (16 MiB default limit), reported; broker memory does not grow by the packet; a 1 MiB command still delivered",
  speed: "fast",
  async run(ctx) {
    const c = new Checks();
    const rb = await startRowBroker(ctx);
    const { broker } = rb;
    const rss0 = process.memoryUsage().rss;

    // 1. Before CONNECT: the maximum MQTT length, then 1 MiB of it.
    const socket = netConnect(broker.ports.tcp, "127.0.0.1");
    socket.on("error", () => undefined);
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.write(Buffer.concat([publishHeader(268_435_455), Buffer.alloc(MIB)]));
    await closed;
    c.see("raw 256 MiB header: closed");

    // 2. A logged-in operator sends 17 MiB for real.
    const op = await broker.credentials.add("op", "operator");
    const hub = await rb.connect(broker.hubConnection());
    await rb.subscribe(hub.client, [topics.commands("+")]);
    const operator = await rb.connect({ username: "op", password: op.password });
    const cut = new Promise<void>((resolve) => operator.client.once("close", () => resolve()));
    operator.client.publish(topics.commands("web1"), Buffer.alloc(17 * MIB), { qos: 1 });
    await cut;
    c.see("operator's 17 MiB publish: disconnected");
    const rss1 = process.memoryUsage().rss;
    c.see(`RSS +${mib(rss1 - rss0)}`);
    c.expect(rss1 - rss0 < 200 * MIB, "the broker's memory grew by more than 200 MiB");
    const reported = rb.denied.filter((d) => /over the limit/.test(d.reason)).length;
    c.see(`${reported} refusals reported`);
    c.expect(reported === 2, "the two oversized packets were not both reported");

    // 3. Under the limit still works, and the hub never saw the big one.
    const again = await rb.connect({ username: "op", password: op.password });
    const sent = await settle(again.client.publishAsync(topics.commands("web1"), Buffer.alloc(MIB), { qos: 1 }));
    await hub.until(topics.commands("web1"));
    const sizes = hub.messages.map((m) => m.payload.length);
    c.see(`hub received ${sizes.map((s) => mib(s)).join(", ")}`);
    c.expect(sent.ok && sizes.length === 1 && sizes[0] === MIB, "the 1 MiB command was not delivered, or the oversized one was");
    return c.outcome();
  },
};
