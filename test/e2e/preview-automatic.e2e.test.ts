/**
 * Previews in use, end to end: the real hub (Node-RED running the shipped weekly flow), the local
 * GitHub on the fleet's real bare repo, three real agents on real git and Nix with versioned host
 * configurations (test/fleet/: alpha runs hello and a kernel, beta only coreutils, gamma openssl).
 *
 *   1. an update that breaks gamma's build: the hub previews it on every host before anyone
 *      merges, and automatic mode refuses to merge it, with the reason in the audit log, on the
 *      retained fleet/automatic state the page shows, and in the notification.
 *   2. an update that bumps hello and the kernel: previewed, merged by automatic mode, and the
 *      rollout of the merge commit only pulls beta and gamma (their preview: not affected; no
 *      switch, no tests, same generation), switches alpha and marks it as needing a reboot.
 *
 * Needs `npm run build` (agents and the hub run from dist/).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import type { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AutomaticState, decodeJson, type AuditEvent } from "../../protocol/index.js";
import { LockstepWorld } from "../demo/world.js";

const HOSTS = ["alpha", "beta", "gamma"];

/** The retained value on `topic` once it satisfies `ok` (read as the operator, as the page does). */
async function retainedUntil<T>(world: LockstepWorld, topic: string, schema: z.ZodType<T>, ok: (v: T) => boolean, timeoutMs: number): Promise<T> {
  const client = await mqtt.connectAsync(world.hub.mqttUrl, { ...world.mqttOperator, reconnectPeriod: 0 });
  try {
    const got = new Promise<T>((resolve, reject) => {
      let last: unknown = null;
      const timer = setTimeout(() => reject(new Error(`${topic}: no matching value in ${timeoutMs} ms (last: ${JSON.stringify(last)})`)), timeoutMs);
      client.on("message", (_t, payload) => {
        const d = decodeJson(schema, payload);
        last = d.ok ? d.value : payload.toString();
        if (d.ok && ok(d.value)) {
          clearTimeout(timer);
          resolve(d.value);
        }
      });
    });
    await client.subscribeAsync(topic, { qos: 1 });
    return await got;
  } finally {
    await client.endAsync();
  }
}

