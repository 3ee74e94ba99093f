/**
 * The `preview` op on real agents (real broker, git, Nix): a lock update is previewed on every
 * host before it is merged, a builder previews an offline host, and no preview changes what a host
 * runs or has checked out.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { startTestBroker, type TestBroker } from "../support/brokers.js";
import { TestFleet } from "../fleet/fleet.js";

describe("preview op (real agents)", () => {
  let broker: TestBroker;
  let fleet: TestFleet;
  let root: string;
  let update: string;

  const live = (host: string) => {
    const p = fleet.paths(host);
    return {
      head: execFileSync("git", ["rev-parse", "HEAD"], { cwd: p.checkout, encoding: "utf8" }).trim(),
      index: createHash("sha256").update(readFileSync(join(p.checkout, ".git", "index"))).digest("hex"),
      status: execFileSync("git", ["status", "--porcelain"], { cwd: p.checkout, encoding: "utf8" }),
      profile: fleet.generation(host),
    };
  };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lockstep-preview-op-"));
    broker = await startTestBroker({ kind: "aedes" });
    fleet = await TestFleet.create({
      root,
      hosts: ["alpha", "beta", "gamma", "builder"],
      broker,
      hostOptions: { alpha: { canary: true, extraConfig: { preview: { build: "canary", dryActivate: true } } }, builder: { tags: ["builder"] } },
    });
    fleet.repo.setHostModule("alpha", { packages: ["hello", "coreutils"], kernel: true, switchScript: true, message: root });
    fleet.repo.setHostModule("beta", { packages: ["coreutils"] });
    fleet.repo.setHostModule("gamma", { packages: ["openssl"] });
    await fleet.bootstrap();
    // gamma goes offline (a laptop asleep): the builder previews it.
    await fleet.stopAgent("gamma");
    fleet.repo.bumpPackages("nixpkgs", { hello: { version: "2.13", size: 60_000 }, openssl: { version: "3.0.16", broken: true }, linux: { version: "6.6.60" } });
    update = fleet.repo.lockUpdateBranch().sha;
    execFileSync("git", ["update-ref", "refs/pull/7/head", update], { cwd: fleet.repo.origin });
  }, 300_000);

  afterAll(async () => {
    await fleet?.stop();
    await broker?.stop();
    if (root && !process.env.LOCKSTEP_KEEP_TEST_DIRS) rmSync(root, { recursive: true, force: true });
  });

  it("alpha bumps hello and its kernel, beta is not affected, gamma (offline, previewed by the builder) does not build; nothing live changes", async () => {
    const before = { alpha: live("alpha"), beta: live("beta") };
    const gammaSystem = fleet.info.get("gamma")!.systemPath!;
    const jobs = await Promise.all([
      fleet.runCommand("alpha", "preview", { pr: 7, headSha: update }, { timeoutMs: 180_000 }),
      fleet.runCommand("beta", "preview", { pr: 7, headSha: update }, { timeoutMs: 180_000 }),
      fleet.runCommand("builder", "preview", { pr: 7, headSha: update, build: true, forHosts: [{ host: "gamma", systemPath: gammaSystem }] }, { timeoutMs: 180_000 }),
    ]);
    for (const j of jobs) expect(j.state, j.summary).toBe("succeeded");

    const alpha = await fleet.waitForPreview(7, "alpha", update);
    expect(alpha).toMatchObject({ outcome: "affected", builds: true, builtOn: "alpha", reboot: { needed: true } });
    expect(alpha.packages.find((p) => p.name === "hello")).toMatchObject({ old: ["2.12"], new: ["2.13"] });
    expect(alpha.packages.find((p) => p.name === "linux")).toMatchObject({ old: ["6.6.58"], new: ["6.6.60"] });
    expect(alpha.units?.restart).toContain("hello-2.13.service");

    const beta = await fleet.waitForPreview(7, "beta", update);
    expect(beta).toMatchObject({ outcome: "not-affected", affected: false, builtOn: "beta" });

    const gamma = await fleet.waitForPreview(7, "gamma", update);
    expect(gamma).toMatchObject({ outcome: "does-not-build", builtOn: "builder", builds: false });
    expect(gamma.error).toContain("openssl-3.0.16 does not build");

    expect(live("alpha")).toEqual(before.alpha);
    expect(live("beta")).toEqual(before.beta);
  }, 300_000);

  it("a host without the builder tag refuses to preview for others", async () => {
    const j = await fleet.runCommand("beta", "preview", { pr: 7, headSha: update, forHosts: [{ host: "gamma" }] }, { timeoutMs: 60_000 });
    expect(j.state).toBe("rejected");
    expect(j.summary).toContain('no "builder" tag');
  }, 120_000);
});
