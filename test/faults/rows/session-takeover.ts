import { Topics, agentClientId } from "../../../protocol/index.js";
import { Checks, settle, type FaultRow } from "../row.js";
import { emptyClientIdConnack } from "../../support/brokers.js";
import { connackCode, startRowBroker } from "./embedded-broker.js";

const topics = new Topics();

/** Another agent's credentials with a host's client id, while that host is offline with a queued command. */
export const sessionTakeover: FaultRow = {
  name: "session-takeover",
  scenario: "agent B logs in with offline host A's client id (persistent and clean session) while a command waits in A's queue; a viewer asks for a persistent session with an empty client id",
  expected: "B refused (CONNACK 5) and audited; A's queued command still delivered to A; empty client id refused (CONNACK 2)",
  speed: "fast",
  async run(ctx) {
    const c = new Checks();
    const rb = await startRowBroker(ctx);
    const { broker } = rb;
    const a = await broker.credentials.add("host-a", "agent");
    const b = await broker.credentials.add("host-b", "agent");
    const op = await broker.credentials.add("op", "operator");
    const viewer = await broker.credentials.add("page", "viewer");
    const first = await rb.connect({ username: "host-a", password: a.password, clientId: agentClientId("host-a"), clean: false });
    await rb.subscribe(first.client, [topics.commands("host-a")]);
    await first.client.endAsync();
    const operator = await rb.connect({ username: "op", password: op.password });
    await operator.client.publishAsync(topics.commands("host-a"), "queued-for-a", { qos: 1 });

    const codes: Array<number | string> = [];
    for (const clean of [false, true]) {
      const r = await settle(rb.connect({ username: "host-b", password: b.password, clientId: agentClientId("host-a"), clean }));
      codes.push(r.ok ? "connected" : (connackCode(r.error) ?? String(r.error)));
    }
    c.see(`B with A's client id: CONNACK ${codes.join(", ")}`);
    c.expect(codes.every((code) => code === 5), "B was not refused with CONNACK 5");
    const audited = rb.denied.filter((d) => d.action === "connect" && d.user === "host-b").length;
    c.see(`${audited} refusal(s) reported`);
    c.expect(audited >= 1, "the takeover was not reported for the audit log");

    const back = await rb.connect({ username: "host-a", password: a.password, clientId: agentClientId("host-a"), clean: false });
    const got = await settle(back.until(topics.commands("host-a")));
    const payloads = back.messages.filter((m) => m.topic === topics.commands("host-a")).map((m) => m.payload);
    c.see(`A back: got ${JSON.stringify(payloads)}`);
    c.expect(got.ok && payloads.join() === "queued-for-a", "A's queued command was lost");

    const empty = await emptyClientIdConnack(broker.ports.tcp, "page", viewer.password, false);
    c.see(`empty client id, persistent: CONNACK ${empty}`);
    c.expect(empty === 2, "a persistent session with an empty client id was not refused with CONNACK 2");
    return c.outcome();
  },
};