describe("previews in use: automatic mode (hub + GitHub + real agents, real Nix)", () => {
  let root: string;
  let world: LockstepWorld;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lockstep-e2e-previews-"));
    world = await LockstepWorld.create({
      root,
      hosts: HOSTS,
      hostOptions: { alpha: { priority: 1, canary: true }, beta: { priority: 2 }, gamma: { priority: 3 } },
      hubConfig: {
        // No merge delay; re-check every 3 s while previews run.
        automatic: { mergeDelayMinutes: 0, recheckMinutes: 0.05 },
        rollout: { strategy: { soakMs: 1000, waves: { size: 2 }, parallelism: 2, healthTimeoutMs: 60_000 }, onFailure: "rollback-failed" },
      },
    });
    // The store is shared by every run: a message unique to this root makes alpha's system new.
    world.fleet.repo.setHostModule("alpha", { packages: ["hello", "coreutils"], kernel: true, message: root });
    world.fleet.repo.setHostModule("beta", { packages: ["coreutils"] });
    world.fleet.repo.setHostModule("gamma", { packages: ["openssl"] });
    await world.fleet.bootstrap();
  }, 300_000);

  afterAll(async () => {
    await world?.stop();
    if (root && !process.env.LOCKSTEP_KEEP_E2E) rmSync(root, { recursive: true, force: true });
    else if (root) console.log(`e2e files kept in ${root}`);
  });

  /** A lock update PR as the weekly GitHub action opens it, with green CI. */
  async function openUpdate(changes: Parameters<LockstepWorld["fleet"]["repo"]["bumpPackages"]>[1], branch: string): Promise<{ number: number; headSha: string }> {
    world.fleet.repo.bumpPackages("nixpkgs", changes);
    const upd = world.fleet.repo.lockUpdateBranch(branch);
    const number = await world.github.openPullRequest({ head: upd.branch, title: "flake.lock: Update", labels: ["automated", "dependencies"], body: upd.prBody });
    world.github.setStatus(upd.sha, "success", "ci/build");
    return { number, headSha: upd.sha };
  }

  it("an update that breaks gamma's build is previewed before the merge and automatic mode refuses it, saying why", async () => {
    const notes = world.notifications.length;
    const pr = await openUpdate({ hello: { version: "2.13", size: 60_000 }, openssl: { version: "3.0.16", broken: true } }, "update_broken_openssl");
    await world.pressInject("lockstep-weekly-run-now");

    const refused = await world.fleet.until(
      () => world.notifications.slice(notes).find((n) => n.title.includes(`#${pr.number} not merged`)),
      240_000,
      () => `the not-merged notification (got: ${JSON.stringify(world.notifications.slice(notes))})`,
    );
    expect(refused.type).toBe("failure");
    expect(refused.body).toMatch(/gamma: does not build \(error: .*openssl-3\.0\.16/);
    expect(world.github.pullRequest(pr.number).merged).toBe(false);

    // The audit log says why, once.
    const audit = await world.api("GET", "/api/audit?limit=200");
    const events = (audit.body as { events: AuditEvent[] }).events.filter((e) => e.action === "merge.refused" && e.details?.prNumber === pr.number);
    expect(events, JSON.stringify(events)).toHaveLength(1);
    expect(events[0]).toMatchObject({ actor: "weekly flow", target: `acme/fleet#${pr.number}`, details: { code: "preview-refused" } });
    expect(String(events[0]!.details!.reason)).toMatch(/gamma: does not build/);

    // The page reads the decision from the retained fleet/automatic state of this PR head.
    const state = await retainedUntil(world, world.topics.automatic(), AutomaticState, (s) => s.pr === pr.number, 10_000);
    expect(state).toMatchObject({ headSha: pr.headSha, step: "preview", decision: "refused" });
    expect(state.reason).toMatch(/gamma: does not build/);

    await world.github.closePullRequest(pr.number);
    // The next update must not carry the broken openssl.
    world.fleet.repo.bumpPackages("nixpkgs", { openssl: { version: "3.0.15", broken: false } });
  }, 360_000);

  it("the following rollout only pulls the hosts the preview showed not affected, and marks the reboot", async () => {
    const before = Object.fromEntries(HOSTS.map((h) => [h, world.fleet.generation(h).generation!]));
    const rolloutsBefore = new Set(world.rollouts.keys());
    const pr = await openUpdate({ hello: { version: "2.13", size: 60_000 }, linux: { version: "6.6.60" } }, "update_hello_kernel");
    await world.pressInject("lockstep-weekly-run-now");
    const merged = await world.fleet.until(() => world.github.pullRequest(pr.number).merged && world.github.pullRequest(pr.number), 240_000, "the automatic merge");
    const started = await world.fleet.until(() => [...world.rollouts.values()].find((p) => !rolloutsBefore.has(p.id)), 60_000, "the rollout of the merge");
    expect(started.commit).toBe(merged.mergeCommitSha);
    const final = await world.waitForRolloutEnd(started.id, 240_000);
    const explain = JSON.stringify(final, null, 1);
    expect(final.state, explain).toBe("completed");
    for (const h of ["beta", "gamma"]) {
      expect(final.hosts[h], explain).toMatchObject({ state: "succeeded", pullOnly: expect.stringContaining("not affected") });
      const ops = [...(world.fleet.jobs.get(h)?.values() ?? [])].filter((j) => j.rolloutId === started.id).map((j) => j.op).sort();
      expect(ops, h).toEqual(["pull", "refresh"]);
      expect(world.fleet.generation(h).generation, h).toBe(before[h]);
      expect(world.fleet.checkoutHead(h), h).toBe(merged.mergeCommitSha);
    }
    expect(final.hosts.alpha, explain).toMatchObject({ state: "succeeded", reboot: expect.stringContaining("reboot needed") });
    expect(final.hosts.alpha!.pullOnly).toBeUndefined();
    expect(world.fleet.generation("alpha").generation).toBeGreaterThan(before.alpha!);
  }, 600_000);
});
