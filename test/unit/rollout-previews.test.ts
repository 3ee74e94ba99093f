import { describe, expect, it } from "vitest";
import { HostInfo, Topics, type HostPreview } from "../../protocol/index.js";
import { acceptHostPreview, comesFromFork, gateHosts, planPreviews, PreviewBook, type PreviewHost } from "../../rollout/previews.js";

const SHA1 = "1".repeat(40);
const SHA2 = "2".repeat(40);
const at = "2026-12-04T10:00:00.000Z";
const STORE = "/nix/store/rwykzvd1kpg7z53qy4ds661l2vfls2x9-lockstep-system-laptop";

function host(name: string, online: boolean, more: Partial<HostInfo> = {}): PreviewHost {
  return {
    online,
    info: HostInfo.parse({ host: name, hostname: name, os: "generic", agentVersion: "1", branch: "main", startedAt: at, updatedAt: at, ...more }),
  };
}

function preview(h: string, over: Partial<HostPreview> = {}): HostPreview {
  return { pr: 7, host: h, headSha: SHA1, outcome: "affected", summary: "", affected: true, builds: true, packages: [], reboot: null, units: null, builtOn: h, startedAt: at, finishedAt: at, ...over };
}

describe("planPreviews", () => {
  const fleet = [host("alpha", true, { canary: true }), host("beta", true), host("builder-1", true, { tags: ["builder"] }), host("laptop", false, { systemPath: STORE }), host("pi", false)];

  it("online hosts preview themselves (the canary builds); a builder previews the offline ones", () => {
    const plan = planPreviews({ number: 7, headSha: SHA1 }, fleet);
    expect(plan.ok).toBe(true);
    if (!plan.ok) return;
    const by = Object.fromEntries(plan.requests.map((r) => [r.host, r.args]));
    expect(by.alpha).toEqual({ pr: 7, headSha: SHA1, build: true, allowMoreThanLock: false });
    expect(by.beta).toEqual({ pr: 7, headSha: SHA1, build: false, allowMoreThanLock: false });
    expect(by["builder-1"]).toEqual({ pr: 7, headSha: SHA1, build: true, allowMoreThanLock: false, forHosts: [{ host: "laptop", systemPath: STORE }, { host: "pi" }] });
    expect(plan.unreachable).toEqual([]);
  });

  it("without a builder, offline hosts are unreachable; fork PRs are refused with the reason", () => {
    const plan = planPreviews({ number: 7, headSha: SHA1 }, [host("alpha", true), host("laptop", false)]);
    expect(plan).toMatchObject({ ok: true, unreachable: ["laptop"] });
    expect(planPreviews({ number: 7, headSha: SHA1, fromFork: true }, fleet)).toEqual({ ok: false, reason: expect.stringContaining("comes from a fork") });
    expect(planPreviews({ number: 7, headSha: SHA1, fromFork: true }, fleet, { buildOn: "all", allowForks: true, allowMoreThanLock: true }).ok).toBe(true);
  });
});

describe("acceptHostPreview", () => {
  const t = new Topics();
  const builder = host("builder-1", true, { tags: ["builder"] }).info;
  const plain = host("beta", true).info;
  it("accepts a host's own preview and a builder's preview for another host", () => {
    expect(acceptHostPreview({ builtOn: "beta", pr: 7, host: "beta" }, JSON.stringify(preview("beta")), plain)).toMatchObject({ ok: true });
    expect(acceptHostPreview({ builtOn: "builder-1", pr: 7, host: "laptop" }, JSON.stringify(preview("laptop", { builtOn: "builder-1" })), builder)).toMatchObject({ ok: true });
    expect(t.parse(t.hostPreview("builder-1", 7, "laptop"))).toEqual({ kind: "hostPreview", builtOn: "builder-1", pr: 7, host: "laptop" });
  });
  it("refuses a non-builder speaking for another host, a payload that contradicts its topic, and garbage", () => {
    expect(acceptHostPreview({ builtOn: "beta", pr: 7, host: "alpha" }, JSON.stringify(preview("alpha", { builtOn: "beta" })), plain)).toEqual({ ok: false, reason: expect.stringContaining('no "builder" tag') });
    expect(acceptHostPreview({ builtOn: "beta", pr: 7, host: "beta" }, JSON.stringify(preview("beta", { pr: 8 })), plain)).toEqual({ ok: false, reason: expect.stringContaining("does not match its topic") });
    expect(acceptHostPreview({ builtOn: "beta", pr: 7, host: "beta" }, "{", plain)).toMatchObject({ ok: false });
  });
});

describe("PreviewBook", () => {
  it("a new head drops the old head's previews and refuses late ones", () => {
    const book = new PreviewBook();
    book.setHead(7, SHA1);
    expect(book.add(preview("alpha"))).toBe(true);
    expect(book.add(preview("beta", { outcome: "not-affected", affected: false, builds: null }))).toBe(true);
    expect(book.summary(7, ["alpha", "beta"])!.hosts.previewed).toBe(2);
    expect(book.setHead(7, SHA2).sort()).toEqual(["alpha", "beta"]);
    expect(book.add(preview("alpha"))).toBe(false); // a late preview of the old head
    expect(book.add(preview("alpha", { headSha: SHA2 }))).toBe(true);
    const s = book.summary(7, ["alpha", "beta"])!;
    expect(s.headSha).toBe(SHA2);
    expect(s.hosts).toMatchObject({ previewed: 1, pending: 1 });
  });

  it("gives the merge verdict of the current head", () => {
    const book = new PreviewBook();
    const hosts = gateHosts([host("alpha", true, { canary: true }), host("gamma", true), host("laptop", false)]);
    expect(hosts.find((h) => h.host === "laptop")!.reachable).toBe(false);
    expect(book.verdict("all", 7, hosts)).toEqual({ ok: false, wait: true, reason: "PR #7 has not been previewed yet" });
    book.setHead(7, SHA1);
    book.add(preview("alpha"));
    book.add(preview("gamma", { outcome: "does-not-build", builds: false, error: "error: openssl-3.0.16 does not build" }));
    expect(book.verdict("all", 7, hosts)).toEqual({ ok: false, wait: false, reason: expect.stringContaining("gamma: does not build (error: openssl-3.0.16 does not build)") });
    expect(book.verdict("canary", 7, hosts)).toEqual({ ok: true });
    expect(book.forget(7).sort()).toEqual(["alpha", "gamma"]);
  });
});

describe("comesFromFork", () => {
  it("compares GitHub names without case; a deleted head repository is a fork, an unknown one is not", () => {
    expect(comesFromFork("acme/fleet", "acme/fleet")).toBe(false);
    expect(comesFromFork("Acme/Fleet", "acme/fleet")).toBe(false);
    expect(comesFromFork("mallory/fleet", "acme/fleet")).toBe(true);
    expect(comesFromFork(null, "acme/fleet")).toBe(true);
    expect(comesFromFork(undefined, "acme/fleet")).toBe(false);
  });
});
