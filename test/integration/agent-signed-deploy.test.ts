/**
 * Only deploy what the admin signed, with real agents (TestFleet: real git, real Nix), real
 * `ssh-keygen` keys and `git commit -S` (SSH format). A commit signed by an allowed key is pulled
 * and switched; an unsigned one, or one signed by a key that is not allowed, is refused by the pull
 * (the checkout does not move) and by the switch (nothing is built). A rollout whose target is
 * unsigned fails at the canary's pull: no host switches.
 *
 * Agents run from dist/: `npx tsc -p .` first.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FleetView } from "../../rollout/fleet-view.js";
import { RolloutEngine } from "../../rollout/engine.js";
import { RolloutPlanner } from "../../rollout/planner.js";
import { RolloutStore } from "../../rollout/store.js";
import { TestFleet } from "../fleet/fleet.js";
import { startTestBroker, type TestBroker } from "../support/brokers.js";
import { allowedSignersFile, sshKey, type SshSigningKey } from "../support/signing.js";

const HOSTS = ["canary", "web"];

describe("signed commits on real agents", () => {
  let root: string;
  let broker: TestBroker;
  let fleet: TestFleet;
  let admin: SshSigningKey;
  let stranger: SshSigningKey;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lockstep-signed-deploy-"));
    admin = sshKey(join(root, "keys"), "admin");
    stranger = sshKey(join(root, "keys"), "stranger");
    const allowedSigners = allowedSignersFile(join(root, "allowed_signers"), [admin]);
    broker = await startTestBroker({ kind: "aedes" });
    const extraConfig = { verifySignatures: { allowedSigners, timeoutSeconds: 30 } };
    fleet = await TestFleet.create({
      root,
      hosts: HOSTS,
      broker,
      logLevel: "info",
      hostOptions: { canary: { priority: 1, canary: true, extraConfig }, web: { priority: 2, extraConfig } },
    });
    // The fleet's first commit is unsigned: the admin signs the one the hosts start from.
    fleet.repo.signingKey = admin;
    fleet.repo.commit({ "README.md": "signed from here on\n" }, "Require signed commits");
    await fleet.bootstrap();
  }, 240_000);

  afterAll(async () => {
    await fleet?.stop();
    await broker?.stop();
    if (root && !process.env.LOCKSTEP_KEEP_TEST_DIRS) rmSync(root, { recursive: true, force: true });
  });

  it("a commit signed by an allowed key is pulled and switched, and the pull names the signer", async () => {
    fleet.repo.signingKey = admin;
    const commit = fleet.repo.setHostModule("web", { message: "signed change" });
    const before = fleet.generation("web").generation!;
    const pull = await fleet.runCommand("web", "pull", { commit });
    expect(pull.state, pull.summary).toBe("succeeded");
    expect(pull.summary).toMatch(/^checked out [0-9a-f]{8} \(was [0-9a-f]{8}\); Good "git" signature for admin@lockstep\.invalid with ED25519 key SHA256:/);
    const sw = await fleet.runCommand("web", "switch", { commit }, { timeoutMs: 180_000 });
    expect(sw.state, sw.summary).toBe("succeeded");
    expect(fleet.generation("web").generation).toBe(before + 1);
    expect(fleet.jobOutput("web", sw.id).map((l) => l.text)).toContain(`verifying the signature of ${commit.slice(0, 8)}`);
  }, 300_000);

  it("an unsigned commit and one signed by another key are refused by the pull: the checkout stays", async () => {
    const head = fleet.checkoutHead("web");
    const generation = fleet.generation("web").generation;
    fleet.repo.signingKey = undefined;
    const unsigned = fleet.repo.setHostModule("web", { message: "unsigned change" });
    const refused = await fleet.runCommand("web", "pull", { commit: unsigned });
    expect(refused.state).toBe("failed");
    expect(refused.summary).toMatch(new RegExp(`^commit ${unsigned.slice(0, 8)} is not signed: refusing to deploy it \\(sign it with an SSH key in .*allowed_signers`));
    expect(fleet.checkoutHead("web")).toBe(head);

    fleet.repo.signingKey = stranger;
    const foreign = fleet.repo.setHostModule("web", { message: "signed by a stranger" });
    const refused2 = await fleet.runCommand("web", "pull", { commit: foreign });
    expect(refused2.state).toBe("failed");
    expect(refused2.summary).toMatch(new RegExp(`^commit ${foreign.slice(0, 8)} is not signed by an allowed key \\(No principal matched\\.\\): refusing to deploy it`));
    expect(fleet.checkoutHead("web")).toBe(head);
    expect(fleet.generation("web").generation).toBe(generation);
  }, 300_000);

  it("a switch of an unsigned checkout (moved by hand) is rejected before anything is built", async () => {
    const head = fleet.checkoutHead("web");
    const generation = fleet.generation("web").generation;
    fleet.repo.signingKey = undefined;
    const unsigned = fleet.repo.setHostModule("web", { message: "checked out by hand" });
    const checkout = fleet.paths("web").checkout;
    execFileSync("git", ["fetch", "-q", "origin"], { cwd: checkout });
    execFileSync("git", ["checkout", "-q", "-B", "main", unsigned], { cwd: checkout });
    try {
      const sw = await fleet.runCommand("web", "switch", { commit: unsigned });
      expect(sw.state).toBe("rejected");
      expect(sw.summary).toMatch(new RegExp(`^commit ${unsigned.slice(0, 8)} is not signed: refusing to deploy it`));
      expect(fleet.generation("web").generation).toBe(generation);
    } finally {
      execFileSync("git", ["checkout", "-q", "-B", "main", head], { cwd: checkout });
    }
  }, 300_000);

  it("a rollout whose target is unsigned fails at the canary's pull: no host switches", async () => {
    const generations = Object.fromEntries(HOSTS.map((h) => [h, fleet.generation(h).generation]));
    const heads = Object.fromEntries(HOSTS.map((h) => [h, fleet.checkoutHead(h)]));
    fleet.repo.signingKey = undefined;
    fleet.repo.bumpInput("nixpkgs");
    const update = fleet.repo.lockUpdateBranch();
    const target = fleet.repo.mergeIntoBranch(update.sha, "Merge pull request #7 from update_flake_lock_action (unsigned)");
    const client = new FleetView({ url: broker.url, ...(await broker.credentials("hub", "signed-rollout-test")) });
    await client.start();
    try {
      await client.publishExpected(fleet.expectedAt(target));
      for (const host of HOSTS) await client.waitForHost(host, (h) => h.compartments.git?.status === "outdated", 30_000);
      const plan = new RolloutPlanner().plan(
        {
          commit: target,
          strategy: { soakMs: 0, waves: { size: 1 }, parallelism: 1, stepTimeouts: { pull: 60_000, switch: 120_000, test: 60_000 }, healthTimeoutMs: 30_000 },
          onFailure: "halt",
          prNumber: 7,
        },
        client.hosts(),
      );
      expect(plan.phases.map((p) => [p.name, p.hosts])).toEqual([
        ["canary", ["canary"]],
        ["wave-1", ["web"]],
      ]);
      const engine = new RolloutEngine({ fleet: client, store: new RolloutStore(join(root, "hub-data")) });
      const final = await engine.run(plan, "integration-test");
      expect(final.state, JSON.stringify(final)).toBe("halted");
      expect(final.hosts.canary!.state).toBe("failed");
      expect(final.hosts.canary!.reason).toMatch(/is not signed: refusing to deploy it/);
      expect(final.hosts.canary!.jobIds).toHaveLength(1); // the pull; no switch was sent
      expect(final.hosts.web!.state).not.toBe("succeeded");
      for (const h of HOSTS) {
        expect(fleet.generation(h).generation, h).toBe(generations[h]);
        expect(fleet.checkoutHead(h), h).toBe(heads[h]);
        expect([...(fleet.jobs.get(h)?.values() ?? [])].filter((j) => j.op === "switch" && j.rolloutId === plan.id), h).toEqual([]);
      }
    } finally {
      await client.stop();
    }
  }, 300_000);
});
