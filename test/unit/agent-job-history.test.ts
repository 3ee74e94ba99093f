/** Which retained job topics the agent clears: beyond the newest keepJobs, never a running job, persisted. */
import { describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PublishedJobsStore } from "../../agent/job-history.js";
import type { JobState } from "../../protocol/index.js";

const final = (id: string, state: JobState["state"] = "succeeded"): JobState => ({ id, host: "h", op: "test", state, summary: state, acceptedAt: "2026-12-05T00:00:00.000Z" });
const acked = (s: PublishedJobsStore, id: string) => s.markAcked(id, s.final(id)!);

const noBroken = (why: string) => {
  throw new Error(`unexpected broken file: ${why}`);
};

describe("published job history", () => {
  it("keeps the newest N, oldest first beyond them, and survives a restart", () => {
    const file = join(mkdtempSync(join(tmpdir(), "lockstep-jobs-")), "published-jobs.json");
    const s = new PublishedJobsStore(file, noBroken);
    for (const id of ["j1", "j2", "j3", "j4", "j5"]) s.recordFinal(final(id)), acked(s, id);
    s.recordFinal(final("j3", "failed")); // a job reported again (after a restart) keeps its place
    acked(s, "j3");
    expect(s.excess(3)).toEqual(["j1", "j2"]);
    expect(s.excess(5)).toEqual([]);
    s.remove("j1");
    const again = new PublishedJobsStore(file, noBroken);
    expect(again.ids).toEqual(["j2", "j3", "j4", "j5"]);
    expect(again.excess(3)).toEqual(["j2"]);
  });

  it("never names a running job", () => {
    const s = new PublishedJobsStore(join(mkdtempSync(join(tmpdir(), "lockstep-jobs-")), "p.json"), noBroken);
    for (const id of ["a", "b", "c"]) s.recordFinal(final(id)), acked(s, id);
    expect(s.excess(1, new Set(["a"]))).toEqual(["b"]);
  });

  it("keeps a final state until the broker acknowledged it, across a restart, and never clears it meanwhile", () => {
    const file = join(mkdtempSync(join(tmpdir(), "lockstep-jobs-")), "published-jobs.json");
    const s = new PublishedJobsStore(file, noBroken);
    s.recordFinal(final("old"));
    s.recordFinal(final("new", "failed"));
    acked(s, "new");
    const again = new PublishedJobsStore(file, noBroken);
    expect(again.unacked()).toEqual([final("old")]);
    expect(again.excess(0)).toEqual(["new"]); // "old" is still on its way to the broker
    // An ack of a state that was replaced meanwhile does not count for the newer one.
    again.recordFinal(final("old", "interrupted"));
    again.markAcked("old", final("old"));
    expect(again.unacked()).toEqual([final("old", "interrupted")]);
    acked(again, "old");
    expect(new PublishedJobsStore(file, noBroken).unacked()).toEqual([]);
  });

  it("reads a file written before final states were kept (every entry acknowledged)", () => {
    const file = join(mkdtempSync(join(tmpdir(), "lockstep-jobs-")), "published-jobs.json");
    writeFileSync(file, JSON.stringify({ jobs: [{ id: "a", at: "2026-12-01T00:00:00.000Z" }] }));
    const s = new PublishedJobsStore(file, noBroken);
    expect(s.unacked()).toEqual([]);
    expect(s.excess(0)).toEqual(["a"]);
  });

  it("moves a damaged file aside and starts empty", () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-jobs-"));
    const file = join(dir, "published-jobs.json");
    writeFileSync(file, "{not json");
    const why: string[] = [];
    const s = new PublishedJobsStore(file, (w) => why.push(w));
    expect(s.ids).toEqual([]);
    expect(why).toHaveLength(1);
    expect(existsSync(file)).toBe(false);
    expect(readdirSync(dir).some((f) => f.startsWith("published-jobs.json.broken-"))).toBe(true);
  });
});
