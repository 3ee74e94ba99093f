/**
 * The rollout store under a real SIGKILL (a crashed hub): a child process records steps the way
 * the engine does (test/support/rollout-store-writer.ts) and is killed at some point, also in the
 * middle of appends and compactions. Every step it had been told was durable (what the engine
 * waits for before sending a command) is in what the files say afterwards, the steps read are
 * a prefix of those it recorded (nothing in between lost), a torn last line does not stop the
 * read, and a new store resumes the rollout from there. Needs `npm run build`.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RolloutStore } from "../../rollout/store.js";
import { WRITER_ROLLOUT_ID, writerStepKey } from "../support/rollout-store-writer.js";

const WRITER = join(__dirname, "..", "..", "dist", "test", "support", "rollout-store-writer.js");
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Run the writer until `killAfter` steps are acked, SIGKILL it; returns the acked step numbers. */
function runAndKill(dir: string, compactMinBytes: number, killAfter: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, dir, String(compactMinBytes)], { stdio: ["ignore", "pipe", "pipe"] });
    const acked: number[] = [];
    let buffered = "";
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdout.on("data", (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const l of lines) {
        const m = /^acked (\d+)$/.exec(l);
        if (m) acked.push(Number(m[1]));
        if (acked.length === killAfter) child.kill("SIGKILL");
      }
    });
    child.on("exit", (code, signal) => (signal === "SIGKILL" ? resolve(acked) : reject(new Error(`writer exited ${code}: ${stderr}`))));
  });
}

describe("rollout store: a hub killed while recording steps", () => {
  for (const [label, compactMinBytes, killAfter] of [
    ["no compaction", 1 << 30, 300],
    ["compacting every ~8 KiB", 8192, 400],
    ["compacting every ~2 KiB", 2048, 150],
  ] as const) {
    it(`keeps every acknowledged step, in order (${label})`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "lockstep-store-kill-"));
      dirs.push(dir);
      const acked = await runAndKill(dir, compactMinBytes, killAfter);
      expect(acked.length).toBeGreaterThanOrEqual(killAfter);

      const store = new RolloutStore(dir);
      const rec = (await store.load(WRITER_ROLLOUT_ID))!;
      const read = new Set(Object.keys(rec.steps));
      for (const n of acked) expect(read.has(writerStepKey(n)), `acked step ${n}`).toBe(true);
      // Written in order: what is there is steps 0..k-1, with no hole.
      for (let n = 0; n < read.size; n++) expect(read.has(writerStepKey(n)), `step ${n} of ${read.size}`).toBe(true);
      for (const n of acked) expect(rec.progress.hosts[`h${n % 50}`]!.jobIds).toContain(`c-${n}`);

      // The next hub saves it whole and logs on.
      await store.save(rec);
      const k = writerStepKey(read.size);
      rec.steps[k] = { host: `h${read.size % 50}`, step: `step${read.size}`, commandId: "c-next", sentAt: "x", expiresAt: "x", timeoutMs: 1 };
      await store.append(rec, { steps: [k] }, { durable: true });
      await store.flush();
      expect(Object.keys((await new RolloutStore(dir).load(WRITER_ROLLOUT_ID))!.steps)).toHaveLength(read.size + 1);
    }, 60_000);
  }
});
