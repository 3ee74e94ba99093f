/**
 * A stock Node-RED 4.1 (node_modules/node-red/red.js, its own settings file, a temp user dir) with
 * our package installed the way npm would (a symlink in <userDir>/node_modules) loads every node
 * named in package.json's "node-red" section and runs the shipped flows without errors.
 *
 * Needs the compiled package: `npm run build` (npm test does it first).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import mqtt from "mqtt";
import { mergeShippedFlows } from "../../hub/node-red.js";
import { FleetRepo } from "../fleet/repo.js";
import { startLocalGitHub, type LocalGitHub } from "../github/server.js";
import { startTestBroker, type TestBroker } from "../support/brokers.js";

const TOKEN = "ghp_StockNodeRedTestToken0123456789";

const ROOT = resolve(__dirname, "..", "..");
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { name: string; "node-red": { nodes: Record<string, string> } };

/**
 * A tab beside the shipped flows: a pr-watch on the shipped GitHub connection that checks only on
 * input (POST /probe/pr-check), and keeps what comes out of either output for GET /probe/pr-events.
 */
function prWatchProbe(): Array<Record<string, unknown>> {
  const fn = (id: string, func: string, wires: string[][] = [[]]) => ({ id, type: "function", z: "probe", name: id, func, outputs: 1, wires });
  const keep = (output: number) => `const e = global.get("prEvents") || []; e.push({ output: ${output}, topic: msg.topic, prNumber: msg.prNumber ?? null }); global.set("prEvents", e); return null;`;
  const nodes: Array<Record<string, unknown>> = [
    { id: "probe", type: "tab", label: "pr-watch probe" },
    { id: "probe-in", type: "http in", z: "probe", url: "/probe/pr-check", method: "post", wires: [["probe-watch", "probe-ack"]] },
    { id: "probe-watch", type: "lockstep-pr-watch", z: "probe", github: "lockstep-github-config", fleet: "", interval: "0", wires: [["probe-changes"], ["probe-checked"]] },
    fn("probe-changes", keep(1)),
    fn("probe-checked", keep(2)),
    fn("probe-ack", "msg.payload = {}; return msg;", [["probe-out"]]),
    { id: "probe-events-in", type: "http in", z: "probe", url: "/probe/pr-events", method: "get", wires: [["probe-events"]] },
    fn("probe-events", 'msg.payload = global.get("prEvents") || []; return msg;', [["probe-out"]]),
    { id: "probe-out", type: "http response", z: "probe", statusCode: "", headers: {}, wires: [] },
  ];
  // Node-RED treats a node without a position as a config node.
  nodes.forEach((n, i) => n.z && Object.assign(n, { x: 120 + 160 * (i % 5), y: 60 + 60 * Math.floor(i / 5) }));
  return nodes;
}

interface NodeSetInfo {
  id: string;
  module: string;
  types: string[];
  enabled: boolean;
  err?: string;
}

