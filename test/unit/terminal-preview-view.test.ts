/**
 * `lockstep pr`'s preview lines: the summary of the pending head's preview and one line per host
 * (outcome, builds, reboot, size, the package changes or the error's last line).
 */
import { describe, expect, it } from "vitest";
import { buildPreviewSummary, type FleetExpected, type HostPreview } from "../../protocol/index.js";
import { pendingUpdateText, previewText } from "../../hub/terminal/views.js";

const HEAD = "a".repeat(40);
const at = "2026-12-04T10:00:00.000Z";
const base = (host: string, over: Partial<HostPreview>): HostPreview => ({ pr: 7, host, headSha: HEAD, outcome: "affected", summary: "", affected: true, builds: true, packages: [], reboot: null, units: null, builtOn: host, startedAt: at, finishedAt: at, ...over });
const hosts = [
  base("alpha", { packages: [{ name: "hello", old: ["2.12"], new: ["2.13"], sizeDeltaBytes: 61_440 }], closureSizeBefore: 1_000_000, closureSizeAfter: 1_061_440, reboot: { needed: true, changed: ["kernel"] } }),
  base("beta", { outcome: "not-affected", affected: false, builds: null }),
  base("gamma", { outcome: "does-not-build", affected: null, builds: false, builtOn: "builder", error: "building openssl\nerror: openssl-3.0.16 does not build" }),
];
const summary = buildPreviewSummary(7, HEAD, ["alpha", "beta", "gamma"], hosts, { now: new Date(at) });
const expected: FleetExpected = {
  repo: "acme/fleet",
  branch: "main",
  headCommit: "9".repeat(40),
  lockHash: "x",
  updatedAt: at,
  pendingUpdate: { number: 7, title: "flake.lock: Update", url: "https://example.invalid/pr/7", headSha: HEAD, headBranch: "update", openedAt: at, lockDiff: { added: [], removed: [], updated: [] }, ci: { state: "success" }, superseded: [] },
};

describe("lockstep pr: the preview", () => {
  it("prints the summary and one line per host", () => {
    const text = previewText({ summary, hosts });
    const lines = text.split("\n");
    expect(lines[0]).toBe(`  preview (done): ${summary.text}`);
    expect(summary.text).toContain("does not build on gamma");
    expect(lines[1]).toMatch(/^ {4}HOST +PREVIEW +BUILDS +REBOOT +SIZE +CHANGES$/);
    expect(lines[2]).toMatch(/^ {4}alpha +affected +yes +yes \(kernel\) +\+60 KiB +hello 2\.12 → 2\.13 \+60 KiB$/);
    expect(lines[3]).toMatch(/^ {4}beta +not affected +- +- +- +-$/);
    expect(lines[4]).toMatch(/^ {4}gamma \(built on builder\) +does not build +- +- +- +error: openssl-3\.0\.16 does not build$/);
  });

  it("says how far it got while hosts still preview, and when there is none yet", () => {
    const partial = buildPreviewSummary(7, HEAD, ["alpha", "beta", "gamma"], hosts.slice(0, 1), { now: new Date(at) });
    expect(previewText({ summary: partial, hosts: hosts.slice(0, 1) }).split("\n")[0]).toBe(`  preview (1 of 3 hosts so far): ${partial.text}`);
    expect(pendingUpdateText(expected)).toContain("  preview: none for this head yet");
    expect(pendingUpdateText(expected, { summary, hosts })).toContain(`  preview (done): ${summary.text}`);
  });
});
