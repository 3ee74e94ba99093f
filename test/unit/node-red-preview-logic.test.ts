/**
 * The lockstep-preview node's logic without Node-RED, on a real PreviewService (fake MQTT client,
 * fake fleet): it asks for a preview of a new head, follows it (requested → n of m → done / does
 * not build), ends when every host that could be asked has reported, and sends what there is when
 * the time is up.
 */
import pino from "pino";
import { describe, expect, it } from "vitest";
import { Topics } from "../../protocol/index.js";
import { PreviewService } from "../../rollout/preview-service.js";
import { FakePreviewMqtt as FakeMqtt, hostPreviewPr7, hostSnapshot, pendingPr7, PREVIEW_AT } from "../support/preview-mqtt.js";
import type { HostSnapshot } from "../../rollout/fleet-port.js";
import { awaitPreview, resultStatus } from "../../node-red-nodes/lib/preview-logic.js";
import type { NodeStatus } from "../../node-red-nodes/lib/red.js";

const SHA1 = "1".repeat(40);
const SHA2 = "2".repeat(40);
const at = PREVIEW_AT;
const t = new Topics();


const snapshot = hostSnapshot;
const pending = pendingPr7;
const preview = hostPreviewPr7;

function setup(hosts: HostSnapshot[]) {
  const client = new FakeMqtt();
  const sent: Array<{ host: string; args: unknown }> = [];
  const fleet = {
    hosts: () => hosts,
    host: (h: string) => hosts.find((x) => x.host === h),
    sendCommand: async (host: string, _op: string, args: unknown) => {
      sent.push({ host, args });
      return `c-${sent.length}`;
    },
  };
  const service = new PreviewService({ client, fleet: fleet as never, log: pino({ level: "silent" }), now: () => new Date(at) });
  return { client, sent, service };
}

/** Resolves when `statuses` gets an entry whose text includes `text`. */
function statusSeen(statuses: NodeStatus[], text: string): Promise<void> {
  return new Promise((resolve) => {
    const check = () => (statuses.some((s) => s.text?.includes(text)) ? resolve() : setImmediate(check));
    check();
  });
}

describe("lockstep-preview logic", () => {
  it("asks for a new head, shows requested → n of m → done, and waits only for hosts that could be asked", async () => {
    // laptop is offline and there is no builder: never asked, so not waited for.
    const { client, sent, service } = setup([snapshot("alpha", true, { canary: true }), snapshot("beta", true), snapshot("laptop", false)]);
    await service.start();
    const statuses: NodeStatus[] = [];
    const done = awaitPreview(service, pending(SHA1), { timeoutMs: 60_000, onStatus: (s) => statuses.push(s) });
    await statusSeen(statuses, "0 of 2 hosts previewed");
    expect(statuses[0]).toEqual({ fill: "blue", shape: "dot", text: "#7: preview requested" });
    expect(sent.map((s) => s.host)).toEqual(["alpha", "beta"]);

    client.deliver(t.hostPreview("alpha", 7, "alpha"), preview("alpha", SHA1));
    await statusSeen(statuses, "1 of 2 hosts previewed");
    client.deliver(t.hostPreview("beta", 7, "beta"), preview("beta", SHA1, { outcome: "not-affected", affected: false, builds: null, packages: [] }));
    const r = await done;
    expect(r).toMatchObject({ pr: 7, headSha: SHA1, complete: true, timedOut: false });
    expect(r.hosts.map((h) => h.host).sort()).toEqual(["alpha", "beta"]);
    expect(r.summary!.text).toContain("affects 1 of 3 hosts");
    expect(r.summary!.unreachable).toEqual(["laptop"]);
    expect(resultStatus(r)).toEqual({ fill: "green", shape: "dot", text: "#7: previewed, affects 1 of 3" });

    // The same head again is complete at once and asks nobody twice.
    const again = await awaitPreview(service, pending(SHA1), { timeoutMs: 60_000 });
    expect(again.complete).toBe(true);
    expect(sent).toHaveLength(2);
  });

  it("a host where it does not build ends the wait red, naming the host", async () => {
    const { client, service } = setup([snapshot("alpha", true), snapshot("gamma", true)]);
    await service.start();
    const done = awaitPreview(service, pending(SHA1), { timeoutMs: 60_000 });
    await service.idle();
    client.deliver(t.hostPreview("alpha", 7, "alpha"), preview("alpha", SHA1));
    client.deliver(t.hostPreview("gamma", 7, "gamma"), preview("gamma", SHA1, { outcome: "does-not-build", builds: false, error: "error: openssl-3.0.16 does not build" }));
    const r = await done;
    expect(r.complete).toBe(true);
    expect(resultStatus(r)).toEqual({ fill: "red", shape: "dot", text: "#7: does not build on gamma" });
  });

  it("previews of an older head do not count; a new head is asked for and waited on", async () => {
    const { client, sent, service } = setup([snapshot("alpha", true)]);
    await service.start();
    client.deliver(t.expected(), { repo: "acme/fleet", branch: "main", headCommit: "9".repeat(40), lockHash: "x", pendingUpdate: pending(SHA1), updatedAt: at });
    await service.idle();
    client.deliver(t.hostPreview("alpha", 7, "alpha"), preview("alpha", SHA1));
    await service.idle();
    const statuses: NodeStatus[] = [];
    const done = awaitPreview(service, pending(SHA2), { timeoutMs: 60_000, onStatus: (s) => statuses.push(s) });
    await statusSeen(statuses, "0 of 1 hosts previewed");
    expect(sent.map((s) => (s.args as { headSha: string }).headSha)).toEqual([SHA1, SHA2]);
    client.deliver(t.hostPreview("alpha", 7, "alpha"), preview("alpha", SHA2, { outcome: "not-affected", affected: false, builds: null, packages: [] }));
    const r = await done;
    expect(r.headSha).toBe(SHA2);
    expect(r.hosts).toEqual([expect.objectContaining({ headSha: SHA2, outcome: "not-affected" })]);
  });

  it("sends what there is when the time is up, marked incomplete", async () => {
    const { client, service } = setup([snapshot("alpha", true), snapshot("beta", true)]);
    await service.start();
    const done = awaitPreview(service, pending(SHA1), { timeoutMs: 50 });
    await service.idle();
    client.deliver(t.hostPreview("alpha", 7, "alpha"), preview("alpha", SHA1));
    const r = await done;
    expect(r).toMatchObject({ complete: false, timedOut: true });
    expect(resultStatus(r)).toEqual({ fill: "yellow", shape: "dot", text: "#7: timed out, 1 of 2 hosts previewed" });
  });

  it("stops waiting when the node closes", async () => {
    const { service } = setup([snapshot("alpha", true)]);
    await service.start();
    const closing = new AbortController();
    const done = awaitPreview(service, pending(SHA1), { timeoutMs: 60_000, signal: closing.signal });
    closing.abort();
    await expect(done).rejects.toThrow(/closed while waiting/);
  });
});
