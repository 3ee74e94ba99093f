/**
 * End to end on one machine: the real hub (broker + Node-RED running the shipped flows) as a child
 * process, the local GitHub on the fleet's real bare repo, and three real agents (git + Nix).
 * One fleet, several rollouts in sequence (each test leaves the fleet healthy for the next):
 *
 *   1. merge and deploy through POST /api/flake-updates/merge-and-deploy (canary, soak, wave)
 *   2. a host whose new build fails: rollback-all, revert PR on GitHub, failure notification
 *   3. a failing canary: the wave never starts
 *   4. offline and held hosts are left out with the reason recorded
 *   5. the hub restarts in the middle of a rollout: no step runs twice
 *
 * Needs `npm run build` (agents and the hub run from dist/).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RolloutHistoryEntry, type JobState } from "../../protocol/schemas.js";
import { decodeJson } from "../../protocol/payload.js";
import { LockstepWorld } from "../demo/world.js";

const HOSTS = ["alpha", "beta", "gamma"];
const SOAK_MS = 3000;

/** Jobs of a rollout on a host, by op. */
function rolloutJobs(world: LockstepWorld, host: string, rolloutId: string): JobState[] {
  return [...(world.fleet.jobs.get(host)?.values() ?? [])].filter((j) => j.rolloutId === rolloutId);
}

function parents(world: LockstepWorld, sha: string): string[] {
  return execFileSync("git", ["rev-list", "--parents", "-n", "1", sha], { cwd: world.fleet.repo.origin, encoding: "utf8" }).trim().split(" ").slice(1);
}

async function readRetained<T>(world: LockstepWorld, topic: string, schema: { safeParse(v: unknown): { success: boolean; data?: T } }): Promise<T> {
  const client = await mqtt.connectAsync(world.hub.mqttUrl, { username: "operator", password: "operator-password-for-tests", reconnectPeriod: 0 });
  try {
    const got = new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no retained message on ${topic}`)), 5000);
      client.on("message", (_t, payload) => {
        const d = decodeJson(schema as never, payload) as { ok: boolean; value?: T; error?: string };
        clearTimeout(timer);
        if (d.ok) resolve(d.value as T);
        else reject(new Error(`bad payload on ${topic}: ${d.error}`));
      });
    });
    await client.subscribeAsync(topic);
    return await got;
  } finally {
    await client.endAsync();
  }
}

describe("end to end: hub + GitHub + three agents", () => {
  let root: string;
  let world: LockstepWorld;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lockstep-e2e-"));
    world = await LockstepWorld.create({
      root,
      hosts: HOSTS,
      hostOptions: { alpha: { priority: 1, canary: true }, beta: { priority: 2 }, gamma: { priority: 3 } },
      hubConfig: {
        rollout: {
          strategy: {
            soakMs: SOAK_MS,
            waves: { size: 2 },
            parallelism: 2,
            healthTimeoutMs: 60_000,
            stepTimeouts: { pull: 60_000, switch: 120_000, test: 60_000 },
          },
          onFailure: "rollback-all",
          revertOnFailure: true,
        },
      },
    });
    await world.fleet.bootstrap();
  }, 240_000);

  afterAll(async () => {
    await world?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("merges the pending update PR and deploys exactly the merge commit to every host", async () => {
    const before = Object.fromEntries(HOSTS.map((h) => [h, world.fleet.generation(h).generation!]));
    const pr = await world.openLockUpdatePr();

    // Detection: the API shows the PR with its lock diff, and every host's Lock compartment says "pending".
    const check = await world.api("POST", "/api/flake-updates/check", {});
    expect(check.status).toBe(200);
    const pending = (check.body as { pending: { number: number; headSha: string; lockDiff: { updated: Array<{ input: string }> } } }).pending;
    expect(pending.number).toBe(pr.number);
    expect(pending.headSha).toBe(pr.headSha);
    expect(pending.lockDiff.updated.map((c) => c.input)).toContain("nixpkgs");
    for (const h of HOSTS) {
      const lock = await world.fleet.waitFor(h, "lock", (c) => c.summary.startsWith(`update PR #${pr.number} pending`), 20_000);
      expect(lock.status).toBe("outdated");
    }

    const res = await world.api("POST", "/api/flake-updates/merge-and-deploy", { pr_number: pr.number });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const jobId = (res.body as { job_id: string }).job_id;
    expect(jobId).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]+$/);

    // A real merge on GitHub: a merge commit with the base and the PR head as parents.
    const merged = world.github.pullRequest(pr.number);
    expect(merged.merged).toBe(true);
    const commit = merged.mergeCommitSha!;
    expect(world.fleet.repo.head()).toBe(commit);
    expect(parents(world, commit)).toContain(pr.headSha);
    expect((res.body as { commit: string }).commit).toBe(commit);

    const final = await world.waitForRolloutEnd(jobId, 240_000);
    expect(final.state, JSON.stringify(final, null, 1)).toBe("completed");
    expect(final.commit).toBe(commit);
    expect(final.prNumber).toBe(pr.number);
    expect(final.phases.map((p) => p.name)).toEqual(["canary", "wave-1"]);
    for (const h of HOSTS) {
      const host = final.hosts[h]!;
      expect(host.state).toBe("succeeded");
      expect(world.fleet.checkoutHead(h)).toBe(commit);
      expect(host.generationAfter).toBeGreaterThan(before[h]!);
      expect(world.fleet.generation(h).generation).toBe(host.generationAfter);
      // Each step ran exactly once for this rollout.
      const ops = rolloutJobs(world, h, jobId).map((j) => j.op).sort();
      expect(ops).toEqual(["pull", "switch", "test"]);
      expect(rolloutJobs(world, h, jobId).every((j) => j.state === "succeeded")).toBe(true);
      await world.fleet.waitFor(h, "tests", (c) => c.status === "ok", 20_000);
    }
    // The canary soaked before the wave began.
    const canaryDone = Date.parse(final.hosts.alpha!.finishedAt!);
    const waveStart = Math.min(...["beta", "gamma"].map((h) => Date.parse(final.hosts[h]!.startedAt!)));
    expect(waveStart - canaryDone).toBeGreaterThanOrEqual(SOAK_MS - 50);

    const history = await readRetained(world, world.topics.history(jobId), RolloutHistoryEntry);
    expect(history).toMatchObject({ rolloutId: jobId, commit, state: "completed", prNumber: pr.number });
    expect(history.hosts.map((h) => h.host).sort()).toEqual(HOSTS);
    expect(history.lockDiff?.updated.map((c) => c.input)).toContain("nixpkgs");

    // The manual flow notifies when the rollout ends.
    await world.fleet.until(() => world.notifications.find((n) => n.title.includes(jobId)), 10_000, "the completion notification");
    expect(world.notifications.find((n) => n.title.includes(jobId))).toMatchObject({ type: "success" });
  }, 300_000);
});

