import { describe, expect, it } from "vitest";
import {
  buildPreviewSummary,
  formatSizeDelta,
  HostPreview,
  lastLines,
  parseDiffClosures,
  parseDryActivate,
  parseDryRun,
  PreviewArgs,
  previewMergeVerdict,
  rebootNeedOf,
  Topics,
  truncateText,
  fitPreviewSummary,
  type PreviewGateHost,
} from "../../protocol/index.js";

// Captured from Debian's Nix 2.8 (`nix store diff-closures A B | cat -v` shows the colours it
// writes even into a pipe) on real closures built for this test.
const ESC = "\x1b";
const DIFF_CLOSURES_BUMP = [
  `hello: 2.12 → 2.13, ${ESC}[31;1m+47.9 KiB${ESC}[0m`,
  "linux: 6.6.58 → 6.6.60",
  "newtool: ∅ → 3.1",
  "oldtool: 1.0 → ∅",
  "",
].join("\n");
const DIFF_CLOSURES_SIZE = [`data: ${ESC}[32;1m-195.3 KiB${ESC}[0m`, "libfoo: 2.0 → 1.1, 1.2", ""].join("\n");

describe("parseDiffClosures", () => {
  it("reads version bumps, additions, removals and size deltas as Nix 2.8 prints them", () => {
    expect(parseDiffClosures(DIFF_CLOSURES_BUMP)).toEqual([
      { name: "hello", old: ["2.12"], new: ["2.13"], sizeDeltaBytes: Math.round(47.9 * 1024) },
      { name: "linux", old: ["6.6.58"], new: ["6.6.60"] },
      { name: "newtool", old: [], new: ["3.1"] },
      { name: "oldtool", old: ["1.0"], new: [] },
    ]);
  });

  it("reads size-only lines, shrinking sizes and several versions on one side", () => {
    expect(parseDiffClosures(DIFF_CLOSURES_SIZE)).toEqual([
      { name: "data", old: [], new: [], sizeDeltaBytes: -Math.round(195.3 * 1024) },
      { name: "libfoo", old: ["2.0"], new: ["1.1", "1.2"] },
    ]);
  });

  it("reads ε (a package without version) as the empty version", () => {
    expect(parseDiffClosures("etc: ε → 1.0\n")).toEqual([{ name: "etc", old: [""], new: ["1.0"] }]);
  });

  it("ignores lines that are not package changes", () => {
    expect(parseDiffClosures("warning: Git tree is dirty\nerror: nothing\nfoo bar: 1 → 2\n")).toEqual([]);
    expect(parseDiffClosures("")).toEqual([]);
  });

  it("stays bounded on huge input (lines and line length)", () => {
    const huge = Array.from({ length: 20_000 }, (_, i) => `p${i}: 1 → 2`).join("\n");
    expect(parseDiffClosures(huge)).toHaveLength(5000);
    const long = parseDiffClosures(`x: 1 → ${"9".repeat(100_000)}`);
    expect(long[0]!.new[0]!.length).toBeLessThan(2000);
  });
});

// The lines NixOS's switch-to-configuration prints for dry-activate (on stderr).
const DRY_ACTIVATE = [
  "would stop the following units: old-thing.service",
  "would NOT stop the following changed units: getty@tty1.service",
  "would activate the configuration...",
  "would restart systemd",
  "would restart the following units: nginx.service, sshd.service",
  "would start the following units: new-thing.service",
  "would reload the following units: dbus.service",
  "",
].join("\n");

describe("parseDryActivate", () => {
  it("reads each unit list and the systemd re-exec", () => {
    expect(parseDryActivate(DRY_ACTIVATE)).toEqual({
      stop: ["old-thing.service"],
      restart: ["nginx.service", "sshd.service"],
      start: ["new-thing.service"],
      reload: ["dbus.service"],
      skipped: ["getty@tty1.service"],
      restartSystemd: true,
    });
  });

  it("an unchanged system prints nothing to do", () => {
    expect(parseDryActivate("would activate the configuration...\n")).toEqual({ stop: [], restart: [], start: [], reload: [], skipped: [], restartSystemd: false });
  });
});

