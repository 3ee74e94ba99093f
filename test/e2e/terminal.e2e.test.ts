/**
 * `lockstep` in the terminal against a real hub (child process, shipped flows, local GitHub) with
 * real agents: every command's text and --json, exit codes, a deploy to completion, a job's
 * output followed live, and the password never on a command line. Needs `npm run build`.
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HUB_ENTRY } from "../demo/hub-process.js";
import { LockstepWorld, OPERATOR } from "../demo/world.js";
import { PREVIEW_OUTCOME_LABEL } from "../../protocol/index.js";

const HOSTS = ["alpha", "beta"];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe("lockstep terminal client", () => {
  let root: string;
  let world: LockstepWorld;
  let env: NodeJS.ProcessEnv;

  function lockstep(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Run> {
    return new Promise((resolve) => {
      execFile(process.execPath, [HUB_ENTRY, ...args], { env: { ...env, ...extraEnv }, timeout: 300_000 }, (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? null) : 0;
        resolve({ code: typeof code === "number" ? code : null, stdout, stderr });
      });
    });
  }

  /** A long-running command (watch): its output so far, awaited until it holds something, then Ctrl-C. */
  function watchProcess(args: string[]) {
    const child = spawn(process.execPath, [HUB_ENTRY, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    const changed = new Set<() => void>();
    child.stdout.on("data", (c: Buffer) => ((out += c.toString()), changed.forEach((f) => f())));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    return {
      until: (predicate: (out: string) => boolean) =>
        new Promise<string>((resolve, reject) => {
          const check = () => {
            if (!predicate(out)) return;
            changed.delete(check);
            resolve(out);
          };
          changed.add(check);
          void exited.then(() => reject(new Error(`${args.join(" ")} exited: ${out}${err}`)));
          check();
        }),
      interrupt: () => (child.kill("SIGINT"), exited),
    };
  }

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lockstep-terminal-"));
    world = await LockstepWorld.create({
      root,
      hosts: HOSTS,
      hostOptions: { alpha: { priority: 1, canary: true }, beta: { priority: 2 } },
      hubConfig: { rollout: { strategy: { soakMs: 500, waves: { size: 1 }, healthTimeoutMs: 60_000, stepTimeouts: { pull: 60_000, switch: 120_000, test: 60_000 } } } },
    });
    await world.fleet.bootstrap();
    const passwordFile = join(root, "password");
    writeFileSync(passwordFile, OPERATOR.password + "\n", { mode: 0o600 });
    // Only the terminal client's variables (no HOME config, no inherited LOCKSTEP_*).
    env = { PATH: process.env.PATH, HOME: root, LOCKSTEP_HUB: world.hub.baseUrl, LOCKSTEP_USER: OPERATOR.name, LOCKSTEP_PASSWORD_FILE: passwordFile };
  }, 240_000);

  afterAll(async () => {
    await world?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("status: a table of every host's compartments, and the same as JSON", async () => {
    for (const h of HOSTS) await world.waitForAvailability(h, "online", 30_000);
    const text = await lockstep(["status"]);
    expect(text.stderr).toBe("");
    expect(text.code).toBe(0);
    const lines = text.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^HOST\s+AGENT\s+GIT\s+LOCK\s+SYSTEM\s+TESTS\s+ONLINE\s+GEN\s+LAST ROLLOUT$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(HOSTS);
    expect(lines[1]).toMatch(/\bonline\b/);
    expect(text.stdout).not.toContain("\x1b["); // not a terminal: no colour
    const json = await lockstep(["status", "--json"]);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { hosts: Array<{ host: string; online: boolean; generation: number; compartments: Record<string, string> }> };
    expect(parsed.hosts.map((h) => h.host)).toEqual(HOSTS);
    for (const h of parsed.hosts) {
      expect(h.online).toBe(true);
      expect(h.generation).toBe(world.fleet.generation(h.host).generation);
      expect(Object.keys(h.compartments)).toEqual(["agent", "git", "lock", "system", "tests"]);
      expect(h.compartments.system).toBe("ok");
    }
  }, 60_000);

  it("exit codes: 2 for usage, 3 for a wrong password or an unreachable hub", async () => {
    expect((await lockstep(["status", "--bogus"])).code).toBe(2);
    expect((await lockstep(["host", "alpha", "explode"])).code).toBe(2);
    const wrong = join(root, "wrong-password");
    writeFileSync(wrong, "not-the-password\n");
    const refused = await lockstep(["audit"], { LOCKSTEP_PASSWORD_FILE: wrong });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain("refused the login of operator");
    expect((await lockstep(["status"], { LOCKSTEP_PASSWORD_FILE: wrong })).code).toBe(3);
    expect((await lockstep(["status"], { LOCKSTEP_HUB: "http://127.0.0.1:9" })).code).toBe(3);
    const help = await lockstep(["deploy", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("lockstep deploy [--pr N]");
  }, 60_000);

  it("host HOST switch: one command, its output followed live, and logs shows the job", async () => {
    const run = await lockstep(["host", "alpha", "switch"]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const jobId = /sent switch to alpha \(job (\S+)\)/.exec(run.stdout)?.[1];
    expect(jobId).toBeDefined();
    expect(run.stdout).toMatch(/\[running\]/);
    expect(run.stdout).toMatch(/\[succeeded\]/);
    // The agent's own output lines came through (the job's output topic, live).
    expect(run.stdout.split("\n").filter((l) => !l.startsWith("[") && !l.startsWith("sent ")).length).toBeGreaterThan(0);
    const list = await lockstep(["logs", "alpha", "--list", "--json"]);
    expect((JSON.parse(list.stdout) as { jobs: Array<{ id: string; state: string }> }).jobs.find((j) => j.id === jobId)?.state).toBe("succeeded");
    const logs = await lockstep(["logs", "alpha", jobId!]);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toContain(`${jobId}  switch  succeeded`);
    const audit = await lockstep(["audit", "--json", "--limit", "50"]);
    expect(audit.code).toBe(0);
    const events = (JSON.parse(audit.stdout) as { events: Array<{ action: string; actor: string; target?: string }> }).events;
    expect(events.some((e) => e.action === "command.sent" && e.actor === OPERATOR.name && e.target === "alpha")).toBe(true);
    const auditText = await lockstep(["audit", "--limit", "5"]);
    expect(auditText.stdout.split("\n")[0]).toMatch(/^AT\s+ACTOR\s+ACTION\s+TARGET\s+DETAILS$/);
  }, 180_000);

  it("logs HOST follows a running job until it ends", async () => {
    const sent = await lockstep(["host", "beta", "test", "--no-wait"]);
    expect(sent.code).toBe(0);
    const jobId = /\(job (\S+)\)/.exec(sent.stdout)![1]!;
    const logs = await lockstep(["logs", "beta", jobId]);
    // Either it caught the job running (and followed it to the end) or it had already ended.
    expect(logs.code, logs.stdout + logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/succeeded/);
  }, 120_000);

  it("pr and deploy --yes: the plan, then the rollout followed to completion", async () => {
    const pr = await world.openLockUpdatePr();
    await world.fleet.waitFor("alpha", "lock", (c) => c.summary.startsWith(`update PR #${pr.number} pending`), 30_000);
    const prText = await lockstep(["pr"]);
    expect(prText.code).toBe(0);
    expect(prText.stdout).toContain(`pending: PR #${pr.number}`);
    expect(prText.stdout).toMatch(/lock: .*nixpkgs/);
    const prJson = JSON.parse((await lockstep(["pr", "--json"])).stdout) as { pending: { number: number; headSha: string } };
    expect(prJson.pending).toMatchObject({ number: pr.number, headSha: pr.headSha });
    // Once the hosts have previewed the head, `pr` shows the hub's summary and a line per host.
    const previews = await Promise.all(["alpha", "beta"].map((h) => world.fleet.waitForPreview(pr.number, h, pr.headSha, 180_000)));
    type PrJson = { preview: { headSha: string; text: string; hosts: { previewed: number } } | null; previews: Array<{ host: string; outcome: string }> };
    // The hub republishes the agents' previews and the summary right after them: ask until it has.
    let withPreview: PrJson;
    for (const deadline = Date.now() + 60_000; ; ) {
      withPreview = JSON.parse((await lockstep(["pr", "--json"])).stdout) as PrJson;
      if ((withPreview.preview?.hosts.previewed ?? 0) >= 2 || Date.now() > deadline) break;
    }
    expect(withPreview.preview).toMatchObject({ headSha: pr.headSha, hosts: { previewed: 2 } });
    expect(withPreview.previews.map((p) => [p.host, p.outcome])).toEqual(previews.map((p) => [p.host, p.outcome]));
    const shown = (await lockstep(["pr"])).stdout;
    expect(shown).toContain(`  preview (done): ${withPreview.preview!.text}`);
    for (const p of previews) expect(shown).toMatch(new RegExp(`^ {4}${p.host} +${PREVIEW_OUTCOME_LABEL[p.outcome]}`, "m"));

    const refused = await lockstep(["deploy"]); // no terminal, no --yes
    expect(refused.code).toBe(2);

    const deploy = await lockstep(["deploy", "--yes"]);
    expect(deploy.code, deploy.stdout + deploy.stderr).toBe(0);
    expect(deploy.stdout).toContain(`plan: merge PR #${pr.number}, then roll out to the whole fleet (2 hosts)`);
    const id = /rollout (\S+) started/.exec(deploy.stdout)![1]!;
    expect(deploy.stdout).toContain(`rollout ${id}: completed`);
    expect(world.github.pullRequest(pr.number).merged).toBe(true);

    const one = await lockstep(["rollout", id]);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/^alpha\s+canary\s+succeeded/m);
    const json = JSON.parse((await lockstep(["rollout", id, "--json"])).stdout) as { state: string; hosts: Record<string, { state: string }> };
    expect(json.state).toBe("completed");
    expect(Object.values(json.hosts).map((h) => h.state)).toEqual(["succeeded", "succeeded"]);
    const list = await lockstep(["rollouts"]);
    expect(list.stdout).toMatch(new RegExp(`^${id}\\s+completed`, "m"));
    const status = JSON.parse((await lockstep(["status", "--json"])).stdout) as { hosts: Array<{ lastRollout?: { id: string } }> };
    expect(status.hosts.every((h) => h.lastRollout?.id === id)).toBe(true);
  }, 300_000);

  it("deploy --canary: the canary in the plan, checked before asking, and the rollout's canary phase", async () => {
    expect((await lockstep(["deploy", "--canary", "Bad!", "--yes"])).code).toBe(2);
    expect((await lockstep(["deploy", "--canary", "beta", "--hosts", "alpha", "--yes", "--pr", "1"])).code).toBe(2);
    const unknown = await lockstep(["deploy", "--canary", "zeta", "--yes", "--pr", "1"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("unknown host(s): zeta");

    const pr = await world.openLockUpdatePr({ input: "tools" });
    await world.fleet.waitFor("alpha", "lock", (c) => c.summary.startsWith(`update PR #${pr.number} pending`), 30_000);
    // alpha is flagged canary; --canary puts beta first instead.
    const deploy = await lockstep(["deploy", "--canary", "beta", "--yes"]);
    expect(deploy.code, deploy.stdout + deploy.stderr).toBe(0);
    const plan = deploy.stdout.slice(0, deploy.stdout.indexOf("rollout "));
    expect(plan).toContain(`plan: merge PR #${pr.number}, then roll out to the whole fleet (2 hosts)`);
    expect(plan).toContain("canary: beta first, alone; the other hosts after it");
    const id = /rollout (\S+) started/.exec(deploy.stdout)![1]!;
    const json = JSON.parse((await lockstep(["rollout", id, "--json"])).stdout) as { state: string; phases: Array<{ name: string; hosts: string[] }> };
    expect(json.state).toBe("completed");
    expect(json.phases[0]).toEqual({ name: "canary", hosts: ["beta"] });
    expect(json.phases.slice(1).flatMap((p) => p.hosts)).toEqual(["alpha"]);
  }, 300_000);

  it("watch: the table (text) and one JSON line per change (--json), live until Ctrl-C; host hold/release shows in both", async () => {
    const text = watchProcess(["watch"]);
    const frame = await text.until((out) => /LAST ROLLOUT/.test(out) && HOSTS.every((h) => new RegExp(`^${h}\\s`, "m").test(out)));
    expect(frame).toMatch(/^HOST\s+AGENT\s+GIT\s+LOCK\s+SYSTEM\s+TESTS\s+ONLINE\s+GEN\s+LAST ROLLOUT$/m);
    expect(await text.interrupt()).toBe(0);

    const json = watchProcess(["watch", "--json"]);
    type Frame = { at: string; hosts: Array<{ host: string; online: boolean; held?: { reason?: string } }> };
    // Complete lines only: a chunk may end inside one.
    const frames = (out: string) => out.slice(0, out.lastIndexOf("\n") + 1).split("\n").filter(Boolean).map((l) => JSON.parse(l) as Frame);
    const beta = (f: Frame) => f.hosts.find((h) => h.host === "beta");
    const first = frames(await json.until((out) => out.includes("\n")))[0]!;
    expect(first.hosts.map((h) => h.host)).toEqual(HOSTS);
    expect(beta(first)?.held).toBeUndefined();
    const hold = await lockstep(["host", "beta", "hold", "--reason", "kernel test", "--json"]);
    expect(hold.code, hold.stdout + hold.stderr).toBe(0);
    expect((JSON.parse(hold.stdout) as { job: { op: string; state: string } }).job).toMatchObject({ op: "hold", state: "succeeded" });
    // The agent's new info (held) reaches the running watch as a new line.
    await json.until((out) => frames(out).some((f) => beta(f)?.held?.reason === "kernel test"));
    const status = await lockstep(["status"]);
    expect(status.stdout).toMatch(/^beta\s.*\bonline \(held\)/m);
    const release = await lockstep(["host", "beta", "release"]);
    expect(release.code, release.stdout + release.stderr).toBe(0);
    await json.until((out) => { const all = frames(out); return beta(all[all.length - 1]!)?.held === undefined && all.some((f) => beta(f)?.held); });
    expect(await json.interrupt()).toBe(0);
    const rollouts = JSON.parse((await lockstep(["rollouts", "--json"])).stdout) as { rollouts: Array<{ id: string; state: string }> };
    expect(Array.isArray(rollouts.rollouts)).toBe(true);
  }, 120_000);

  it("the password is never on a command line (ps) while a command runs", async () => {
    const child = spawn(process.execPath, [HUB_ENTRY, "watch", "--json"], { env, stdio: ["ignore", "pipe", "pipe"] });
    try {
      await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
      const ps = execFileSync("ps", ["-ww", "-eo", "pid,args"], { encoding: "utf8" });
      expect(ps).toContain(`${child.pid}`);
      expect(ps).not.toContain(OPERATOR.password);
    } finally {
      child.kill("SIGINT");
      await new Promise((r) => child.once("exit", r));
    }
  }, 60_000);
});
