/**
 * The preview table as one PR comment, against the local GitHub (responses checked against GitHub's
 * OpenAPI description): the hub's PreviewService (fed agents' previews over a fake MQTT client)
 * drives commentOnPreviews, which writes through the real GitHubClient. The first finished preview
 * creates one comment, a changed preview edits that same comment, an unchanged one sends no request,
 * and a restarted hub finds its comment by the hidden marker instead of adding another.
 */
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Topics, type HostPreview, type PendingUpdate } from "../../protocol/index.js";
import { PreviewService } from "../../rollout/preview-service.js";
import { FakePreviewMqtt as FakeMqtt, hostSnapshot } from "../support/preview-mqtt.js";
import { commentOnPreviews, PREVIEW_COMMENT_MARKER, previewCommentBody, PreviewComments } from "../../github/preview-comment.js";
import { startGitHubHarness, type GitHubHarness } from "../github/harness.js";

const t = new Topics();
const at = "2026-12-04T10:00:00.000Z";
const log = pino({ level: "silent" });


const snapshot = (host: string) => hostSnapshot(host, true, { os: "nixos" });

describe("the preview comment on the PR (local GitHub)", () => {
  let h: GitHubHarness;
  let pr: number;
  let heads: string[];
  const client = new FakeMqtt();
  const fleet = { hosts: () => ["alpha", "beta", "gamma"].map(snapshot), host: (id: string) => snapshot(id), sendCommand: async () => "c-1" };
  const service = new PreviewService({ client, fleet: fleet as never, log });
  let comments: PreviewComments;

  const pending = (headSha: string): PendingUpdate => ({ number: pr, title: "flake.lock: Update", url: "https://example.invalid", headSha, headBranch: "update_flake_lock_action", openedAt: at, lockDiff: { added: [], removed: [], updated: [] }, ci: { state: "success" }, superseded: [] });
  const preview = (host: string, headSha: string, over: Partial<HostPreview>): HostPreview => ({ pr, host, headSha, outcome: "affected", summary: "", affected: true, builds: true, packages: [], reboot: { needed: false, changed: [] }, units: null, builtOn: host, startedAt: at, finishedAt: at, ...over });
  /** What three agents report for a head: alpha bumps hello (and `linux` when asked), beta is not affected, gamma does not build. */
  function report(headSha: string, opts: { kernel?: boolean; finishedAt?: string } = {}): void {
    const finishedAt = opts.finishedAt ?? at;
    const packages = [{ name: "hello", old: ["2.12"], new: ["2.13"], sizeDeltaBytes: 60_000 }, ...(opts.kernel ? [{ name: "linux", old: ["6.6.58"], new: ["6.6.60"] }] : [])];
    client.deliver(t.hostPreview("alpha", pr, "alpha"), preview("alpha", headSha, { packages, closureSizeBefore: 1_000_000, closureSizeAfter: 1_060_000, reboot: { needed: !!opts.kernel, changed: opts.kernel ? ["kernel"] : [] }, finishedAt }));
    client.deliver(t.hostPreview("beta", pr, "beta"), preview("beta", headSha, { outcome: "not-affected", affected: false, builds: null, finishedAt }));
    client.deliver(t.hostPreview("gamma", pr, "gamma"), preview("gamma", headSha, { outcome: "does-not-build", affected: null, builds: false, reboot: null, error: "building openssl-3.0.16\nerror: openssl-3.0.16 does not build | marked broken", finishedAt }));
  }
  const expectedFor = (headSha: string) => client.deliver(t.expected(), { repo: "acme/fleet", branch: "main", headCommit: "9".repeat(40), lockHash: "x", pendingUpdate: pending(headSha), updatedAt: at });
  const commentRequests = () => h.server.requests.filter((r) => r.route.includes("comments"));
  const settled = async (c = comments) => {
    await service.idle();
    await c.idle();
  };

  beforeAll(async () => {
    h = await startGitHubHarness();
    h.fleet.bumpInput("nixpkgs");
    const first = h.fleet.lockUpdateBranch();
    pr = await h.server.openPullRequest({ head: first.branch, title: "flake.lock: Update", labels: ["automated", "dependencies"], body: first.prBody });
    h.fleet.bumpInput("nixpkgs");
    heads = [first.sha, h.fleet.lockUpdateBranch().sha];
    comments = new PreviewComments(h.client, log);
    await service.start();
    commentOnPreviews(service, comments, log);
  }, 120_000);

  afterAll(async () => {
    service.stop();
    await h?.stop();
  });

  it("writes nothing while hosts are still previewing; the finished preview creates one comment with the table", async () => {
    expectedFor(heads[0]!);
    client.deliver(t.hostPreview("alpha", pr, "alpha"), preview("alpha", heads[0]!, {}));
    await settled();
    expect(commentRequests()).toEqual([]);
    report(heads[0]!);
    await settled();
    const all = h.server.issueComments(pr);
    expect(all).toHaveLength(1);
    const body = all[0]!.body;
    expect(body.startsWith(PREVIEW_COMMENT_MARKER)).toBe(true);
    expect(body).toContain(`Lockstep preview of \`${heads[0]!.slice(0, 7)}\``);
    expect(body).toContain("| host | affected | builds | reboot | package changes | size |");
    expect(body).toContain("| alpha | yes | yes | no | hello 2.12 → 2.13 +59 KiB | +59 KiB |");
    expect(body).toContain("| beta | no | — | no | — |");
    expect(body).toContain("| gamma | ? | **no** | ? | **does not build** |");
    // The build error, fenced, with the agent's pipe left as text.
    expect(body).toContain("<details><summary>gamma: why</summary>");
    expect(body).toContain("error: openssl-3.0.16 does not build | marked broken");
    expect(commentRequests().map((r) => `${r.method} ${r.status}`)).toEqual(["GET 200", "POST 201"]);
    expect(h.violations()).toEqual([]);
  });

  it("an unchanged preview (an agent reporting the same again) sends no request", async () => {
    const before = h.server.requests.length;
    report(heads[0]!, { finishedAt: "2026-12-04T10:05:00.000Z" });
    await settled();
    expect(h.server.requests.length).toBe(before);
    expect(h.server.issueComments(pr)).toHaveLength(1);
  });

  it("a changed preview (a new head) edits the same comment in place", async () => {
    const { id, body: old } = h.server.issueComments(pr)[0]!;
    h.server.resetStats();
    expectedFor(heads[1]!);
    report(heads[1]!, { kernel: true });
    await settled();
    const all = h.server.issueComments(pr);
    expect(all).toHaveLength(1);
    expect(all[0]!.id).toBe(id);
    expect(all[0]!.body).not.toBe(old);
    expect(all[0]!.body).toContain(`Lockstep preview of \`${heads[1]!.slice(0, 7)}\``);
    expect(all[0]!.body).toContain("| alpha | yes | yes | yes (kernel) | hello 2.12 → 2.13 +59 KiB<br>linux 6.6.58 → 6.6.60 | +59 KiB |");
    expect(commentRequests().map((r) => `${r.method} ${r.status}`)).toEqual(["PATCH 200"]);
    expect(h.violations()).toEqual([]);
  });

  it("a restarted hub finds its comment by the marker: the same preview writes nothing, another edits it", async () => {
    const state = service.state(pr)!;
    const again = new PreviewComments(h.client, log);
    h.server.resetStats();
    expect(await again.publish(pr, previewCommentBody(state.summary, state.previews))).toBe("unchanged");
    expect(commentRequests().map((r) => r.method)).toEqual(["GET"]);
    expect(await again.publish(pr, previewCommentBody({ ...state.summary, text: "affects 1 of 3 hosts" }, state.previews))).toBe("updated");
    expect(commentRequests().map((r) => r.method)).toEqual(["GET", "PATCH"]);
    expect(h.server.issueComments(pr)).toHaveLength(1);
    expect(h.violations()).toEqual([]);
  });
});
