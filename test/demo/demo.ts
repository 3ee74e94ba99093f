/**
 * `npm run demo`: the whole Lockstep chain on one machine, with real parts.
 *
 * It starts the hub (broker, fleet page, Node-RED with the shipped flows), a local GitHub on a real
 * bare repository, and three agents (alpha = canary, beta, gamma) on real git and Nix. Then:
 *
 *   1. a lock-update PR made by a real `nix flake update` is merged with the page's
 *      "Merge & deploy" endpoint and rolled out: canary, soak, waves, every host green;
 *   2. the weekly automatic flow finds the next update PR, waits for its CI, merges it and rolls it
 *      out, but gamma's new configuration does not build: the rollout stops, every switched host
 *      goes back to its previous generation, the merge is reverted by a PR, a notification is sent.
 *
 * Progress is printed here; the same is visible in the Node-RED editor (node statuses, debug
 * sidebar) and on the fleet page. It keeps running until Ctrl-C; `--once` runs only step 2 and exits.
 *
 *   npm run demo                 # then open the printed URLs
 *   npm run demo -- --once       # one rollout, then exit (exit code 0 when it went as told)
 *   npm run demo -- --port 1880  # fixed HTTP port (default: 1880 if free, else any)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RolloutProgress } from "../../protocol/schemas.js";
import { LockstepWorld, OPERATOR } from "./world.js";

const HOSTS = ["alpha", "beta", "gamma"];

function say(text: string): void {
  process.stdout.write(`${new Date().toISOString().slice(11, 19)}  ${text}\n`);
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

function parseArgs(argv: string[]): { once: boolean; port?: number; keep: boolean } {
  const out: { once: boolean; port?: number; keep: boolean } = { once: false, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--once") out.once = true;
    else if (a === "--keep") out.keep = true;
    else if (a === "--port") out.port = Number(argv[++i]);
    else if (a === "--help" || a === "-h") {
      process.stdout.write("usage: npm run demo -- [--once] [--port N] [--keep]\n");
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return out;
}

/** Print each host's step as the rollout's retained progress changes. */
function narrate(world: LockstepWorld, id: string): () => void {
  const seen = new Map<string, string>();
  const interval = setInterval(() => {
    const p = world.rollouts.get(id);
    if (!p) return;
    const key = `${p.state}/${p.currentPhase ?? ""}`;
    if (seen.get("$rollout") !== key) {
      seen.set("$rollout", key);
      say(`rollout ${id}: ${p.state}${p.currentPhase ? `, phase ${p.currentPhase}` : ""}`);
    }
    for (const h of Object.values(p.hosts)) {
      const line = `${h.state}${h.reason ? ` (${h.reason})` : ""}`;
      if (seen.get(h.host) !== line) {
        seen.set(h.host, line);
        say(`  ${h.host.padEnd(6)} ${h.phase.padEnd(8)} ${line}`);
      }
    }
  }, 200);
  return () => clearInterval(interval);
}

async function followRollout(world: LockstepWorld, id: string): Promise<RolloutProgress> {
  const stop = narrate(world, id);
  try {
    return await world.waitForRolloutEnd(id, 600_000);
  } finally {
    await new Promise((r) => setTimeout(r, 300));
    stop();
  }
}

async function happyPath(world: LockstepWorld): Promise<boolean> {
  say("Step 1: the weekly GitHub action opens a lock-update PR (a real `nix flake update`)");
  const pr = await world.openLockUpdatePr({ input: "nixpkgs" });
  world.github.setStatus(pr.headSha, "success", "ci/build", "checks passed");
  const check = await world.api("POST", "/api/flake-updates/check", {});
  const pending = (check.body as { pending?: { number: number; lockDiff: { updated: Array<{ input: string }> } } }).pending;
  say(`  detected PR #${pending?.number}: updates ${pending?.lockDiff.updated.map((c) => c.input).join(", ")}; every host's Lock compartment now says "update PR pending"`);
  say('  an operator presses "Merge & deploy" (POST /api/flake-updates/merge-and-deploy)');
  const res = await world.api("POST", "/api/flake-updates/merge-and-deploy", { pr_number: pr.number });
  if (res.status !== 202) {
    say(`  refused: HTTP ${res.status} ${JSON.stringify(res.body)}`);
    return false;
  }
  const { job_id, commit } = res.body as { job_id: string; commit: string };
  say(`  merged as ${commit.slice(0, 8)}; rollout ${job_id} started (canary alpha, soak, then waves)`);
  const final = await followRollout(world, job_id);
  say(`Step 1 done: ${final.state}. ${final.summary}`);
  return final.state === "completed";
}

