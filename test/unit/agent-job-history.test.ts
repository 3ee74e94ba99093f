/** Which retained job topics the agent clears: beyond the newest keepJobs, never a running job, persisted. */
import { describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PublishedJobsStore } from "../../agent/job-history.js";

const noBroken = (why: string) => {
  throw new Error(`unexpected broken file: ${why}`);
};

describe("published job history", () => {
  it("keeps the newest N, oldest first beyond them, and survives a restart", () => {
    const file = join(mkdtempSync(join(tmpdir(), "lockstep-jobs-")), "published-jobs.json");
    const s = new PublishedJobsStore(file, noBroken);
    for (const id of ["j1", "j2", "j3", "j4", "j5"]) s.add(id);
    s.add("j3"); // a job reported again (after a restart) keeps its place
    expect(s.excess(3)).toEqual(["j1", "j2"]);
    expect(s.excess(5)).toEqual([]);
    s.remove("j1");
    const again = new PublishedJobsStore(file, noBroken);
    expect(again.ids).toEqual(["j2", "j3", "j4", "j5"]);
    expect(again.excess(3)).toEqual(["j2"]);
  });

  it("never names a running job", () => {
    const s = new PublishedJobsStore(join(mkdtempSync(join(tmpdir(), "lockstep-jobs-")), "p.json"), noBroken);
    for (const id of ["a", "b", "c"]) s.add(id);
    expect(s.excess(1, new Set(["a"]))).toEqual(["b"]);
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
