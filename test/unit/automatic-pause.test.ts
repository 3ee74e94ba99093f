/**
 * Automatic mode pauses after a failed rollout (rollout/automatic-pause.ts): stored in the data dir,
 * published, audited; only a failed update rollout pauses it; an operator or a later PR's preview
 * that builds everywhere resumes it; the weekly gate's step "automatic-paused" holds merges meanwhile.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { AutomaticPause, type PreviewVerdicts } from "../../rollout/automatic-pause.js";
import { StorageFile } from "../../hub/storage-file.js";
import { pausedStep } from "../../node-red-nodes/lib/gate-logic.js";
import { AuditEvent, type RolloutProgress } from "../../protocol/schemas.js";
import type { AutomaticPauseState } from "../../protocol/automatic.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function progress(state: RolloutProgress["state"], extra: Partial<RolloutProgress> = {}): RolloutProgress {
  const at = new Date().toISOString();
  return { id: "r-failed", commit: "c".repeat(40), state, summary: `${state}: 1/3 hosts switched`, requestedBy: "weekly", prNumber: 12, phases: [], hosts: {}, counts: { total: 3, succeeded: 1, failed: 1, skipped: 1 }, createdAt: at, updatedAt: at, ...extra };
}

function setup(previews?: PreviewVerdicts, file?: string) {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-pause-"));
  dirs.push(dir);
  const published: AutomaticPauseState[] = [];
  const audits: AuditEvent[] = [];
  const path = file ?? join(dir, "automatic.json");
  const make = () =>
    new AutomaticPause({ file: path, store: new StorageFile({ path, onFault: () => undefined }), log: pino({ level: "silent" }), publish: async (s) => void published.push(s), audit: (e) => void audits.push(AuditEvent.parse(e)), ...(previews ? { previews } : {}), resumeOnGreenPreview: true });
  return { pause: make(), make, published, audits, path };
}

describe("automatic mode's pause after a failed rollout", () => {
  it("a failed update rollout pauses it (stored, published, audited once); completed, cancelled and converge rollouts do not", async () => {
    const t = setup();
    await t.pause.start();
    for (const s of ["completed", "cancelled", "interrupted"] as const) t.pause.rolloutEnded(progress(s));
    t.pause.rolloutEnded(progress("rolled-back", { converges: "r-older" }));
    expect(t.pause.paused).toBe(false);

    t.pause.rolloutEnded(progress("rolled-back"));
    t.pause.rolloutEnded(progress("rolled-back"));
    expect(t.pause.state).toMatchObject({ paused: true, rolloutId: "r-failed", prNumber: 12 });
    expect(t.published.at(-1)).toMatchObject({ paused: true, prNumber: 12 });
    expect(t.audits.filter((e) => e.action === "automatic.paused")).toEqual([expect.objectContaining({ details: expect.objectContaining({ rolloutId: "r-failed", prNumber: 12 }) })]);
    // Survives a restart of the hub.
    expect(JSON.parse(readFileSync(t.path, "utf8"))).toMatchObject({ paused: true, rolloutId: "r-failed" });
    expect(t.make().paused).toBe(true);

    expect(pausedStep(t.pause.state)).toMatchObject({ pass: false, step: "automatic-paused", reason: expect.stringMatching(/^automatic updates are paused after PR #12 failed \(rollout r-failed\)/) });
    expect(t.pause.resume("api:olga")).toBe(true);
    expect(t.pause.resume("api:olga")).toBe(false);
    expect(pausedStep(t.pause.state)).toEqual({ pass: true, step: "automatic-paused" });
    expect(t.pause.state).toMatchObject({ paused: false, resumedBy: "api:olga" });
    expect(t.audits.filter((e) => e.action === "automatic.resumed")).toHaveLength(1);
    expect(t.make().paused).toBe(false);
  });

  it("a later PR whose preview builds on every host resumes it; the failed PR's own preview does not", async () => {
    let listener: ((pr: number) => void) | undefined;
    const builds = new Map<number, boolean>();
    const previews: PreviewVerdicts = {
      onChange: (l) => ((listener = l), () => (listener = undefined)),
      state: (pr) => (builds.has(pr) ? { summary: { headSha: "f".repeat(40) } } : undefined),
      mergeVerdict: (pr) => ({ ok: builds.get(pr) === true }),
    };
    const t = setup(previews);
    await t.pause.start();
    t.pause.rolloutEnded(progress("halted"));
    builds.set(12, true);
    listener!(12);
    builds.set(13, false);
    listener!(13);
    expect(t.pause.paused).toBe(true);
    builds.set(13, true);
    listener!(13);
    expect(t.pause.state).toMatchObject({ paused: false, resumedBy: "lockstep previews" });
    expect(t.audits.at(-1)).toMatchObject({ action: "automatic.resumed", details: { why: "the preview of PR #13 builds on every host" } });
  });

  it("each pause and resume goes to the store it is given, as the JSON the next start reads; a failed write leaves the state in memory", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-pause-store-"));
    dirs.push(dir);
    const written: string[] = [];
    const pause = new AutomaticPause({
      file: join(dir, "automatic.json"),
      // The hub's StorageFile logs, keeps and retries a failed write; this store just refuses.
      store: { write: (text) => (written.push(text), false) },
      log: pino({ level: "silent" }),
      publish: async () => undefined,
      audit: () => undefined,
    });
    await pause.start();
    expect(written).toEqual([]);
    pause.rolloutEnded(progress("failed"));
    expect(pause.paused).toBe(true);
    pause.resume("api:olga");
    expect(written.map((t) => JSON.parse(t) as AutomaticPauseState)).toEqual([
      expect.objectContaining({ paused: true, rolloutId: "r-failed" }),
      expect.objectContaining({ paused: false, resumedBy: "api:olga" }),
    ]);
    expect(pause.state).toMatchObject({ paused: false, resumedBy: "api:olga" });
  });

  it("a stored state it cannot read starts paused: it never silently re-enables automatic merges", () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-pause-bad-"));
    dirs.push(dir);
    const file = join(dir, "automatic.json");
    writeFileSync(file, "{not json");
    expect(setup(undefined, file).pause.state).toMatchObject({ paused: true, reason: expect.stringMatching(/could not be read/) });
  });
});