describe("stock Node-RED loads the lockstep package", () => {
  let userDir: string;
  let child: ChildProcess;
  let broker: TestBroker;
  let github: LocalGitHub;
  let fleet: FleetRepo;
  let creds: { username: string; password: string };
  let receiver: Server;
  const notifications: Array<{ title: string; body: string; type: string }> = [];
  let log = "";
  let baseUrl = "";

  beforeAll(async () => {
    for (const file of Object.values(pkg["node-red"].nodes)) {
      if (!existsSync(join(ROOT, file))) throw new Error(`${file} is missing: run "npm run build" first`);
    }
    broker = await startTestBroker({ kind: "aedes" });
    // An Apprise-like receiver for the flows' notifications.
    receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        notifications.push(JSON.parse(body) as { title: string; body: string; type: string });
        res.writeHead(200).end("{}");
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", () => r()));
    creds = await broker.credentials("hub", "stock-node-red");
    userDir = mkdtempSync(join(tmpdir(), "lockstep-stock-nr-"));
    fleet = FleetRepo.create({ root: join(userDir, "fleet"), hosts: ["alpha"] });
    github = await startLocalGitHub({ repo: fleet, owner: "acme", name: "fleet", token: TOKEN });
    mkdirSync(join(userDir, "node_modules"));
    symlinkSync(ROOT, join(userDir, "node_modules", pkg.name), "dir");
    writeFileSync(join(userDir, "flows.json"), JSON.stringify([...mergeShippedFlows(join(ROOT, "flows")), ...prWatchProbe()]));
    // An ordinary settings.js; the lockstep block is how a stock install points the shipped flows at a fleet.
    writeFileSync(
      join(userDir, "settings.js"),
      `module.exports = ${JSON.stringify(
        {
          uiHost: "127.0.0.1",
          uiPort: 0,
          flowFile: "flows.json",
          credentialSecret: "stock-test",
          logging: { console: { level: "info" } },
          lockstep: {
            mqtt: { url: broker.url, ...creds },
            // Hourly polls: within this test only the checks it asks for run (their events are asserted).
            github: { owner: "acme", repo: "fleet", token: TOKEN, webhookSecret: "stock-secret", apiBaseUrl: github.url, pollIntervalMs: 3_600_000 },
            automatic: { cron: "0 6 * * 1" },
          },
        },
        null,
        2,
      )};\n`,
    );
    // Node-RED starts while the broker is down (a hub booting before its external broker): the
    // first GitHub check runs before the fleet connection is up, and fleet/expected must still go out.
    await broker.restart({
      whileDown: async () => {
        child = spawn(process.execPath, [join(ROOT, "node_modules", "node-red", "red.js"), "--userDir", userDir, "--settings", join(userDir, "settings.js")], {
          cwd: userDir,
          env: { ...process.env, NODE_RED_HOME: userDir, LOCKSTEP_APPRISE_URL: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/notify/x` },
          stdio: ["ignore", "pipe", "pipe"],
        });
        const onData = (d: Buffer) => {
          log += d.toString();
        };
        child.stdout!.on("data", onData);
        child.stderr!.on("data", onData);
        await new Promise<void>((resolveStart, reject) => {
          const timer = setTimeout(() => reject(new Error(`Node-RED did not start flows within 45 s:\n${log}`)), 45_000);
          const check = () => {
            const port = /Server now running at http:\/\/127\.0\.0\.1:(\d+)\//.exec(log);
            if (port && /\[info\] Started flows/.test(log)) {
              baseUrl = `http://127.0.0.1:${port[1]}`;
              clearTimeout(timer);
              resolveStart();
            }
          };
          child.stdout!.on("data", check);
          child.once("exit", (code) => reject(new Error(`Node-RED exited (${code}):\n${log}`)));
        });
      },
    });
    // Let the config nodes connect (or fail) before the log is judged.
    await new Promise((r) => setTimeout(r, 1500));
  });

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    await broker?.stop();
    await github?.stop();
    receiver?.closeAllConnections();
    receiver?.close();
    if (userDir) rmSync(userDir, { recursive: true, force: true });
  });

  it("registers every node type of the package, enabled, without load errors", async () => {
    const res = await fetch(`${baseUrl}/nodes`, { headers: { accept: "application/json" } });
    expect(res.status).toBe(200);
    const sets = (await res.json()) as NodeSetInfo[];
    const ours = sets.filter((s) => s.module === pkg.name);
    const types = ours.flatMap((s) => s.types).sort();
    expect(types).toEqual(Object.keys(pkg["node-red"].nodes).sort());
    for (const set of ours) {
      expect(set.err, `${set.id}: ${set.err}`).toBeUndefined();
      expect(set.enabled, set.id).toBe(true);
    }
  });

  it("serves the editor and help text of every node", async () => {
    const res = await fetch(`${baseUrl}/nodes`, { headers: { accept: "text/html" } });
    const html = await res.text();
    for (const type of Object.keys(pkg["node-red"].nodes)) {
      expect(html).toContain(`data-template-name="${type}"`);
      expect(html).toContain(`data-help-name="${type}"`);
    }
  });

  it("runs the shipped flows: all nodes deployed, no errors or missing types in the log", async () => {
    const res = await fetch(`${baseUrl}/flows`, { headers: { accept: "application/json", "Node-RED-API-Version": "v2" } });
    const deployed = (await res.json()) as { flows: Array<{ id: string; type: string }> };
    const shipped = [...mergeShippedFlows(join(ROOT, "flows")), ...prWatchProbe()] as Array<{ id: string }>;
    expect(deployed.flows.map((n) => n.id).sort()).toEqual(shipped.map((n) => n.id).sort());
    expect(log).not.toMatch(/Waiting for missing types/);
    expect(log).not.toMatch(/\[error\]/);
    expect(log).not.toMatch(/Failed to register/);
    // Our own nodes warn when they cannot connect or are misconfigured; the broker was down on
    // purpose while Node-RED started, so only those connection errors are expected.
    const warnings = log.split("\n").filter((l) => l.includes("[warn] [lockstep"));
    expect(warnings.filter((l) => !/mqtt connection error .*ECONNREFUSED/.test(l))).toEqual([]);
    if (process.env.LOCKSTEP_TEST_VERBOSE) console.log(log);
  });

  it("answers the shipped check endpoint from GitHub and publishes fleet/expected", async () => {
    const res = await fetch(`${baseUrl}/api/flake-updates/check`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { pending: unknown; expected: { headCommit: string } };
    expect(body.pending).toBeNull();
    expect(body.expected.headCommit).toBe(fleet.head());

    const client = await mqtt.connectAsync(broker.url, { ...creds, reconnectPeriod: 0 });
    try {
      const expected = new Promise<{ headCommit: string }>((resolve) => client.on("message", (_t, p) => resolve(JSON.parse(p.toString()))));
      await client.subscribeAsync("lockstep/v1/fleet/expected");
      expect((await expected).headCommit).toBe(fleet.head());
    } finally {
      await client.endAsync();
    }
  });

  it("publishes fleet/expected again when the fleet connection comes back to a broker that lost it", async () => {
    /** The retained fleet/expected head as a fresh subscriber sees it, once there is one (or after 20 s). */
    const readHead = async (): Promise<string | undefined> => {
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const reader = await mqtt.connectAsync(broker.url, { ...creds, reconnectPeriod: 0 });
        try {
          const got = new Promise<string | undefined>((resolve) => {
            reader.on("message", (_t, p) => resolve(p.length > 0 ? (JSON.parse(p.toString()) as { headCommit: string }).headCommit : undefined));
            setTimeout(() => resolve(undefined), 500);
          });
          await reader.subscribeAsync("lockstep/v1/fleet/expected");
          const head = await got;
          if (head !== undefined) return head;
        } finally {
          await reader.endAsync();
        }
      }
      return undefined;
    };
    expect(await readHead()).toBe(fleet.head());
    const client = await mqtt.connectAsync(broker.url, { ...creds, reconnectPeriod: 0 });
    await client.publishAsync("lockstep/v1/fleet/expected", "", { qos: 1, retain: true }); // gone, as on a broker without persistence
    await client.endAsync();
    await broker.restart();
    expect(await readHead()).toBe(fleet.head());
  });

  it("reports a new lock-update PR on every pr-watch: the webhook flow announces it through the notification flow", async () => {
    fleet.bumpInput("nixpkgs");
    const upd = fleet.lockUpdateBranch();
    const number = await github.openPullRequest({ head: upd.branch, title: "flake.lock: Update", labels: ["automated", "dependencies"], body: upd.prBody });
    // A check from the manual flow's watch node; the webhook flow's watch node reports the change.
    const res = await fetch(`${baseUrl}/api/flake-updates/check`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(((await res.json()) as { pending: { number: number } }).pending.number).toBe(number);
    const deadline = Date.now() + 10_000;
    while (!notifications.some((n) => n.title === `Lock update PR #${number} pending`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const note = notifications.find((n) => n.title === `Lock update PR #${number} pending`);
    expect(note).toMatchObject({ type: "info" });
    expect(note!.body).toMatch(/nixpkgs/);
  });

  it("pr-watch: output 1 says new, changed (CI went green) and closed, whoever checked; output 2 answers each check it was asked for", async () => {
    type Event = { output: number; topic: string; prNumber: number | null };
    const events = async () => (await (await fetch(`${baseUrl}/probe/pr-events`)).json()) as Event[];
    /** Ask the probe to check; resolves with what came out of it since `from`, once its answer is there. */
    const check = async (from: number): Promise<Event[]> => {
      expect((await fetch(`${baseUrl}/probe/pr-check`, { method: "POST" })).status).toBe(200);
      const deadline = Date.now() + 10_000;
      let got: Event[] = [];
      while (!got.some((e) => e.output === 2) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        got = (await events()).slice(from);
      }
      return got;
    };
    const open = github.openPullNumbers();
    expect(open).toHaveLength(1); // the previous test's PR
    const number = open[0]!;
    // The watcher is shared by every pr-watch on the connection: the manual flow's check in the
    // previous test already told this node about the new PR.
    const seen = await events();
    expect(seen).toContainEqual({ output: 1, topic: "new", prNumber: number });
    expect(seen.filter((e) => e.topic === "new")).toHaveLength(1);

    // Nothing changed: only the answer to the check.
    expect(await check(seen.length)).toEqual([{ output: 2, topic: "checked", prNumber: null }]);

    let from = (await events()).length;
    github.setStatus(fleet.head(github.pullRequest(number).headRef), "success", "ci/build");
    expect(await check(from)).toEqual([
      { output: 1, topic: "changed", prNumber: number },
      { output: 2, topic: "checked", prNumber: null },
    ]);

    from = (await events()).length;
    await github.closePullRequest(number);
    expect(await check(from)).toEqual([
      { output: 1, topic: "closed", prNumber: number },
      { output: 2, topic: "checked", prNumber: null },
    ]);
  });
});