describe("parseDryRun", () => {
  it("counts derivations to build and paths to fetch (Nix 2.8 wording)", () => {
    const text = [
      "these 3 derivations will be built:",
      "  /nix/store/9xa3k1fdcmym1mq1b69v0lpcyijwgng3-linux-6.6.61.drv",
      "  /nix/store/i4i3vijsl2ckmp5k72z1yz9353ddpr3h-hello-2.14.drv",
      "  /nix/store/c2ahzf7252rsg5rzhwgig27clpm333wr-nixos-system-alpha-24.11.drv",
      "these 2 paths will be fetched (1.20 MiB download, 5.00 MiB unpacked):",
      "  /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-glibc-2.39",
      "  /nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-bash-5.2",
    ].join("\n");
    expect(parseDryRun(text)).toEqual({ toBuild: 3, toFetch: 2 });
    expect(parseDryRun("This derivation will be built:\n  /nix/store/x-a.drv\n")).toEqual({ toBuild: 1, toFetch: 0 });
    expect(parseDryRun("")).toEqual({ toBuild: 0, toFetch: 0 });
  });
});

describe("lastLines", () => {
  it("keeps the last non-empty lines without colours", () => {
    expect(lastLines(`a\n\nb\n${ESC}[31;1merror:${ESC}[0m c\n\n`, 2)).toBe("b\nerror: c");
  });
});

describe("the reboot rule", () => {
  const paths = (m: Record<string, string | null>) => (c: string) => m[c] ?? null;
  it("needs a reboot when kernel, initrd or modules differ, or appear or vanish", () => {
    const booted = paths({ kernel: "/nix/store/k1", initrd: "/nix/store/i1", "kernel-modules": "/nix/store/m1" });
    const comps = ["kernel", "initrd", "kernel-modules"];
    expect(rebootNeedOf(comps, booted, booted)).toEqual({ needed: false, changed: [] });
    expect(rebootNeedOf(comps, booted, paths({ kernel: "/nix/store/k2", initrd: "/nix/store/i1", "kernel-modules": "/nix/store/m2" }))).toEqual({
      needed: true,
      changed: ["kernel", "kernel-modules"],
    });
    expect(rebootNeedOf(comps, booted, paths({ kernel: "/nix/store/k1", initrd: "/nix/store/i1" }))).toEqual({ needed: true, changed: ["kernel-modules"] });
    expect(rebootNeedOf(comps, paths({}), paths({}))).toEqual({ needed: false, changed: [] });
  });
});

const SHA1 = "1".repeat(40);
const SHA2 = "2".repeat(40);
const at = "2026-12-04T10:00:00.000Z";

function preview(host: string, over: Partial<HostPreview> = {}): HostPreview {
  return HostPreview.parse({
    pr: 7,
    host,
    headSha: SHA1,
    outcome: "affected",
    summary: "",
    affected: true,
    builds: true,
    builtOn: host,
    startedAt: at,
    finishedAt: at,
    ...over,
  });
}

describe("buildPreviewSummary", () => {
  const alpha = preview("alpha", {
    packages: [
      { name: "hello", old: ["2.12"], new: ["2.13"], sizeDeltaBytes: 49050 },
      { name: "linux", old: ["6.6.58"], new: ["6.6.60"] },
    ],
    closureSizeBefore: 1000,
    closureSizeAfter: 1000 + 140 * 1024 * 1024,
    reboot: { needed: true, changed: ["kernel"] },
  });
  const beta = preview("beta", { outcome: "not-affected", affected: false, builds: null });
  const gamma = preview("gamma", { outcome: "does-not-build", affected: null, builds: false, error: "building...\nerror: configuration of gamma does not build: injected" });

  it("says what the update does to the fleet in one line", () => {
    const s = buildPreviewSummary(7, SHA1, ["alpha", "beta", "gamma"], [alpha, beta, gamma], { now: new Date(at) });
    expect(s.text).toBe("affects 2 of 3 hosts · 1 needs a reboot · does not build on gamma · hello 2.12 → 2.13, linux 6.6.58 → 6.6.60 +140 MiB");
    expect(s.hosts).toEqual({ total: 3, previewed: 3, affected: 1, notAffected: 1, doesNotBuild: 1, pending: 0 });
    expect(s.notAffectedHosts).toEqual(["beta"]);
    expect(s.rebootHosts).toEqual(["alpha"]);
    expect(s.failedHosts).toEqual([{ host: "gamma", outcome: "does-not-build", reason: "error: configuration of gamma does not build: injected" }]);
    expect(s.buildsEverywhere).toBe(false);
  });

  it("builds everywhere when every affected host built; counts hosts not previewed yet", () => {
    const s = buildPreviewSummary(7, SHA1, ["alpha", "beta"], [alpha, beta]);
    expect(s.text).toBe("affects 1 of 2 hosts · 1 needs a reboot · builds everywhere · hello 2.12 → 2.13, linux 6.6.58 → 6.6.60 +140 MiB");
    const pending = buildPreviewSummary(7, SHA1, ["alpha", "beta", "delta"], [alpha, beta]);
    expect(pending.hosts.pending).toBe(1);
    expect(pending.buildsEverywhere).toBe(false);
    expect(pending.text).toContain("1 not previewed yet");
  });

  it("ignores previews of an older head (a new head invalidates them)", () => {
    const s = buildPreviewSummary(7, SHA2, ["alpha", "beta"], [alpha, beta]);
    expect(s.hosts.previewed).toBe(0);
    expect(s.hosts.pending).toBe(2);
  });

  it("names the most common package changes first and ends in … when there are more", () => {
    const many = ["a", "b", "c", "d", "e"].map((n) => ({ name: n, old: ["1"], new: ["2"] }));
    const h1 = preview("h1", { packages: many });
    const h2 = preview("h2", { packages: [{ name: "e", old: ["1"], new: ["2"] }] });
    const s = buildPreviewSummary(7, SHA1, ["h1", "h2"], [h1, h2]);
    expect(s.packages[0]).toEqual({ name: "e", old: ["1"], new: ["2"], hosts: ["h1", "h2"] });
    expect(s.text).toBe("affects 2 of 2 hosts · builds everywhere · e 1 → 2, a 1 → 2, b 1 → 2, c 1 → 2, …");
  });
});

