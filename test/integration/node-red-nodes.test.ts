/**
 * Our nodes at work inside a stock Node-RED (child process, package symlinked into its user dir),
 * wired in a small test flow behind http-in endpoints, against a real broker and simulated agents
 * (MQTT clients with agent credentials that answer commands with job states, as agents do):
 * host-command (success, failure, bad message → Catch), rollback (hosts mode), gate (hold list,
 * hosts the fleet reports held, a closed maintenance window).
 *
 * Needs `npm run build`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Command, type JobState } from "../../protocol/schemas.js";
import { Topics } from "../../protocol/topics.js";
import { startTestBroker, type TestBroker } from "../support/brokers.js";

const ROOT = resolve(__dirname, "..", "..");
const topics = new Topics();

/** A simulated agent: online, publishes its info, answers every command with a job that ends as `outcome(op)`. */
async function fakeAgent(broker: TestBroker, host: string, opts: { hold?: string; outcome?: (op: string) => "succeeded" | "failed" } = {}) {
  const creds = await broker.credentials("agent", host);
  const client = await mqtt.connectAsync(broker.url, { ...creds, reconnectPeriod: 0, protocolVersion: 4 });
  const now = () => new Date().toISOString();
  await client.publishAsync(topics.availability(host), "online", { retain: true, qos: 1 });
  await client.publishAsync(
    topics.info(host),
    JSON.stringify({ host, hostname: host, os: "generic", agentVersion: "0.1.0", branch: "main", startedAt: now(), updatedAt: now(), hold: !!opts.hold, ...(opts.hold ? { holdReason: opts.hold } : {}) }),
    { retain: true, qos: 1 },
  );
  const received: Command[] = [];
  client.on("message", (_topic, payload) => {
    const cmd = Command.parse(JSON.parse(payload.toString()));
    received.push(cmd);
    const state = opts.outcome?.(cmd.op) ?? "succeeded";
    const job: JobState = { id: cmd.id, host, op: cmd.op, state, summary: `${cmd.op} ${state}`, acceptedAt: now(), finishedAt: now(), ...(cmd.op === "rollback" ? { generationAfter: 4 } : {}) };
    void client.publishAsync(topics.job(host, cmd.id), JSON.stringify({ ...job, state: "accepted" }), { retain: true, qos: 1 }).then(() =>
      client.publishAsync(topics.job(host, cmd.id), JSON.stringify(job), { retain: true, qos: 1 }),
    );
  });
  await client.subscribeAsync(topics.commands(host), { qos: 1 });
  return { client, received };
}

const fn = (id: string, func: string, outputs: number, wires: string[][]) => ({ id, type: "function", z: "t", name: id, func, outputs, wires });
const reply = (status: number, extra = "") => `msg.statusCode = ${status}; ${extra} return msg;`;

function testFlow(): Array<Record<string, unknown>> {
  const copy = "Object.assign(msg, msg.payload); return msg;";
  const nodes: Array<Record<string, unknown>> = [
    { id: "t", type: "tab", label: "node tests" },
    { id: "fleet-config", type: "lockstep-fleet", name: "test fleet", broker: "", prefix: "" },
    { id: "in-cmd", type: "http in", z: "t", url: "/t/command", method: "post", wires: [["copy-cmd"]] },
    fn("copy-cmd", copy, 1, [["cmd"]]),
    { id: "cmd", type: "lockstep-host-command", z: "t", fleet: "fleet-config", host: "", op: "", timeout: "10", wires: [["ok"], ["failed"]] },
    fn("ok", reply(200, "msg.payload = { output: 1, job: msg.job };"), 1, [["out"]]),
    fn("failed", reply(200, "msg.payload = { output: 2, job: msg.job };"), 1, [["out"]]),
    { id: "in-rb", type: "http in", z: "t", url: "/t/rollback", method: "post", wires: [["copy-rb"]] },
    fn("copy-rb", copy, 1, [["rb"]]),
    { id: "rb", type: "lockstep-rollback", z: "t", mode: "hosts", fleet: "fleet-config", github: "", timeout: "10", wires: [["ok-rb"], ["failed-rb"]] },
    fn("ok-rb", reply(200, "msg.payload = { output: 1, results: msg.payload };"), 1, [["out"]]),
    fn("failed-rb", reply(200, "msg.payload = { output: 2, results: msg.payload };"), 1, [["out"]]),
    { id: "in-gate", type: "http in", z: "t", url: "/t/gate", method: "post", wires: [["copy-gate"]] },
    fn("copy-gate", copy, 1, [["gate"]]),
    { id: "gate", type: "lockstep-gate", z: "t", days: "", start: "", end: "", timeZone: "UTC", hold: "beta", fleet: "fleet-config", wires: [["passed"], ["held"]] },
    { id: "in-window", type: "http in", z: "t", url: "/t/window", method: "post", wires: [["copy-window"]] },
    fn("copy-window", copy, 1, [["window"]]),
    // 00:00-00:01 on a day that is not today: closed now.
    { id: "window", type: "lockstep-gate", z: "t", days: "", start: "", end: "", timeZone: "UTC", hold: "", fleet: "", wires: [["passed"], ["held"]] },
    fn("passed", reply(200, "msg.payload = { output: 1, hosts: msg.hosts, held: msg.held };"), 1, [["out"]]),
    fn("held", reply(200, "msg.payload = { output: 2, reason: msg.reason, held: msg.held };"), 1, [["out"]]),
    // Every second, in a time zone: counts its ticks in the global context.
    { id: "tick", type: "lockstep-schedule", z: "t", cron: "* * * * * *", timeZone: "Pacific/Auckland", wires: [["count"]] },
    fn("count", "global.set('ticks', (global.get('ticks') || 0) + 1); global.set('lastTick', msg); return null;", 1, [[]]),
    { id: "in-ticks", type: "http in", z: "t", url: "/t/ticks", method: "get", wires: [["ticks"]] },
    fn("ticks", reply(200, "msg.payload = { ticks: global.get('ticks') || 0, last: global.get('lastTick') || null };"), 1, [["out"]]),
    { id: "in-deploy", type: "http in", z: "t", url: "/t/deploy", method: "post", wires: [["copy-deploy"]] },
    fn("copy-deploy", copy, 1, [["deploy"]]),
    { id: "deploy", type: "lockstep-deploy", z: "t", fleet: "fleet-config", wires: [["deployed"], []] },
    fn("deployed", reply(200, "msg.payload = { output: 1, topic: msg.topic, rolloutId: msg.rolloutId };"), 1, [["out"]]),
    { id: "catch", type: "catch", z: "t", scope: null, wires: [["caught"]] },
    fn("caught", reply(500, "msg.payload = { error: msg.error.message };"), 1, [["out"]]),
    { id: "out", type: "http response", z: "t", statusCode: "", headers: {}, wires: [] },
  ];
  // Node-RED treats a node without a position as a config node.
  nodes.forEach((n, i) => n.z && Object.assign(n, { x: 100 + 150 * (i % 6), y: 60 * Math.floor(i / 6) + 40 }));
  return nodes;
}

