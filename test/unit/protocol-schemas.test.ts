import { describe, it, expect } from "vitest";
import { Command, decodeJson, FleetExpected, HostInfo, JobState } from "../../protocol/index.js";

const now = new Date("2026-11-21T10:00:00Z");
const base = { id: "c1", issuedAt: now.toISOString(), expiresAt: new Date(now.getTime() + 60_000).toISOString(), requestedBy: "op" };
const sha = "a".repeat(40);

describe("Command schema", () => {
  it("accepts every op with valid args and fills defaults", () => {
    expect(Command.parse({ ...base, op: "pull", args: { commit: sha } }).args).toEqual({ commit: sha });
    expect(Command.parse({ ...base, op: "switch" }).args).toEqual({});
    expect(Command.parse({ ...base, op: "test", args: {} }).op).toBe("test");
    expect(Command.parse({ ...base, op: "rollback", args: { generation: 3 } }).args).toEqual({ generation: 3 });
    expect(Command.parse({ ...base, op: "update-inputs", args: { inputs: ["nixpkgs", "home-manager"] } }).args).toEqual({ inputs: ["nixpkgs", "home-manager"], push: false });
  });

  it("rejects shell text, unknown ops and extra args", () => {
    const bad = [
      { ...base, op: "pull", args: { commit: "main; rm -rf /" } },
      { ...base, op: "pull", args: { commit: sha.slice(0, 12) } },
      { ...base, op: "exec", args: { cmd: "id" } },
      { ...base, op: "switch", args: { flags: ["--impure"] } },
      { ...base, op: "update-inputs", args: { inputs: ["nixpkgs$(id)"] } },
      { ...base, op: "update-inputs", args: { inputs: ["--override-input"] } },
      { ...base, op: "update-inputs", args: { branch: "../../etc" } },
      { ...base, op: "rollback", args: { generation: -1 } },
      { ...base, id: "a/b", op: "test" },
    ];
    for (const b of bad) expect(Command.safeParse(b).success, JSON.stringify(b)).toBe(false);
  });

  it("decodeJson reports instead of throwing", () => {
    expect(decodeJson(Command, "")).toEqual({ ok: false, error: "empty payload" });
    const notJson = decodeJson(Command, "{nope");
    expect(notJson.ok).toBe(false);
    if (!notJson.ok) expect(notJson.error).toMatch(/not JSON/);
    const wrong = decodeJson(Command, JSON.stringify({ ...base, op: "pull", args: {} }));
    expect(wrong.ok).toBe(false);
    if (!wrong.ok) expect(wrong.error).toMatch(/args\.commit/);
    const good = decodeJson(Command, Buffer.from(JSON.stringify({ ...base, op: "refresh" })));
    expect(good.ok).toBe(true);
  });
});

describe("state schemas", () => {
  it("HostInfo applies defaults and validates ids", () => {
    const info = HostInfo.parse({ host: "web-1", hostname: "web-1.lan", os: "nixos", agentVersion: "0.1.0", branch: "main", startedAt: now.toISOString(), updatedAt: now.toISOString() });
    expect(info).toMatchObject({ priority: 100, canary: false, hold: false, tags: [] });
    expect(HostInfo.safeParse({ ...info, host: "Web 1" }).success).toBe(false);
  });
  it("JobState and FleetExpected round-trip", () => {
    const j = { id: "j", host: "a", op: "switch", state: "succeeded", summary: "generation 1 -> 2", acceptedAt: now.toISOString(), exitCode: 0 };
    expect(JobState.parse(j)).toEqual(j);
    const e = FleetExpected.parse({ repo: "o/r", branch: "main", headCommit: sha, lockHash: "h", updatedAt: now.toISOString() });
    expect(e.pendingUpdate).toBeNull();
  });
});