describe("formatting", () => {
  it("formats size changes in binary units", () => {
    expect(formatSizeDelta(140 * 1024 * 1024)).toBe("+140 MiB");
    expect(formatSizeDelta(-49050)).toBe("-48 KiB");
    expect(formatSizeDelta(1536 * 1024)).toBe("+1.5 MiB");
    expect(formatSizeDelta(3 * 1024 ** 3)).toBe("+3 GiB");
  });
  it("truncates to Home Assistant's 255 characters", () => {
    const t = truncateText("x".repeat(300), 255);
    expect([...t].length).toBe(255);
    expect(t.endsWith("…")).toBe(true);
    expect(truncateText("short", 255)).toBe("short");
  });
  it("fits a summary into Home Assistant's 255 characters: headline whole, as many packages as fit, +N more, the size", () => {
    const many = Array.from({ length: 60 }, (_, i) => ({ name: `package-number-${i}`, old: ["1.0"], new: ["1.1"] }));
    const s = buildPreviewSummary(7, SHA1, ["h1"], [preview("h1", { packages: many, closureSizeBefore: 0, closureSizeAfter: 140 * 1024 * 1024 })]);
    const line = fitPreviewSummary(s, 255);
    expect([...line].length).toBeLessThanOrEqual(255);
    expect(line).toMatch(/^affects 1 of 1 host · builds everywhere · package-number-\d+ 1\.0 → 1\.1, .*, \+\d+ more \+140 MiB$/);
    // Everything fits: no "more", all packages named.
    const few = buildPreviewSummary(7, SHA1, ["h1"], [preview("h1", { packages: [{ name: "hello", old: ["2.12"], new: ["2.13"] }] })]);
    expect(fitPreviewSummary(few, 255)).toBe("affects 1 of 1 host · builds everywhere · hello 2.12 → 2.13");
    // A PR not previewed says why; a summary without a headline (an older hub's) is cut at the end.
    expect(fitPreviewSummary({ ...few, notPreviewed: "PR #7 comes from a fork: not previewed" }, 255)).toBe("PR #7 comes from a fork: not previewed");
    expect([...fitPreviewSummary({ ...s, headline: undefined }, 40)]).toHaveLength(40);
  });
});