describe("our nodes in a stock Node-RED against simulated agents", () => {
  let userDir: string;
  let child: ChildProcess;
  let broker: TestBroker;
  let agents: Array<{ client: MqttClient; received: Command[] }> = [];
  let log = "";
  let baseUrl = "";

  const post = async (path: string, body: unknown) => {
    const res = await fetch(`${baseUrl}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    if (!existsSync(join(ROOT, "dist", "node-red-nodes", "fleet", "fleet.js"))) throw new Error('run "npm run build" first');
    broker = await startTestBroker({ kind: "aedes" });
    agents = [
      await fakeAgent(broker, "alpha"),
      await fakeAgent(broker, "beta", { outcome: (op) => (op === "test" ? "failed" : "succeeded") }),
      await fakeAgent(broker, "gamma", { hold: "waiting for a disk" }),
    ];
    userDir = mkdtempSync(join(tmpdir(), "lockstep-nr-nodes-"));
    mkdirSync(join(userDir, "node_modules"));
    symlinkSync(ROOT, join(userDir, "node_modules", "lockstep"), "dir");
    const flow = testFlow();
    // A window that is closed now: one minute, twelve hours away.
    const at = (h: number) => new Date(Date.now() + h * 3600_000).toISOString().slice(11, 16);
    Object.assign(flow.find((n) => n.id === "window")!, { start: at(12), end: at(12.02) });
    writeFileSync(join(userDir, "flows.json"), JSON.stringify(flow));
    const creds = await broker.credentials("hub", "node-tests");
    writeFileSync(
      join(userDir, "settings.js"),
      `module.exports = ${JSON.stringify({ uiHost: "127.0.0.1", uiPort: 0, flowFile: "flows.json", credentialSecret: "t", lockstep: { mqtt: { url: broker.url, ...creds } } })};\n`,
    );
    child = spawn(process.execPath, [join(ROOT, "node_modules", "node-red", "red.js"), "--userDir", userDir, "--settings", join(userDir, "settings.js")], { cwd: userDir, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.on("data", (d: Buffer) => (log += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
    await new Promise<void>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`Node-RED did not start:\n${log}`)), 45_000);
      const check = () => {
        const port = /Server now running at http:\/\/127\.0\.0\.1:(\d+)\//.exec(log);
        if (port && log.includes("fleet client subscribed")) {
          baseUrl = `http://127.0.0.1:${port[1]}`;
          clearTimeout(timer);
          ok();
        }
      };
      child.stdout!.on("data", check);
      child.once("exit", (code) => fail(new Error(`Node-RED exited (${code}):\n${log}`)));
    });
    // Let the fleet client take in the retained host state.
    await new Promise((r) => setTimeout(r, 500));
  });

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    for (const a of agents) await a.client.endAsync();
    await broker?.stop();
    if (userDir) rmSync(userDir, { recursive: true, force: true });
  });

  it("host-command sends a validated command and waits for the job: succeeded → output 1", async () => {
    const res = await post("/t/command", { host: "alpha", op: "switch", args: { commit: "a".repeat(40) } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ output: 1, job: { host: "alpha", op: "switch", state: "succeeded" } });
    const cmd = agents[0]!.received.at(-1)!;
    expect(cmd).toMatchObject({ op: "switch", args: { commit: "a".repeat(40) } });
    expect(Date.parse(cmd.expiresAt)).toBeGreaterThan(Date.now());
  });

  it("host-command: a failed job goes to output 2 with its state", async () => {
    const res = await post("/t/command", { host: "beta", op: "test" });
    expect(res.body).toMatchObject({ output: 2, job: { host: "beta", op: "test", state: "failed" } });
  });

  it("host-command: a bad message is an error for Catch nodes and nothing is sent", async () => {
    const before = agents[0]!.received.length;
    const badOp = await post("/t/command", { host: "alpha", op: "rm -rf" });
    expect(badOp.status).toBe(500);
    expect(String(badOp.body.error)).toMatch(/MessageError: op/);
    const badArgs = await post("/t/command", { host: "alpha", op: "pull", args: { commit: "main; reboot" } });
    expect(String(badArgs.body.error)).toMatch(/arguments for pull/);
    const badHost = await post("/t/command", { host: "../etc", op: "test" });
    expect(String(badHost.body.error)).toMatch(/host/);
    expect(agents[0]!.received.length).toBe(before);
  });

  it("rollback (hosts mode) rolls each host back through the agent and reports per host", async () => {
    const res = await post("/t/rollback", { hosts: ["alpha", "beta"] });
    expect(res.body).toEqual({
      output: 1,
      results: { alpha: { state: "succeeded", summary: "rollback succeeded", generationAfter: 4 }, beta: { state: "succeeded", summary: "rollback succeeded", generationAfter: 4 } },
    });
    expect(agents[0]!.received.at(-1)!.op).toBe("rollback");
    expect(agents[1]!.received.at(-1)!.op).toBe("rollback");
  });

  it("gate: passes free hosts, holds back the hold list and hosts the fleet reports held, with reasons", async () => {
    const single = await post("/t/gate", { host: "beta" });
    expect(single.body).toMatchObject({ output: 2, reason: "beta is on the gate's hold list" });
    const several = await post("/t/gate", { hosts: ["alpha", "beta", "gamma"] });
    expect(several.body.output).toBe(1);
    expect(several.body.hosts).toEqual(["alpha"]);
    expect(several.body.held).toEqual([
      { host: "beta", reason: "beta is on the gate's hold list" },
      { host: "gamma", reason: "gamma is held: waiting for a disk" },
    ]);
    const free = await post("/t/gate", { host: "alpha" });
    expect(free.body.output).toBe(1);
  });

  it("gate: outside the maintenance window the message is held back with the window in the reason", async () => {
    const res = await post("/t/window", {});
    expect(res.body.output).toBe(2);
    expect(String(res.body.reason)).toMatch(/^outside the maintenance window \(mon,tue,wed,thu,fri,sat,sun \d\d:\d\d-\d\d:\d\d UTC\)$/);
  });

  it("schedule fires on its cron in its time zone", async () => {
    const read = async () => (await (await fetch(`${baseUrl}/t/ticks`)).json()) as { ticks: number; last: { payload: string; cron: string; timeZone: string } | null };
    const first = await read();
    await new Promise((r) => setTimeout(r, 2200));
    const later = await read();
    expect(later.ticks).toBeGreaterThanOrEqual(first.ticks + 1);
    expect(later.last).toMatchObject({ cron: "* * * * * *", timeZone: "Pacific/Auckland" });
    expect(Math.abs(Date.parse(later.last!.payload) - Date.now())).toBeLessThan(5000);
  });

  it("deploy with msg.checkOnly checks the rollout (unknown hosts refused) and starts nothing", async () => {
    const sent = () => agents.reduce((n, a) => n + a.received.length, 0);
    const before = sent();
    const unknown = await post("/t/deploy", { checkOnly: true, hosts: ["alpha", "nosuch"], prNumber: 3 });
    expect(unknown.status).toBe(500);
    expect(unknown.body.error).toMatch(/RolloutPlanError: unknown host\(s\): nosuch/);
    const badHosts = await post("/t/deploy", { checkOnly: true, hosts: "alpha" });
    expect(badHosts.body.error).toMatch(/msg\.hosts is invalid/);
    const ok = await post("/t/deploy", { checkOnly: true, hosts: ["alpha"], prNumber: 3 });
    expect(ok).toEqual({ status: 200, body: { output: 1, topic: "checked" } });
    expect(sent()).toBe(before);
  });

  it("logged no errors of its own", () => {
    expect(log).not.toMatch(/\[error\] \[lockstep/);
  });
});

