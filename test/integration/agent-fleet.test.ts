/**
 * The host agent against a real broker (each BROKER_KINDS), real git and real Nix, through the
 * TestFleet: real agent child processes from dist/ (build first: `npx tsc -p .`).
 * One fleet per broker kind; hosts have separate roles so tests do not disturb each other:
 *   alpha: pull / switch / test / rollback      beta: failing build, offline QoS 1 command
 *   gamma: failing tests, killed mid-switch      delta: command handling (ids, expiry, malformed, busy)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, existsSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BROKER_KINDS, startTestBroker, type TestBroker } from "../support/brokers.js";
import { TestFleet } from "../fleet/fleet.js";
import { COMPARTMENTS } from "../../protocol/index.js";

describe.each(BROKER_KINDS)("lockstep-agent on %s", (kind) => {
  let broker: TestBroker;
  let fleet: TestFleet;
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), `lockstep-agent-${kind}-`));
    broker = await startTestBroker({ kind });
    fleet = await TestFleet.create({ root, hosts: ["alpha", "beta", "gamma", "delta"], broker, logLevel: "debug" });
    await fleet.publishExpected(fleet.expectedAtHead());
  }, 120_000);

  afterAll(async () => {
    await fleet?.stop();
    await broker?.stop();
    // LOCKSTEP_KEEP_TEST_DIRS=1 keeps repos, state dirs and agent logs for a post-mortem.
    if (root && !process.env.LOCKSTEP_KEEP_TEST_DIRS) rmSync(root, { recursive: true, force: true });
  });

  it("publishes availability, info and all five compartments", async () => {
    for (const host of fleet.hosts) {
      await fleet.waitForAvailability(host, "online");
      for (const name of COMPARTMENTS) await fleet.waitFor(host, name, () => true);
      await fleet.waitFor(host, "git", (c) => c.status === "ok");
      await fleet.waitFor(host, "lock", (c) => c.status === "ok");
      expect(fleet.compartment(host, "system")?.status).toBe("unknown");
      expect(fleet.info.get(host)).toMatchObject({ host, os: "generic", branch: "main", commit: fleet.repo.head() });
    }
  });

  it("Agent and Lock compartments follow fleet/expected (agent version, pending update PR)", async () => {
    const head = fleet.repo.head();
    await fleet.publishExpected(fleet.expectedAt(head, { agentVersion: "99.0.0" }));
    const agent = await fleet.waitFor("delta", "agent", (c) => c.status === "failed");
    expect(agent.summary).toMatch(/fleet expects 99\.0\.0/);
    const pending = {
      number: 7,
      title: "flake.lock: Update",
      url: "https://github.com/acme/fleet/pull/7",
      headSha: head,
      headBranch: "update_flake_lock_action",
      openedAt: new Date().toISOString(),
      lockDiff: { added: [], removed: [], updated: [{ input: "nixpkgs", old: { type: "git", rev: "a".repeat(40), date: "2026-11-01" }, new: { type: "git", rev: "b".repeat(40), date: "2026-11-08" } }] },
      ci: { state: "pending" as const },
      superseded: [],
    };
    await fleet.publishExpected(fleet.expectedAt(head, { pendingUpdate: pending }));
    const lock = await fleet.waitFor("delta", "lock", (c) => c.status === "outdated");
    expect(lock.summary).toMatch(/update PR #7 pending: nixpkgs/);
    await fleet.waitFor("delta", "agent", (c) => c.status === "ok");
    await fleet.publishExpected(fleet.expectedAt(head));
    await fleet.waitFor("delta", "lock", (c) => c.status === "ok");
  });

  it("pulls an exact commit and refuses a commit that is not on the branch", async () => {
    const first = fleet.repo.head();
    const second = fleet.repo.commit({ "notes.txt": "second\n" }, "second commit");
    await fleet.publishExpected(fleet.expectedAt(second));
    await fleet.waitFor("alpha", "git", (c) => c.status === "outdated" && /behind/.test(c.summary));

    const pulled = await fleet.runCommand("alpha", "pull", { commit: second });
    expect(pulled.state).toBe("succeeded");
    expect(fleet.checkoutHead("alpha")).toBe(second);
    await fleet.waitFor("alpha", "git", (c) => c.status === "ok");

    const offBranch = fleet.repo.commit({ "notes.txt": "elsewhere\n" }, "feature work", "feature");
    const refused = await fleet.runCommand("alpha", "pull", { commit: offBranch });
    expect(refused.state).toBe("failed");
    expect(refused.summary).toMatch(/not on branch main/);
    expect(fleet.checkoutHead("alpha")).toBe(second);

    // An older commit of the branch is fine: the rollout decides which commit, not "latest".
    // Meanwhile a git killed long ago left its index.lock: the pull clears it and says so.
    const lock = join(fleet.paths("alpha").checkout, ".git", "index.lock");
    writeFileSync(lock, "");
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(lock, hourAgo, hourAgo);
    const back = await fleet.runCommand("alpha", "pull", { commit: first });
    expect(back.state, back.summary).toBe("succeeded");
    expect(fleet.checkoutHead("alpha")).toBe(first);
    expect(existsSync(lock)).toBe(false);
    expect((await fleet.runCommand("alpha", "pull", { commit: second })).state).toBe("succeeded");
  });

  it("switch builds with real Nix and creates a new profile generation; tests pass; rollback restores", { timeout: 120_000 }, async () => {
    const head = fleet.checkoutHead("alpha");
    const sw = await fleet.runCommand("alpha", "switch", { commit: head });
    expect(sw.state, sw.summary).toBe("succeeded");
    expect(sw.generationAfter).toBe(1);
    expect(fleet.generation("alpha").generation).toBe(1);
    const out = fleet.jobOutput("alpha", sw.id).map((l) => l.text).join("\n");
    expect(out).toMatch(/nix build/);
    await fleet.waitFor("alpha", "system", (c) => c.status === "ok" && c.generation === 1);
    await fleet.waitFor("alpha", "tests", (c) => c.status === "unknown");

    const t = await fleet.runCommand("alpha", "test");
    expect(t.state, t.summary).toBe("succeeded");
    expect(t.summary).toMatch(/^2\/2 passed/);
    await fleet.waitFor("alpha", "tests", (c) => c.status === "ok");

    // A new input revision -> lock update on the branch -> pull -> switch: generation 2.
    fleet.repo.bumpInput("nixpkgs");
    const upd = fleet.repo.lockUpdateBranch("lock-update");
    const merged = fleet.repo.mergeIntoBranch(upd.sha, "Merge lock update");
    await fleet.publishExpected(fleet.expectedAt(merged));
    await fleet.waitFor("alpha", "lock", (c) => c.status === "outdated");
    expect((await fleet.runCommand("alpha", "pull", { commit: merged })).state).toBe("succeeded");
    await fleet.waitFor("alpha", "system", (c) => c.status === "outdated");
    await fleet.waitFor("alpha", "lock", (c) => c.status === "ok");
    const sw2 = await fleet.runCommand("alpha", "switch", { commit: merged });
    expect(sw2.state, sw2.summary).toBe("succeeded");
    expect(sw2.summary).toBe("generation 1 -> 2");
    const gen2Path = fleet.generation("alpha").path;
    expect(readFileSync(gen2Path!, "utf8")).toMatch(/nixpkgs=nixpkgs-2/);
    await fleet.waitFor("alpha", "tests", (c) => c.status === "outdated");

    const rb = await fleet.runCommand("alpha", "rollback");
    expect(rb.state, rb.summary).toBe("succeeded");
    expect(rb.generationBefore).toBe(2);
    expect(rb.generationAfter).toBe(1);
    expect(fleet.generation("alpha").generation).toBe(1);
    expect(readFileSync(fleet.generation("alpha").path!, "utf8")).toMatch(/nixpkgs=nixpkgs-1/);
    await fleet.waitFor("alpha", "system", (c) => c.status === "outdated" && c.generation === 1);
    // Tests run again on the generation rolled back to, within the rollback job.
    expect(rb.summary).toMatch(/; tests after the rollback: 2\/2 passed on generation 1/);

    const rb2 = await fleet.runCommand("alpha", "rollback", { generation: 2 });
    expect(rb2.state, rb2.summary).toBe("succeeded");
    expect(fleet.generation("alpha").path).toBe(gen2Path);
    await fleet.waitFor("alpha", "system", (c) => c.status === "ok" && c.generation === 2);
    // Generation 2 was never tested before: now Tests is green for it, not "outdated".
    await fleet.waitFor("alpha", "tests", (c) => c.status === "ok" && c.generation === 2);
    const missing = await fleet.runCommand("alpha", "rollback", { generation: 99 });
    expect(missing.state).toBe("rejected");
    expect(missing.summary).toMatch(/generation 99 does not exist/);
    expect(missing.startedAt).toBeUndefined(); // rejected before it ran

    // A commit that does not change alpha's configuration: outdated by commit, green after an exact evaluation.
    const docs = fleet.repo.commit({ "README.md": "docs only\n" }, "docs");
    const notPulled = await fleet.runCommand("alpha", "switch", { commit: docs });
    expect(notPulled.state).toBe("rejected");
    expect(notPulled.summary).toBe(`checkout is at ${merged.slice(0, 8)}, not ${docs.slice(0, 8)}: pull it first`);
    await fleet.publishExpected(fleet.expectedAt(docs));
    expect((await fleet.runCommand("alpha", "pull", { commit: docs })).state).toBe("succeeded");
    await fleet.waitFor("alpha", "system", (c) => c.status === "outdated");
    const refresh = await fleet.runCommand("alpha", "refresh");
    expect(refresh.summary).toBe("refreshed");
    const exact = await fleet.waitFor("alpha", "system", (c) => c.status === "ok");
    expect(exact.detail?.expectedSystemPath).toBe(fleet.generation("alpha").path);
    const same = await fleet.runCommand("alpha", "switch", { commit: docs });
    expect(same.state).toBe("succeeded");
    expect(same.summary).toBe("generation 2 unchanged (already this system)");
  });

  it("a failing build turns System red with the build's error text", async () => {
    const broken = fleet.repo.setBuildFailure("beta", true);
    expect((await fleet.runCommand("beta", "pull", { commit: broken })).state).toBe("succeeded");
    const sw = await fleet.runCommand("beta", "switch", { commit: broken });
    expect(sw.state).toBe("failed");
    expect(sw.summary).toMatch(/build failed: .*configuration of beta does not build: injected build failure/);
    const sys = await fleet.waitFor("beta", "system", (c) => c.status === "failed");
    expect(sys.summary).toMatch(/injected build failure/);
    expect(fleet.generation("beta").generation).toBeUndefined();
  });

  it("a failing test turns Tests red", async () => {
    const broken = fleet.repo.setTestFailure("gamma", true);
    expect((await fleet.runCommand("gamma", "pull", { commit: broken })).state).toBe("succeeded");
    expect((await fleet.runCommand("gamma", "switch")).state).toBe("succeeded");
    const t = await fleet.runCommand("gamma", "test");
    expect(t.state).toBe("failed");
    expect(t.summary).toMatch(/1\/2 failed.*gamma\/10-health\.sh: gamma: service did not come up/);
    const c = await fleet.waitFor("gamma", "tests", (x) => x.status === "failed");
    expect(c.detail?.failed).toEqual(["gamma/10-health.sh"]);
  });

  it("runs a re-delivered command id once, rejects expired and malformed commands, stays up", async () => {
    const head = fleet.checkoutHead("delta");
    const cmd = fleet.command("refresh", {});
    await fleet.sendCommand("delta", cmd);
    await fleet.waitForJob("delta", cmd.id);
    const pull = fleet.command("pull", { commit: head });
    await fleet.sendCommand("delta", pull);
    await fleet.sendCommand("delta", pull);
    await fleet.waitForJob("delta", pull.id);
    // The agent logs each re-delivery it skips; one run, one skip.
    await fleet.until(() => /command id seen before/.test(fleet.agentLogs("delta")), 10_000, "the duplicate to be skipped");
    const ran = fleet.agentLogs("delta").split("\n").filter((l) => l.includes(pull.id) && l.includes("command accepted"));
    expect(ran).toHaveLength(1);

    const expired = await fleet.runCommand("delta", "switch", {}, { issuedAt: new Date(Date.now() - 3 * 86_400_000).toISOString(), expiresAt: new Date(Date.now() - 86_400_000).toISOString() });
    expect(expired.state).toBe("rejected");
    expect(expired.summary).toMatch(/expired/);

    await fleet.sendCommand("delta", JSON.stringify({ id: "bad-1", op: "switch", args: { commit: "; rm -rf /" }, issuedAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 60_000).toISOString(), requestedBy: "x" }));
    const bad = await fleet.waitForJob("delta", "bad-1");
    expect(bad.state).toBe("rejected");
    expect(bad.error).toMatch(/args\.commit/);
    await fleet.sendCommand("delta", JSON.stringify({ id: "bad-2", op: "format-disk", args: {} }));
    expect((await fleet.waitForJob("delta", "bad-2")).state).toBe("rejected");
    await fleet.sendCommand("delta", "not json at all");
    await fleet.sendCommand("delta", "");
    const after = await fleet.runCommand("delta", "refresh");
    expect(after.state).toBe("succeeded");
    expect(fleet.isAgentRunning("delta")).toBe(true);
    expect(fleet.agentProcess("delta").starts).toBe(1);
  });

  it("rejects a second job while busy and cancels the running one on stop", async () => {
    const slow = fleet.repo.setBuildDelay("delta", 30);
    expect((await fleet.runCommand("delta", "pull", { commit: slow })).state).toBe("succeeded");
    const sw = fleet.command("switch", {});
    await fleet.sendCommand("delta", sw);
    await fleet.waitForJob("delta", sw.id, { states: ["running"] });
    await fleet.waitFor("delta", "system", (c) => c.status === "working");
    await fleet.until(() => fleet.jobOutput("delta", sw.id).some((l) => l.text.startsWith("$ nix build")), 10_000, "the build to start");
    const second = await fleet.runCommand("delta", "test");
    expect(second.state).toBe("rejected");
    expect(second.summary).toBe(`busy with switch ${sw.id}`);
    const stop = await fleet.runCommand("delta", "stop");
    expect(stop.state).toBe("succeeded");
    expect(stop.summary).toBe(`cancelled switch ${sw.id}`);
    expect((await fleet.waitForJob("delta", sw.id)).state).toBe("cancelled");
    expect(fleet.generation("delta").generation).toBeUndefined();
  });

  it("refuses jobs that touch the checkout or the system while a self-update run holds its lock", async () => {
    // This test process stands in for a running self-update (a live pid in the lock).
    const lock = join(fleet.paths("delta").stateDir, "self-update.lock");
    writeFileSync(lock, JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString() }));
    try {
      const refused = await fleet.runCommand("delta", "pull", { commit: fleet.repo.head() });
      expect(refused.state).toBe("rejected");
      expect(refused.summary).toBe(`busy with a self-update run (pid ${process.pid}): send the command again when it has finished`);
      expect((await fleet.runCommand("delta", "refresh")).state).toBe("succeeded");
    } finally {
      rmSync(lock, { force: true });
    }
    expect((await fleet.runCommand("delta", "pull", { commit: fleet.repo.head() })).state).toBe("succeeded");
  });

  it("an agent killed mid-switch reports the switch's true outcome after it restarts", async () => {
    const slow = fleet.repo.setBuildDelay("gamma", 3);
    expect((await fleet.runCommand("gamma", "pull", { commit: slow })).state).toBe("succeeded");
    const before = fleet.generation("gamma").generation;
    const sw = fleet.command("switch", { commit: slow });
    await fleet.sendCommand("gamma", sw);
    await fleet.waitForJob("gamma", sw.id, { states: ["running"] });
    await fleet.until(() => existsSync(join(fleet.paths("gamma").stateDir, "inflight-job.json")) && /"runnerPid"/.test(readFileSync(join(fleet.paths("gamma").stateDir, "inflight-job.json"), "utf8")), 10_000, "the runner to start");
    // Kill while the switch is still running in its detached runner.
    expect(existsSync(join(fleet.paths("gamma").stateDir, "jobs", `${sw.id}.result.json`))).toBe(false);
    await fleet.killAgent("gamma", "SIGKILL");
    await fleet.waitForAvailability("gamma", "offline");
    expect(fleet.job("gamma", sw.id)?.state).toBe("running");
    await fleet.startAgent("gamma");
    const done = await fleet.waitForJob("gamma", sw.id);
    expect(done.state, done.summary).toBe("succeeded");
    expect(done.generationBefore).toBe(before);
    expect(done.generationAfter).toBe((before ?? 0) + 1);
    expect(fleet.generation("gamma").generation).toBe((before ?? 0) + 1);
  });

  it("an agent and its switch runner both killed mid-build report interrupted, generation unchanged", async () => {
    const slow = fleet.repo.setBuildDelay("gamma", 3);
    expect((await fleet.runCommand("gamma", "pull", { commit: slow })).state).toBe("succeeded");
    const before = fleet.generation("gamma").generation;
    const sw = fleet.command("switch", { commit: slow });
    await fleet.sendCommand("gamma", sw);
    const inflightFile = join(fleet.paths("gamma").stateDir, "inflight-job.json");
    const runnerPid = await fleet.until(() => {
      if (!existsSync(inflightFile)) return undefined;
      return (JSON.parse(readFileSync(inflightFile, "utf8")) as { runnerPid?: number }).runnerPid;
    }, 10_000, "the runner to start");
    await fleet.killAgent("gamma", "SIGKILL");
    process.kill(-runnerPid, "SIGKILL");
    await fleet.startAgent("gamma");
    const done = await fleet.waitForJob("gamma", sw.id);
    expect(done.state, done.summary).toBe("interrupted");
    expect(done.summary).toMatch(/stopped before it finished; still on generation/);
    expect(fleet.generation("gamma").generation).toBe(before);
  });

  it("update-inputs runs nix flake update, commits flake.lock, and pushes only when asked", async () => {
    await fleet.runCommand("alpha", "pull", { commit: fleet.repo.head() });
    fleet.repo.bumpInput("tools");
    const local = await fleet.runCommand("alpha", "update-inputs", { inputs: ["tools"] });
    expect(local.state, local.summary).toBe("succeeded");
    expect(local.summary).toMatch(/committed [0-9a-f]{8} locally \(not pushed\): tools /);
    expect(fleet.checkoutHead("alpha")).toBe(local.commit);
    await fleet.waitFor("alpha", "git", (c) => c.status === "outdated" && /ahead/.test(c.summary));

    const pushed = await fleet.runCommand("alpha", "update-inputs", { push: true, branch: "lock-bot" });
    expect(pushed.state, pushed.summary).toBe("succeeded");
    // Nothing left to update: an unchanged lock means no commit and no push.
    expect(pushed.summary).toMatch(/unchanged/);
    fleet.repo.bumpInput("nixpkgs");
    const pushed2 = await fleet.runCommand("alpha", "update-inputs", { push: true, branch: "lock-bot" });
    expect(pushed2.state, pushed2.summary).toBe("succeeded");
    expect(pushed2.summary).toMatch(/^pushed [0-9a-f]{8} to lock-bot: nixpkgs /);
    expect(fleet.repo.head("lock-bot")).toBe(pushed2.commit);
    expect(fleet.repo.show(pushed2.commit!, "flake.lock")).toMatch(/"lastModified"/);
    expect(fleet.repo.head()).not.toBe(pushed2.commit); // the fleet branch itself is untouched
  });

  it("hold is persisted across a restart command; held hosts refuse pull until released", async () => {
    const hold = await fleet.runCommand("delta", "hold", { reason: "database migration" });
    expect(hold.state).toBe("succeeded");
    await fleet.until(() => fleet.info.get("delta")?.hold === true, 10_000, "delta's info to show the hold");
    expect(fleet.info.get("delta")?.holdReason).toBe("database migration");

    const startsBefore = fleet.agentProcess("delta").starts;
    const restart = await fleet.runCommand("delta", "restart", {}, { timeoutMs: 30_000 });
    expect(restart.state, restart.summary).toBe("succeeded");
    expect(restart.summary).toMatch(/^agent restarted \(pid \d+ -> \d+\)$/);
    expect(fleet.agentProcess("delta").starts).toBe(startsBefore + 1);
    expect(fleet.agentProcess("delta").exits.at(-1)?.code).toBe(75);

    const refused = await fleet.runCommand("delta", "pull", { commit: fleet.repo.head() });
    expect(refused.state).toBe("rejected");
    expect(refused.summary).toBe("host is on hold (database migration): send release first");
    expect((await fleet.runCommand("delta", "release")).state).toBe("succeeded");
    await fleet.until(() => fleet.info.get("delta")?.hold === false, 10_000, "delta's info to show no hold");
    expect((await fleet.runCommand("delta", "pull", { commit: fleet.repo.head() })).state).toBe("succeeded");
  });

  it("runs a QoS 1 command that was sent while the agent was offline", async () => {
    await fleet.stopAgent("beta");
    await fleet.waitForAvailability("beta", "offline");
    const fixed = fleet.repo.setBuildFailure("beta", false);
    const pull = fleet.command("pull", { commit: fixed });
    await fleet.sendCommand("beta", pull);
    await new Promise((r) => setTimeout(r, 300));
    expect(fleet.job("beta", pull.id)).toBeUndefined();
    await fleet.startAgent("beta");
    const done = await fleet.waitForJob("beta", pull.id);
    expect(done.state).toBe("succeeded");
    expect(fleet.checkoutHead("beta")).toBe(fixed);
  });

  it("reconnects after a broker restart; a command queued for an offline agent survives it", async () => {
    await fleet.stopAgent("beta");
    await fleet.waitForAvailability("beta", "offline");
    const test = fleet.command("pull", { commit: fleet.repo.head() });
    await fleet.sendCommand("beta", test);
    await broker.restart();
    const refreshed = await fleet.runCommand("alpha", "refresh", {}, { timeoutMs: 30_000 });
    expect(refreshed.state).toBe("succeeded");
    await fleet.startAgent("beta");
    const done = await fleet.waitForJob("beta", test.id, { timeoutMs: 30_000 });
    expect(done.state, done.summary).toBe("succeeded");
  });
});