describe("previewMergeVerdict", () => {
  const hosts: PreviewGateHost[] = [
    { host: "alpha", canary: true, reachable: true },
    { host: "beta", canary: false, reachable: true },
    { host: "gamma", canary: false, reachable: true },
    { host: "laptop", canary: false, reachable: false },
  ];
  const ok = [preview("alpha"), preview("beta", { outcome: "not-affected", affected: false, builds: null })];
  const broken = preview("gamma", { outcome: "does-not-build", affected: null, builds: false, error: "error: gamma is broken" });

  it("all: refuses while an affected reachable host does not build, with the reason", () => {
    const v = previewMergeVerdict("all", 7, SHA1, hosts, [...ok, broken]);
    expect(v).toEqual({ ok: false, wait: false, reason: expect.stringContaining("gamma: does not build (error: gamma is broken)") });
  });
  it("all: a reachable host without a preview makes it wait; an unreachable one does not", () => {
    expect(previewMergeVerdict("all", 7, SHA1, hosts, ok)).toEqual({ ok: false, wait: true, reason: expect.stringContaining("gamma: preview pending") });
    expect(previewMergeVerdict("all", 7, SHA1, hosts, [...ok, preview("gamma")])).toEqual({ ok: true });
  });
  it("all: an affected host that was only evaluated has not proven it builds", () => {
    expect(previewMergeVerdict("all", 7, SHA1, hosts, [...ok, preview("gamma", { builds: null })])).toEqual({ ok: false, wait: false, reason: expect.stringContaining("gamma: affected but not built") });
  });
  it("canary looks at canaries only; ignore merges regardless", () => {
    expect(previewMergeVerdict("canary", 7, SHA1, hosts, [...ok, broken])).toEqual({ ok: true });
    expect(previewMergeVerdict("ignore", 7, SHA1, hosts, [broken])).toEqual({ ok: true });
  });
  it("previews of another head do not count", () => {
    expect(previewMergeVerdict("canary", 7, SHA2, hosts, ok)).toEqual({ ok: false, wait: true, reason: expect.stringContaining("alpha: preview pending") });
  });
  it("says why in Nix's first error line, without store path hashes", () => {
    const error = ["error: builder for '/nix/store/" + "a".repeat(32) + "-openssl-3.0.16.drv' failed with exit code 1;", "       last 1 log lines:", "       > openssl-3.0.16 does not build", "error: 1 dependencies of derivation '/nix/store/" + "b".repeat(32) + "-system-gamma.drv' failed to build"].join("\n");
    const v = previewMergeVerdict("all", 7, SHA1, hosts, [...ok, preview("gamma", { outcome: "does-not-build", affected: null, builds: false, error })]);
    expect(v).toEqual({ ok: false, wait: false, reason: expect.stringContaining("gamma: does not build (error: builder for 'openssl-3.0.16.drv' failed with exit code 1;)") });
  });
  it("a host that does not build refuses even while others are pending (waiting cannot help)", () => {
    const v = previewMergeVerdict("all", 7, SHA1, hosts, [ok[0]!, broken]);
    expect(v).toEqual({ ok: false, wait: false, reason: expect.stringMatching(/gamma: does not build .*beta: preview pending/) });
  });
});

describe("preview topics and args", () => {
  const t = new Topics();
  it("builds and parses the preview topics", () => {
    expect(t.preview(12, "alpha")).toBe("lockstep/v1/fleet/previews/12/alpha");
    expect(t.previewSummary(12)).toBe("lockstep/v1/fleet/preview-summaries/12");
    expect(t.parse(t.preview(12, "alpha"))).toEqual({ kind: "preview", pr: 12, host: "alpha" });
    expect(t.parse(t.previewSummary(12))).toEqual({ kind: "previewSummary", pr: 12 });
    expect(t.hostPreview("builder", 12, "laptop")).toBe("lockstep/v1/hosts/builder/previews/12/laptop");
    expect(t.parse(t.hostPreview("builder", 12, "laptop"))).toEqual({ kind: "hostPreview", builtOn: "builder", pr: 12, host: "laptop" });
    expect(t.parse("lockstep/v1/fleet/previews/012/alpha")).toBeNull();
    expect(t.parse("lockstep/v1/fleet/previews/12/Alpha")).toBeNull();
    expect(t.parse("lockstep/v1/fleet/preview-summaries/x")).toBeNull();
  });
  it("validates preview args", () => {
    expect(PreviewArgs.parse({ pr: 3, headSha: SHA1 })).toEqual({ pr: 3, headSha: SHA1, allowMoreThanLock: false });
    expect(PreviewArgs.safeParse({ pr: 3, headSha: "abc" }).success).toBe(false);
    expect(PreviewArgs.safeParse({ pr: 3, headSha: SHA1, forHosts: [{ host: "../x" }] }).success).toBe(false);
    expect(PreviewArgs.safeParse({ pr: 3, headSha: SHA1, forHosts: [{ host: "laptop", systemPath: "/etc/passwd" }] }).success).toBe(false);
    expect(PreviewArgs.parse({ pr: 3, headSha: SHA1, forHosts: [{ host: "laptop", systemPath: "/nix/store/rwykzvd1kpg7z53qy4ds661l2vfls2x9-nixos-system-laptop-24.11" }] }).forHosts).toHaveLength(1);
    expect(PreviewArgs.safeParse({ pr: 3, headSha: SHA1, shell: "rm -rf /" }).success).toBe(false);
  });
});