async function failingUpdate(world: LockstepWorld, step: number): Promise<boolean> {
  say(`Step ${step}: gamma's configuration is changed so it no longer builds, and the next lock-update PR arrives`);
  world.fleet.repo.setBuildFailure("gamma", true);
  const pr = await world.openLockUpdatePr({ input: "tools" });
  world.github.setStatus(pr.headSha, "pending", "ci/build", "building");
  say(`  PR #${pr.number} opened, CI still running. The fleet previews it; automatic mode here needs only the canary's preview to build (previews.gating "canary").`);
  say(`  The weekly flow runs (its "run now" button):`);
  const notes = world.notifications.length;
  await world.pressInject("lockstep-weekly-run-now");
  await new Promise((r) => setTimeout(r, 4000));
  say(`  ... it waits: PR merged? ${world.github.pullRequest(pr.number).merged ? "yes" : "no (CI pending)"}`);
  world.github.setStatus(pr.headSha, "success", "ci/build", "checks passed");
  say("  CI turned green");
  const started = await world.fleet.until(
    () => [...world.rollouts.values()].find((p) => p.prNumber === pr.number),
    120_000,
    "the weekly flow to merge and start the rollout",
  );
  say(`  merged as ${started.commit.slice(0, 8)}; rollout ${started.id} started`);
  const final = await followRollout(world, started.id);
  say(`Step ${step} done: ${final.state}. ${final.summary}`);
  if (final.revertPr) say(`  the merge was reverted by PR #${final.revertPr.number} (${final.revertPr.url})`);
  const note = await world.fleet
    .until(() => world.notifications.slice(notes).find((n) => n.type === "failure"), 20_000, "the failure notification")
    .catch(() => undefined);
  if (note) say(`  notification sent: "${note.title}"`);
  for (const h of HOSTS) say(`  ${h.padEnd(6)} now on generation ${world.fleet.generation(h).generation}, checkout ${world.fleet.checkoutHead(h).slice(0, 8)}`);
  return final.state === "rolled-back" && final.hosts.gamma?.state === "failed";
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const root = mkdtempSync(join(tmpdir(), "lockstep-demo-"));
  const port = args.port ?? ((await portFree(1880)) ? 1880 : 0);
  say(`Lockstep demo in ${root}: starting the hub, a local GitHub and three agents (real git and Nix)...`);
  let world: LockstepWorld | undefined;
  let stopping = false;
  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say("stopping agents, hub and GitHub...");
    await world?.stop();
    if (!args.keep) rmSync(root, { recursive: true, force: true });
    process.exit(code);
  };
  process.once("SIGINT", () => void shutdown(0));
  process.once("SIGTERM", () => void shutdown(0));

  try {
    world = await LockstepWorld.create({
      root,
      hosts: HOSTS,
      hostOptions: { alpha: { priority: 1, canary: true, location: "office" }, beta: { priority: 2, location: "rack 1" }, gamma: { priority: 3, location: "rack 2" } },
      hubEnv: { LOCKSTEP_HTTP_PORT: String(port) },
      hubConfig: {
        automatic: { mergeDelayMinutes: 0, recheckMinutes: 0.05 },
        // Automatic mode waits for the canary's preview only: gamma's broken build is then found by
        // the rollout (with the default gating "all" its preview would stop the merge instead).
        previews: { gating: "canary" },
        rollout: {
          strategy: { soakMs: 5000, waves: { size: 1 }, parallelism: 1, healthTimeoutMs: 60_000 },
          onFailure: "rollback-all",
          revertOnFailure: true,
        },
      },
    });
    const base = world.hub.baseUrl;
    say("");
    say(`  fleet page:       ${base}/`);
    say(`  Node-RED editor:  ${base}/admin/   (the "Weekly lock update" and "Manual merge & deploy" tabs)`);
    say(`  log in as:        ${OPERATOR.name} / ${OPERATOR.password}`);
    say(`  MQTT:             ${world.hub.mqttUrl}  (over WebSocket: ${world.hub.mqttWsUrl})`);
    say(`  local GitHub:     ${world.github.url}/repos/acme/fleet`);
    say("");
    say("Bootstrapping: every host pulls, switches to and tests the current head...");
    await world.fleet.bootstrap();
    for (const h of HOSTS) await world.waitForAvailability(h, "online", 30_000);
    say("  all three hosts are green.");

    let ok = true;
    if (!args.once) ok = (await happyPath(world)) && ok;
    for (const h of HOSTS) await world.waitForAvailability(h, "online", 30_000);
    ok = (await failingUpdate(world, args.once ? 1 : 2)) && ok;
    say(ok ? "The demo went as described." : "Something did not go as described: see above.");
    if (args.once) {
      await shutdown(ok ? 0 : 1);
      return ok ? 0 : 1;
    }
    say("Everything keeps running: explore the page and the editor. Ctrl-C stops it all.");
    return await new Promise<number>(() => undefined);
  } catch (err) {
    say(`demo failed: ${(err as Error).stack ?? String(err)}`);
    await shutdown(1);
    return 1;
  }
}

void main();
