import { Topics, agentClientId } from "../../../protocol/index.js";
import { Checks, type FaultRow } from "../row.js";
import { startRowBroker } from "./embedded-broker.js";

const topics = new Topics();

/** A retained command would run again on every reconnect of its host: the broker must not store it. */
export const retainedCommands: FaultRow = {
  name: "retained-commands",
  scenario: "an operator publishes a retained command and a retained action for a host, which connects afterwards",
  expected: "both refused and reported, nothing stored or replayed to the host; a later live command arrives",
  speed: "fast",
  async run(ctx) {
    const c = new Checks();
    const rb = await startRowBroker(ctx);
    const { broker } = rb;
    const op = await broker.credentials.add("op", "operator");
    const agent = await broker.credentials.add("web7", "agent");
    const operator = await rb.connect({ username: "op", password: op.password });
    await operator.client.publishAsync(topics.commands("web7"), JSON.stringify({ id: "retained-1", op: "switch", args: {} }), { qos: 1, retain: true });
    await operator.client.publishAsync(topics.actions("web7"), "switch", { qos: 1, retain: true });
    const refused = rb.denied.filter((d) => d.action === "publish" && /retained/.test(d.reason)).map((d) => d.topic?.split("/").at(-1));
    c.see(`refused: ${refused.join(", ") || "none"}`);
    c.expect(refused.length === 2, "the retained command and action were not both refused");

    const host = await rb.connect({ username: "web7", password: agent.password, clientId: agentClientId("web7") });
    await rb.subscribe(host.client, [topics.commands("web7"), topics.actions("web7")]);
    await operator.client.publishAsync(topics.commands("web7"), "live", { qos: 1 });
    await host.until(topics.commands("web7"));
    // The live command arrives after any replay would have: what came before it is what was stored.
    c.see(`host got ${JSON.stringify(host.messages.map((m) => m.payload))}`);
    c.expect(host.messages.length === 1 && host.messages[0]!.payload === "live" && !host.messages[0]!.retain, "a retained command or action was replayed");
    return c.outcome();
  },
};
