import { describe, expect, it, vi } from "vitest";
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JobReporter, OUTPUT_MAX_LINES } from "../../agent/jobs.js";
import { SEEN_IDS_KEPT, StateStore } from "../../agent/state.js";
import { meaningfulErrorLine } from "../../agent/process.js";
import { JobOutput, JobState } from "../../protocol/index.js";

describe("agent state store", () => {
  it("remembers command ids across instances, bounded, and moves a broken file aside", () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-agent-state-"));
    const file = join(dir, "agent-state.json");
    const a = new StateStore(file, () => undefined);
    a.markSeen("c1");
    expect(new StateStore(file, () => undefined).hasSeen("c1")).toBe(true);
    for (let i = 0; i < SEEN_IDS_KEPT + 5; i++) a.markSeen(`x${i}`);
    const b = new StateStore(file, () => undefined);
    expect(b.hasSeen("c1")).toBe(false);
    expect(b.hasSeen(`x${SEEN_IDS_KEPT + 4}`)).toBe(true);
    expect(b.state.seenCommandIds).toHaveLength(SEEN_IDS_KEPT);

    writeFileSync(file, "{ broken");
    const broken = vi.fn();
    const c = new StateStore(file, broken);
    expect(broken).toHaveBeenCalledOnce();
    expect(c.hasSeen("x1")).toBe(false);
    expect(readdirSync(dir).some((f) => f.startsWith("agent-state.json.broken-"))).toBe(true);
  });
});

describe("job reporter", () => {
  const init = { id: "j1", host: "web1", op: "switch", state: "accepted" as const, summary: "accepted", acceptedAt: new Date().toISOString() };

  it("publishes retained valid states and freezes after a terminal one", () => {
    const sent: Array<{ topic: string; payload: string; retain: boolean }> = [];
    const r = new JobReporter((topic, payload, o) => sent.push({ topic, payload, retain: o.retain }), "s", "o", init);
    r.set("running");
    r.set("succeeded", { summary: "generation 1 -> 2", exitCode: 0 });
    r.set("failed", { summary: "too late" });
    const states = sent.filter((m) => m.topic === "s").map((m) => JobState.parse(JSON.parse(m.payload)));
    expect(states.map((s) => s.state)).toEqual(["running", "succeeded"]);
    expect(states[1]!.finishedAt).toBeDefined();
    expect(sent.every((m) => m.retain)).toBe(true);
  });

  it("batches output: a full batch at once, the rest after the flush interval or before the final state", () => {
    vi.useFakeTimers();
    try {
      const out: JobOutput[] = [];
      const order: string[] = [];
      const r = new JobReporter(
        (topic, payload) => {
          order.push(topic);
          if (topic === "o") out.push(JobOutput.parse(JSON.parse(payload)));
        },
        "s",
        "o",
        init,
      );
      for (let i = 0; i < OUTPUT_MAX_LINES + 3; i++) r.line("stdout", `line ${i}`);
      expect(out).toHaveLength(1);
      expect(out[0]!.lines).toHaveLength(OUTPUT_MAX_LINES);
      vi.advanceTimersByTime(250);
      expect(out).toHaveLength(2);
      expect(out[1]!.seq).toBe(1);
      r.line("stderr", "last words");
      r.set("failed", { summary: "x" });
      expect(order.slice(-2)).toEqual(["o", "s"]);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("error line", () => {
  it("picks the builder's own error over Nix's wrapper lines", () => {
    const nix = [
      "error: builder for '/nix/store/abc-lockstep-system-beta.drv' failed with exit code 1;",
      "       last 1 log lines:",
      "       > error: configuration of beta does not build: injected build failure",
      "       For full logs, run 'nix log /nix/store/abc-lockstep-system-beta.drv'.",
    ];
    expect(meaningfulErrorLine(nix)).toBe("error: configuration of beta does not build: injected build failure");
    expect(meaningfulErrorLine(["building...", "something broke", ""])).toBe("something broke");
  });
});
