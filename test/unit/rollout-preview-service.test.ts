import { describe, expect, it } from "vitest";
import pino from "pino";
import { PreviewSummary, Topics, type FleetExpected, type PendingUpdate } from "../../protocol/index.js";
import { PreviewService } from "../../rollout/preview-service.js";
import { FakePreviewMqtt as FakeMqtt, hostPreviewPr7, hostSnapshot, pendingPr7, PREVIEW_AT } from "../support/preview-mqtt.js";

const SHA1 = "1".repeat(40);
const SHA2 = "2".repeat(40);
const at = PREVIEW_AT;
const t = new Topics();


const snapshot = hostSnapshot;

const pending = pendingPr7;
const expected = (p: PendingUpdate | null): FleetExpected => ({ repo: "acme/fleet", branch: "main", headCommit: "9".repeat(40), lockHash: "x", pendingUpdate: p, updatedAt: at });
const preview = hostPreviewPr7;

describe("PreviewService", () => {
  function setup(opts: { allowForks?: boolean; repo?: string } = {}) {
    const client = new FakeMqtt();
    const hosts = [snapshot("alpha", true, { canary: true }), snapshot("beta", true), snapshot("builder", true, { tags: ["builder"] }), snapshot("laptop", false)];
    const sent: Array<{ host: string; op: string; args: unknown }> = [];
    const fleet = {
      hosts: () => hosts,
      host: (h: string) => hosts.find((x) => x.host === h),
      sendCommand: async (host: string, op: string, args: unknown) => {
        sent.push({ host, op, args });
        return `c-${sent.length}`;
      },
    };
    const policy = { buildOn: "canary" as const, allowMoreThanLock: false, allowForks: opts.allowForks ?? false };
    const service = new PreviewService({ client, fleet: fleet as never, log: pino({ level: "silent" }), now: () => new Date(at), policy, gating: "all", ...(opts.repo ? { repo: opts.repo } : {}) });
    return { client, sent, service };
  }

  it("asks every host for a preview of a pending PR, republishes accepted previews and keeps the summary current", async () => {
    const { client, sent, service } = setup();
    await service.start();
    client.deliver(t.expected(), expected(pending(SHA1)));
    await service.idle();
    expect(sent.map((s) => s.host).sort()).toEqual(["alpha", "beta", "builder"]);
    expect(sent.find((s) => s.host === "builder")!.args).toMatchObject({ forHosts: [{ host: "laptop" }] });
    // The same head again asks nobody twice.
    client.deliver(t.expected(), expected(pending(SHA1)));
    await service.idle();
    expect(sent).toHaveLength(3);

    client.deliver(t.hostPreview("alpha", 7, "alpha"), preview("alpha", SHA1));
    client.deliver(t.hostPreview("beta", 7, "beta"), preview("beta", SHA1, { outcome: "not-affected", affected: false, builds: null, packages: [] }));
    client.deliver(t.hostPreview("beta", 7, "alpha"), preview("alpha", SHA1, { builtOn: "beta", outcome: "does-not-build" })); // not a builder: ignored
    client.deliver(t.hostPreview("builder", 7, "laptop"), preview("laptop", SHA1, { builtOn: "builder" }));
    await service.idle();
    expect(JSON.parse(client.retained.get(t.preview(7, "alpha"))!)).toMatchObject({ outcome: "affected", builtOn: "alpha" });
    expect(JSON.parse(client.retained.get(t.preview(7, "laptop"))!)).toMatchObject({ builtOn: "builder" });
    const s = PreviewSummary.parse(JSON.parse(client.retained.get(t.previewSummary(7))!));
    expect(s.text).toBe("affects 2 of 4 hosts · 1 not previewed yet · built on 2 of 2 · hello 2.12 → 2.13");
  });

  it("a new head invalidates the old previews; a PR no longer pending is cleared", async () => {
    const { client, sent, service } = setup();
    await service.start();
    client.deliver(t.expected(), expected(pending(SHA1)));
    client.deliver(t.hostPreview("alpha", 7, "alpha"), preview("alpha", SHA1));
    await service.idle();
    client.deliver(t.expected(), expected(pending(SHA2)));
    await service.idle();
    expect(sent).toHaveLength(6);
    expect(client.retained.has(t.preview(7, "alpha"))).toBe(false);
    client.deliver(t.hostPreview("alpha", 7, "alpha"), preview("alpha", SHA1)); // late, old head
    await service.idle();
    expect(client.retained.has(t.preview(7, "alpha"))).toBe(false);
    expect(JSON.parse(client.retained.get(t.previewSummary(7))!)).toMatchObject({ headSha: SHA2, hosts: { previewed: 0 } });
    client.deliver(t.expected(), expected(null));
    await service.idle();
    expect(client.retained.size).toBe(0);
  });

  it("does not preview a fork PR and says why in the summary; automatic mode refuses it (unless forks are allowed)", async () => {
    const { client, sent, service } = setup();
    await service.start();
    client.deliver(t.expected(), expected({ ...pending(SHA1), headRepo: "Mallory/fleet" }));
    await service.idle();
    expect(sent).toHaveLength(0);
    const s = PreviewSummary.parse(JSON.parse(client.retained.get(t.previewSummary(7))!));
    expect(s.notPreviewed).toMatch(/PR #7 comes from a fork: not previewed \(the hub's previews\.allowForks is off\)/);
    expect(s.text).toBe(s.notPreviewed);
    expect(service.mergeVerdict(7, SHA1)).toEqual({ ok: false, wait: false, reason: expect.stringContaining("was not previewed: PR #7 comes from a fork") });
    expect(service.mergeVerdict(7, SHA1, "ignore")).toEqual({ ok: true });

    // The fleet's own repository (GitHub names ignore case) is not a fork; a new head is previewed.
    client.deliver(t.expected(), expected({ ...pending(SHA2), headRepo: "ACME/Fleet" }));
    await service.idle();
    expect(sent).toHaveLength(3);
    expect(JSON.parse(client.retained.get(t.previewSummary(7))!).notPreviewed).toBeUndefined();

    const allowing = setup({ allowForks: true });
    await allowing.service.start();
    allowing.client.deliver(t.expected(), expected({ ...pending(SHA1), headRepo: "mallory/fleet" }));
    await allowing.service.idle();
    expect(allowing.sent).toHaveLength(3);
  });

  it("with the repository configured (the hub), a retained fleet/expected naming another one does not make the fleet's own PRs forks", async () => {
    const { client, sent, service } = setup({ repo: "acme/fleet" });
    await service.start();
    // Another publisher's retained copy (the test fleet publishes its origin's path) arrives first...
    client.deliver(t.expected(), { ...expected(null), repo: "/srv/fleet/origin.git" });
    await service.idle();
    // ...and the pending PR from the fleet's own repository is asked for (by the merge node, say) before the hub's copy is read.
    await service.request({ ...pending(SHA1), headRepo: "acme/fleet" });
    expect(sent.map((s) => s.host).sort()).toEqual(["alpha", "beta", "builder"]);
    expect(service.state(7)?.summary.notPreviewed).toBeUndefined();
  });

  it("merge verdict: waits for the previews of the head asked about, refuses one that does not build", async () => {
    const { client, service } = setup();
    await service.start();
    expect(service.gating).toBe("all");
    // Without a gating of its own: what the build policy can prove.
    const gatingOf = (buildOn: "all" | "canary" | "none") => new PreviewService({ client, fleet: {} as never, log: pino({ level: "silent" }), policy: { buildOn, allowForks: false, allowMoreThanLock: false } }).gating;
    expect([gatingOf("all"), gatingOf("canary"), gatingOf("none")]).toEqual(["all", "canary", "ignore"]);
    expect(service.mergeVerdict(7, SHA1)).toMatchObject({ ok: false, wait: true, reason: "PR #7 at 1111111 has not been previewed yet" });
    client.deliver(t.expected(), expected(pending(SHA1)));
    client.deliver(t.hostPreview("alpha", 7, "alpha"), preview("alpha", SHA1));
    await service.idle();
    // beta and builder (online) and laptop (the builder previews it) are still to come.
    const waiting = service.mergeVerdict(7, SHA1);
    expect(waiting).toMatchObject({ ok: false, wait: true });
    expect(waiting.ok || waiting.reason).toMatch(/beta: preview pending.*laptop: preview pending/);
    expect(service.mergeVerdict(7, SHA1, "canary")).toEqual({ ok: true });
    // A head the service has not seen yet: wait for it, never judge it by another head's previews.
    expect(service.mergeVerdict(7, SHA2, "canary")).toMatchObject({ ok: false, wait: true });

    client.deliver(t.hostPreview("beta", 7, "beta"), preview("beta", SHA1, { outcome: "does-not-build", affected: null, builds: false, error: "error: builder for openssl-3.0.16 failed" }));
    await service.idle();
    expect(service.mergeVerdict(7, SHA1)).toEqual({ ok: false, wait: false, reason: expect.stringContaining("beta: does not build (error: builder for openssl-3.0.16 failed)") });
  });

  it("keeps what a merged PR's previews said for its rollout (not affected, reboots) after it stops being pending", async () => {
    const { client, service } = setup();
    await service.start();
    client.deliver(t.expected(), expected(pending(SHA1)));
    client.deliver(t.hostPreview("alpha", 7, "alpha"), preview("alpha", SHA1, { reboot: { needed: true, changed: ["kernel"] } }));
    client.deliver(t.hostPreview("beta", 7, "beta"), preview("beta", SHA1, { outcome: "not-affected", affected: false, builds: null, packages: [] }));
    await service.idle();
    const hints = { pr: 7, headSha: SHA1, notAffected: ["beta"], reboot: { alpha: ["kernel"] } };
    expect(service.planHints(7, SHA1)).toEqual(hints);
    client.deliver(t.expected(), expected(null)); // merged: no longer pending
    await service.idle();
    expect(service.planHints(7, SHA1)).toEqual(hints);
    expect(service.planHints(7, SHA2)).toBeUndefined();
  });
});

