/**
 * dashboard/protocol.js is a hand-kept mirror of protocol/ for the browser: this test makes any
 * drift (a renamed topic, a new status, a changed lock-diff text) fail.
 */
import { describe, expect, it } from "vitest";
import * as ts from "../../protocol/index.js";
// @ts-expect-error plain ES module without types, loaded by the page as-is
import * as js from "../../dashboard/protocol.js";

const page = js as {
  PROTOCOL_VERSION: string;
  STATUSES: string[];
  COMPARTMENTS: string[];
  COMMAND_OPS: string[];
  TERMINAL_JOB_STATES: string[];
  ROLLOUT_STATES: string[];
  TERMINAL_ROLLOUT_STATES: string[];
  isValidHostId(h: string): boolean;
  worstStatus(statuses: string[]): string;
  topicsFor(prefix?: string): Record<string, (...a: string[]) => unknown> & { root: string; parse(t: string): unknown };
  describeChange(c: ts.InputChange): string;
  formatLockDiff(d: ts.LockDiff, o?: { max?: number; separator?: string }): string;
};

describe("dashboard/protocol.js mirrors protocol/", () => {
  it("has the same enumerations", () => {
    expect(page.PROTOCOL_VERSION).toBe(ts.PROTOCOL_VERSION);
    expect(page.STATUSES).toEqual([...ts.STATUSES]);
    expect(page.COMPARTMENTS).toEqual([...ts.COMPARTMENTS]);
    expect(page.COMMAND_OPS).toEqual([...ts.COMMAND_OPS]);
    expect(page.TERMINAL_JOB_STATES).toEqual([...ts.TERMINAL_JOB_STATES]);
    expect(page.ROLLOUT_STATES).toEqual([...ts.ROLLOUT_STATES]);
    for (const s of page.TERMINAL_ROLLOUT_STATES) expect(ts.ROLLOUT_STATES).toContain(s);
  });

  for (const prefix of ["lockstep", "site/a-b_c"]) {
    it(`builds the same topics (prefix ${prefix})`, () => {
      const a = new ts.Topics(prefix);
      const b = page.topicsFor(prefix);
      expect(b.root).toBe(a.root);
      const builders: [string, string[]][] = [
        ["availability", ["web-1"]],
        ["info", ["web-1"]],
        ["compartment", ["web-1", "lock"]],
        ["commands", ["web-1"]],
        ["job", ["web-1", "j.1"]],
        ["jobOutput", ["web-1", "j.1"]],
        ["expected", []],
        ["rollout", ["r-1"]],
        ["history", ["r-1"]],
        ["events", []],
        ["hubAvailability", []],
        ["allHostState", []],
        ["allJobs", []],
        ["allRollouts", []],
        ["allHistory", []],
      ];
      for (const [name, args] of builders) {
        const expected = (a as unknown as Record<string, (...x: string[]) => unknown>)[name]!(...args);
        expect(b[name]!(...args), name).toEqual(expected);
      }
    });

    it(`parses topics the same way (prefix ${prefix})`, () => {
      const a = new ts.Topics(prefix);
      const b = page.topicsFor(prefix);
      const samples = [
        a.availability("h"),
        a.info("h"),
        a.commands("h"),
        a.actions("h"),
        a.job("h", "j"),
        a.jobOutput("h", "j"),
        a.expected(),
        a.events(),
        a.rollout("r"),
        a.history("r"),
        a.hubAvailability(),
        a.haUpdate("h"),
        ...ts.COMPARTMENTS.map((c) => a.compartment("h", c)),
        `${a.root}/hosts/h/compartments/nope`,
        `${a.root}/hosts/BAD/info`,
        `${a.root}/hosts/h/jobs/j/output/more`,
        `${a.root}/fleet/rollouts/`,
        "other/v1/hosts/h/info",
      ];
      for (const topic of samples) expect(b.parse(topic), topic).toEqual(a.parse(topic));
    });
  }

  it("writes lock diffs like protocol/flake-lock.ts", () => {
    const diff: ts.LockDiff = {
      added: [{ input: "home-manager", new: { type: "github", rev: "abcdef1234567", date: "2025-12-17" } }],
      removed: [{ input: "flake-utils", old: { type: "github" } }],
      updated: [
        { input: "nixpkgs", old: { type: "github", date: "2025-12-10" }, new: { type: "github", date: "2025-12-17" } },
        { input: "agenix", old: { type: "github", rev: "1111111aaaa", date: "2025-12-01" }, new: { type: "github", rev: "2222222bbbb", date: "2025-12-01" } },
        { input: "x/y", old: { type: "path", follows: "nixpkgs" }, new: { type: "path" } },
      ],
    };
    for (const c of [...diff.added, ...diff.removed, ...diff.updated]) expect(page.describeChange(c)).toBe(ts.describeChange(c));
    expect(page.formatLockDiff(diff)).toBe(ts.formatLockDiff(diff));
    expect(page.formatLockDiff(diff, { max: 2, separator: "\n" })).toBe(ts.formatLockDiff(diff, { max: 2, separator: "\n" }));
    const empty = { added: [], removed: [], updated: [] };
    expect(page.formatLockDiff(empty)).toBe(ts.formatLockDiff(empty));
  });

  it("accepts the same host ids", () => {
    for (const h of ["web-1", "a", "A", "-x", "x".repeat(63), "x".repeat(64), "a_b"]) {
      expect(page.isValidHostId(h), h).toBe(ts.isValidHostId(h));
    }
  });

  it("ranks statuses like protocol/compartments.ts", () => {
    expect(page.worstStatus([])).toBe(ts.worstStatus([]));
    for (const a of ts.STATUSES) {
      for (const b of ts.STATUSES) expect(page.worstStatus([a, b]), `${a}, ${b}`).toBe(ts.worstStatus([a, b]));
    }
  });
});
