/**
 * The agent's own lifecycle against a real broker, real git and real Nix, through the TestFleet
 * (real agent processes from dist/: run `npx tsc -p .` first). One broker kind (the first of
 * BROKER_KINDS) keeps it lean; agent-fleet.test.ts covers the broker matrix.
 *   echo: restart into the installed agent after a switch; stale agent shown; restart command fixes it
 *   foxtrot: old retained job topics cleared (keepJobs 3), a pull refused on a dirty checkout,
 *            restartAfterSwitch "always" (no selfCheck)
 *   golf: restartAfterSwitch "never" with another agent installed
 *   hotel: a refresh whose evaluation takes long (a `sleep` as its eval command) is cancelled by a pull
 *
 * The "installed agent" of echo is a script in its state dir that prints a version (selfCheck.path);
 * LOCKSTEP_AGENT_VERSION_OVERRIDE makes the restarted process that version.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { BROKER_KINDS, startTestBroker, type TestBroker } from "../support/brokers.js";
import { TestFleet } from "../fleet/fleet.js";
import { AGENT_VERSION } from "../../agent/version.js";
import { nixSystem } from "../fleet/nix-env.js";

describe(`lockstep-agent lifecycle on ${BROKER_KINDS[0]}`, () => {
  let broker: TestBroker;
  let fleet: TestFleet;
  let root: string;
  let recorder: MqttClient;
  /** Everything published under echo's subtree, in arrival order. */
  const seen: Array<{ topic: string; payload: string }> = [];
  let installedScript: string;

  const setInstalled = (version: string) => {
    writeFileSync(installedScript, `#!/bin/sh\n[ "$1" = version ] || exit 2\necho ${version}\n`);
    chmodSync(installedScript, 0o755);
  };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lockstep-agent-lifecycle-"));
    broker = await startTestBroker({ kind: BROKER_KINDS[0] });
    const echoState = join(root, "hosts", "echo", "state");
    mkdirSync(echoState, { recursive: true });
    installedScript = join(echoState, "installed-agent");
    setInstalled(AGENT_VERSION);
    const golfState = join(root, "hosts", "golf", "state");
    mkdirSync(golfState, { recursive: true });
    writeFileSync(join(golfState, "installed-agent"), "#!/bin/sh\necho 0.0.1-other\n", { mode: 0o755 });
    fleet = await TestFleet.create({
      root,
      hosts: ["echo", "foxtrot", "golf", "hotel"],
      broker,
      logLevel: "debug",
      hostOptions: {
        echo: { extraConfig: { selfCheck: { path: installedScript, timeoutSeconds: 10 } } },
        foxtrot: { extraConfig: { keepJobs: 3, restartAfterSwitch: "always" } },
        golf: { extraConfig: { selfCheck: { path: join(golfState, "installed-agent") }, restartAfterSwitch: "never" } },
        hotel: {
          extraConfig: {
            os: {
              kind: "generic",
              profile: join(root, "hosts", "hotel", "profiles", "system"),
              flakeAttr: `lockstepSystems.${nixSystem()}.hotel`,
              // An evaluation that takes a minute: it says when it started.
              argv: { eval: ["sh", "-c", `touch ${join(root, "hosts", "hotel", "eval-started")}; exec sleep 60`] },
            },
          },
        },
      },
    });
    expect(fleet.paths("echo").stateDir).toBe(echoState);
    const cred = await broker.credentials("hub", "lifecycle-recorder");
    recorder = await mqtt.connectAsync(broker.url, { ...cred, clean: true, protocolVersion: 4, reconnectPeriod: 200 });
    recorder.on("message", (topic, payload) => seen.push({ topic, payload: payload.toString() }));
    await recorder.subscribeAsync(`${fleet.topics.prefix}/v1/hosts/echo/#`, { qos: 1 });
    await fleet.publishExpected(fleet.expectedAtHead());
  }, 120_000);

  afterAll(async () => {
    await recorder?.endAsync().catch(() => undefined);
    await fleet?.stop();
    await broker?.stop();
    if (root && !process.env.LOCKSTEP_KEEP_TEST_DIRS) rmSync(root, { recursive: true, force: true });
  });

  it("restarts into the installed agent after a switch that changed it, exactly once", { timeout: 120_000 }, async () => {
    // Installed == running: a switch leaves the agent running.
    await fleet.bootstrap(["echo"]);
    await fleet.waitFor("echo", "agent", (c) => c.status === "ok" && c.summary === `agent ${AGENT_VERSION}`);
    expect(fleet.agentProcess("echo").starts).toBe(1);

    // The switch installs agent 9.9.9 (the script now says so; the restarted process will be it).
    setInstalled("9.9.9");
    fleet.setAgentEnv("echo", { LOCKSTEP_AGENT_VERSION_OVERRIDE: "9.9.9" });
    const sw = await fleet.runCommand("echo", "switch", { commit: fleet.checkoutHead("echo") }, { timeoutMs: 90_000 });
    expect(sw.state, sw.summary).toBe("succeeded");
    expect(sw.summary).toMatch(new RegExp(`; restarting the agent \\(running ${AGENT_VERSION.replaceAll(".", "\\.")} but 9\\.9\\.9 is installed\\)$`));

    await fleet.until(() => fleet.agentProcess("echo").starts === 2, 30_000, "echo's agent to be restarted");
    expect(fleet.agentProcess("echo").exits.map((e) => e.code)).toEqual([75]);
    const ok = await fleet.waitFor("echo", "agent", (c) => c.status === "ok" && c.summary === "agent 9.9.9");
    expect(ok.detail?.version).toBe("9.9.9");
    await fleet.until(() => fleet.info.get("echo")?.agentVersion === "9.9.9", 10_000, "echo's info to show 9.9.9");

    // Before it exited, the stale agent said so; the job's final state was out before "offline".
    const idx = (pred: (m: { topic: string; payload: string }) => boolean) => seen.findIndex(pred);
    const hint = idx((m) => m.topic.endsWith("/compartments/agent") && m.payload.includes(`"running ${AGENT_VERSION} but 9.9.9 is installed: restart the agent"`));
    const done = idx((m) => m.topic.endsWith(`/jobs/${sw.id}`) && JSON.parse(m.payload).state === "succeeded");
    const offline = idx((m) => m.topic.endsWith("/availability") && m.payload === "offline");
    expect(hint).toBeGreaterThanOrEqual(0);
    expect(done).toBeGreaterThanOrEqual(0);
    expect(offline).toBeGreaterThan(hint);
    expect(offline).toBeGreaterThan(done);
    const hintPayload = JSON.parse(seen[hint]!.payload);
    expect(hintPayload).toMatchObject({ status: "failed", detail: { onDiskVersion: "9.9.9", restartSuggested: true } });

    // The restarted agent neither re-reports the switch nor restarts again.
    expect(existsSync(join(fleet.paths("echo").stateDir, "inflight-job.json"))).toBe(false);
    expect((await fleet.runCommand("echo", "refresh")).state).toBe("succeeded");
    expect(fleet.job("echo", sw.id)?.state).toBe("succeeded");
    expect(fleet.agentProcess("echo").starts).toBe(2);

    // A switch with the installed agent unchanged does not restart it.
    const again = await fleet.runCommand("echo", "switch", { commit: fleet.checkoutHead("echo") }, { timeoutMs: 90_000 });
    expect(again.state, again.summary).toBe("succeeded");
    expect(again.summary).not.toMatch(/restarting/);
    expect(fleet.agentProcess("echo").starts).toBe(2);
  });

  it("shows a stale agent (installed version differs) as failed with a restart hint; the restart command fixes it", { timeout: 60_000 }, async () => {
    setInstalled("9.9.10");
    expect((await fleet.runCommand("echo", "refresh")).state).toBe("succeeded");
    const stale = await fleet.waitFor("echo", "agent", (c) => c.status === "failed");
    expect(stale.summary).toBe("running 9.9.9 but 9.9.10 is installed: restart the agent");
    expect(stale.detail).toMatchObject({ version: "9.9.9", onDiskVersion: "9.9.10", restartSuggested: true });

    fleet.setAgentEnv("echo", { LOCKSTEP_AGENT_VERSION_OVERRIDE: "9.9.10" });
    const restart = await fleet.runCommand("echo", "restart", {}, { timeoutMs: 30_000 });
    expect(restart.state, restart.summary).toBe("succeeded");
    await fleet.waitFor("echo", "agent", (c) => c.status === "ok" && c.summary === "agent 9.9.10");
    expect(fleet.agentProcess("echo").starts).toBe(3);
  });

  it("an agent restarted mid-switch follows it and then restarts into the agent the switch installed", { timeout: 90_000 }, async () => {
    const slow = fleet.repo.setBuildDelay("echo", 5);
    await fleet.publishExpected(fleet.expectedAt(slow));
    expect((await fleet.runCommand("echo", "pull", { commit: slow })).state).toBe("succeeded");
    const sw = fleet.command("switch", { commit: slow });
    await fleet.sendCommand("echo", sw);
    const inflightFile = join(fleet.paths("echo").stateDir, "inflight-job.json");
    await fleet.until(() => existsSync(inflightFile) && /"runnerPid"/.test(readFileSync(inflightFile, "utf8")), 15_000, "the runner to start");
    await fleet.killAgent("echo", "SIGKILL");
    await fleet.startAgent("echo"); // still 9.9.10, like a crash-restart in the middle of a switch
    const starts = fleet.agentProcess("echo").starts;
    // The activation installs 9.9.11.
    setInstalled("9.9.11");
    fleet.setAgentEnv("echo", { LOCKSTEP_AGENT_VERSION_OVERRIDE: "9.9.11" });
    const done = await fleet.waitForJob("echo", sw.id, { timeoutMs: 60_000 });
    expect(done.state, done.summary).toBe("succeeded");
    expect(done.summary).toMatch(/; restarting the agent \(running 9\.9\.10 but 9\.9\.11 is installed\)$/);
    await fleet.until(() => fleet.agentProcess("echo").starts === starts + 1, 30_000, "echo's agent to be restarted");
    expect(fleet.agentProcess("echo").exits.at(-1)?.code).toBe(75);
    await fleet.waitFor("echo", "agent", (c) => c.status === "ok" && c.summary === "agent 9.9.11");
    expect(existsSync(inflightFile)).toBe(false);
    expect(fleet.job("echo", sw.id)?.state).toBe("succeeded");
  });

  it("keeps only the newest keepJobs retained job topics, across an agent restart", { timeout: 60_000 }, async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const j = await fleet.runCommand("foxtrot", "refresh");
      expect(j.state).toBe("succeeded");
      ids.push(j.id);
    }
    const historyFile = join(fleet.paths("foxtrot").stateDir, "published-jobs.json");
    const history = () => (JSON.parse(readFileSync(historyFile, "utf8")) as { jobs: Array<{ id: string }> }).jobs.map((j) => j.id);
    await fleet.until(() => history().length === 3, 10_000, () => `published-jobs.json to hold 3 jobs (now ${history().join(", ")})`);
    expect(history()).toEqual(ids.slice(2));
    expect(await retainedJobs("foxtrot")).toEqual([...ids.slice(2)].sort());

    await fleet.stopAgent("foxtrot");
    await fleet.startAgent("foxtrot");
    const sixth = await fleet.runCommand("foxtrot", "refresh");
    ids.push(sixth.id);
    await fleet.until(() => history().length === 3 && history()[0] === ids[3], 10_000, () => `the oldest job to be cleared (now ${history().join(", ")})`);
    expect(await retainedJobs("foxtrot")).toEqual([...ids.slice(3)].sort());
  });

  it("a job cancels a refresh's slow evaluation instead of waiting behind it (the evaluation is only a cache)", { timeout: 60_000 }, async () => {
    const refresh = fleet.command("refresh", {});
    await fleet.sendCommand("hotel", refresh);
    await fleet.until(() => existsSync(join(root, "hosts", "hotel", "eval-started")), 20_000, "hotel's evaluation to start");
    // Without the cancel, this pull would wait out the minute-long evaluation and time out here.
    const pull = await fleet.runCommand("hotel", "pull", { commit: fleet.repo.head() }, { timeoutMs: 20_000 });
    expect(pull.state, pull.summary).toBe("succeeded");
    const refreshed = await fleet.waitForJob("hotel", refresh.id, { timeoutMs: 10_000 });
    expect(refreshed).toMatchObject({ state: "succeeded", summary: "refreshed; evaluation stopped: a job started" });
  });

  it("refuses to pull over uncommitted changes in the checkout, naming the files", { timeout: 60_000 }, async () => {
    const checkout = fleet.paths("foxtrot").checkout;
    appendFileSync(join(checkout, "flake.nix"), "\n# a local edit\n");
    const refused = await fleet.runCommand("foxtrot", "pull", { commit: fleet.repo.head() });
    expect(refused.state).toBe("rejected");
    expect(refused.summary).toBe("checkout has uncommitted changes in flake.nix: commit or discard them first");
    expect(refused.startedAt).toBeUndefined();
    execFileSync("git", ["checkout", "--", "flake.nix"], { cwd: checkout });
    writeFileSync(join(checkout, "untracked.txt"), "not part of the checkout\n");
    const pulled = await fleet.runCommand("foxtrot", "pull", { commit: fleet.repo.head() });
    expect(pulled.state, pulled.summary).toBe("succeeded");
  });

  it("restartAfterSwitch: always restarts without a selfCheck, never keeps a stale agent running (and says so)", { timeout: 90_000 }, async () => {
    const head = fleet.repo.head();
    const [always, never] = await Promise.all(
      ["foxtrot", "golf"].map(async (host) => {
        expect((await fleet.runCommand(host, "pull", { commit: head })).state).toBe("succeeded");
        return fleet.runCommand(host, "switch", { commit: head }, { timeoutMs: 60_000 });
      }),
    );
    expect(always!.state, always!.summary).toBe("succeeded");
    expect(always!.summary).toMatch(/; restarting the agent \(restartAfterSwitch is always\)$/);
    await fleet.until(() => fleet.agentProcess("foxtrot").exits.at(-1)?.code === 75 && fleet.isAgentRunning("foxtrot"), 30_000, "foxtrot to restart");
    await fleet.waitForAvailability("foxtrot", "online");

    expect(never!.state, never!.summary).toBe("succeeded");
    expect(never!.summary).not.toMatch(/restarting/);
    const stale = await fleet.waitFor("golf", "agent", (c) => c.status === "failed");
    expect(stale.summary).toBe(`running ${AGENT_VERSION} but 0.0.1-other is installed: restart the agent`);
    expect(fleet.agentProcess("golf")).toMatchObject({ starts: 1, exits: [] });
  });

  /** The job ids a new subscriber gets as retained, non-empty messages on jobs/+. */
  async function retainedJobs(host: string): Promise<string[]> {
    const cred = await broker.credentials("hub", "lifecycle-retained");
    const c = await mqtt.connectAsync(broker.url, { ...cred, clean: true, protocolVersion: 4, reconnectPeriod: 0 });
    const ids = new Set<string>();
    c.on("message", (topic, payload, packet) => {
      if (packet.retain && payload.length > 0) ids.add(topic.split("/").at(-1)!);
    });
    await c.subscribeAsync(fleet.topics.job(host, "+"), { qos: 1 });
    await new Promise((r) => setTimeout(r, 500));
    await c.endAsync();
    return [...ids].sort();
  }
});
