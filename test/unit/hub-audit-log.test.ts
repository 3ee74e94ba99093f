import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { describeHostRequest } from "../../broker/embedded.js";
import { AuditLog, auditHandler, hostRequestEvent } from "../../hub/audit-log.js";
import { AuditEvent } from "../../protocol/index.js";

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "lockstep-audit-"));
  dirs.push(d);
  return d;
}

/** A pino logger whose lines are kept for assertions. */
function memoryLog(): { log: pino.Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const log = pino({ level: "info" }, { write: (s: string) => void out.push(s) });
  return { log, lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const ev = (i: number, extra: Partial<AuditEvent> = {}): AuditEvent => ({
  id: `e-${i}`,
  at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
  actor: "admin",
  action: "command.sent",
  target: "web-1",
  details: { op: "switch" },
  ...extra,
});

describe("AuditLog", () => {
  it("appends one JSON line per event to a 0600 file and lists newest first", () => {
    const dir = tempDir();
    const audit = new AuditLog({ dataDir: dir, log: memoryLog().log });
    for (let i = 1; i <= 3; i++) audit.append(ev(i));
    const lines = readFileSync(join(dir, "audit.jsonl"), "utf8").trim().split("\n");
    expect(lines.map((l) => (JSON.parse(l) as AuditEvent).id)).toEqual(["e-1", "e-2", "e-3"]);
    expect(statSync(join(dir, "audit.jsonl")).mode & 0o777).toBe(0o600);
    expect(audit.recent(10).map((e) => e.id)).toEqual(["e-3", "e-2", "e-1"]);
    expect(audit.recent(2).map((e) => e.id)).toEqual(["e-3", "e-2"]);
    expect(audit.recent(2, { before: "e-3" }).map((e) => e.id)).toEqual(["e-2", "e-1"]);
    expect(audit.recent(2, { before: "e-1" })).toEqual([]);
    expect(audit.recent(2, { before: "unknown" })).toEqual([]);
    expect(() => audit.append({ id: "x" } as AuditEvent)).toThrow();
  });

  it("reloads the file's tail at start, skipping (and logging) malformed lines", () => {
    const dir = tempDir();
    const first = new AuditLog({ dataDir: dir, log: memoryLog().log });
    first.append(ev(1));
    appendFileSync(join(dir, "audit.jsonl"), "{not json\n" + JSON.stringify({ id: 7 }) + "\n\n");
    first.append(ev(2));
    const { log, lines } = memoryLog();
    const again = new AuditLog({ dataDir: dir, log });
    expect(again.recent(100).map((e) => e.id)).toEqual(["e-2", "e-1"]);
    expect(lines().some((l) => l.msg === "audit log: skipped malformed lines" && l.skipped === 2)).toBe(true);
    again.append(ev(3));
    expect(new AuditLog({ dataDir: dir, log }).recent(1)[0]?.id).toBe("e-3");
  });

  it("keeps only the newest events in memory, also after a reload", () => {
    const dir = tempDir();
    const audit = new AuditLog({ dataDir: dir, log: memoryLog().log, keep: 5 });
    for (let i = 1; i <= 12; i++) audit.append(ev(i));
    expect(audit.size).toBe(5);
    expect(audit.recent(500).map((e) => e.id)).toEqual(["e-12", "e-11", "e-10", "e-9", "e-8"]);
    const reloaded = new AuditLog({ dataDir: dir, log: memoryLog().log, keep: 5 });
    expect(reloaded.recent(500).map((e) => e.id)).toEqual(["e-12", "e-11", "e-10", "e-9", "e-8"]);
    // The file keeps everything.
    expect(readFileSync(join(dir, "audit.jsonl"), "utf8").trim().split("\n")).toHaveLength(12);
  });
});

describe("AuditLog rotation", () => {
  it("rotates before the file passes maxBytes, keeps keepFiles old files, and reloads across a rotation", () => {
    const dir = tempDir();
    const lineBytes = Buffer.byteLength(JSON.stringify(ev(10)) + "\n");
    // Three events per file.
    const opts = { dataDir: dir, log: memoryLog().log, maxBytes: lineBytes * 3, keepFiles: 2 };
    const audit = new AuditLog(opts);
    for (let i = 10; i < 20; i++) audit.append(ev(i));
    const ids = (f: string) => readFileSync(join(dir, f), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as AuditEvent).id);
    expect(ids("audit.jsonl")).toEqual(["e-19"]);
    expect(ids("audit.jsonl.1")).toEqual(["e-16", "e-17", "e-18"]);
    expect(ids("audit.jsonl.2")).toEqual(["e-13", "e-14", "e-15"]);
    expect(existsSync(join(dir, "audit.jsonl.3"))).toBe(false);
    expect(statSync(join(dir, "audit.jsonl.1")).mode & 0o777).toBe(0o600);
    // Memory is not affected by rotation, and a restart right after one still shows recent events.
    expect(audit.recent(4).map((e) => e.id)).toEqual(["e-19", "e-18", "e-17", "e-16"]);
    const reloaded = new AuditLog(opts);
    expect(reloaded.recent(4).map((e) => e.id)).toEqual(["e-19", "e-18", "e-17", "e-16"]);
    // The reloaded log knows the current file's size: the next two fit, the third rotates.
    reloaded.append(ev(20));
    reloaded.append(ev(21));
    expect(ids("audit.jsonl")).toEqual(["e-19", "e-20", "e-21"]);
    reloaded.append(ev(22));
    expect(ids("audit.jsonl")).toEqual(["e-22"]);
    expect(ids("audit.jsonl.1")).toEqual(["e-19", "e-20", "e-21"]);
  });

  it("keeps no old file with keepFiles 0", () => {
    const dir = tempDir();
    const lineBytes = Buffer.byteLength(JSON.stringify(ev(10)) + "\n");
    const audit = new AuditLog({ dataDir: dir, log: memoryLog().log, maxBytes: lineBytes * 2, keepFiles: 0 });
    for (let i = 10; i < 15; i++) audit.append(ev(i));
    expect(readFileSync(join(dir, "audit.jsonl"), "utf8").trim().split("\n")).toHaveLength(1);
    expect(existsSync(join(dir, "audit.jsonl.1"))).toBe(false);
  });
});

describe("commands seen by the broker as audit events", () => {
  const command = { id: "c-1", op: "switch", args: {}, issuedAt: "2026-01-01T00:00:00Z", expiresAt: "2026-01-01T00:15:00Z", requestedBy: "someone-else" };

  it("records the authenticated user as actor and the claimed requestedBy in details", () => {
    const info = { clientId: "x", user: "olga", role: "operator", kind: "command" as const, host: "web-1", ...describeHostRequest("command", JSON.stringify(command)) };
    const e = AuditEvent.parse(hostRequestEvent(info));
    expect(e).toMatchObject({ actor: "olga", action: "command.sent", target: "web-1", details: { op: "switch", id: "c-1", requestedBy: "someone-else" } });
  });

  it("records actions with the bare op, and invalid payloads as invalid", () => {
    const action = hostRequestEvent({ clientId: "x", user: "ha", role: "operator", kind: "action", host: "db-1", ...describeHostRequest("action", "pull\n") });
    expect(action).toMatchObject({ actor: "ha", action: "action.sent", target: "db-1", details: { op: "pull" } });
    const bad = hostRequestEvent({ clientId: "x", user: "olga", role: "operator", kind: "command", host: "db-1", ...describeHostRequest("command", "{nope") });
    expect(bad?.details).toMatchObject({ op: null, invalid: true });
  });

  it("records any user's command with the authenticated user as actor, hub-role scripts too", () => {
    const request = (user: string, role: string) => ({
      clientId: "x",
      user,
      role,
      kind: "command" as const,
      host: "web-1",
      ...describeHostRequest("command", JSON.stringify({ ...command, rolloutId: "r-1" })),
    });
    // A hub-role user (a script with hub credentials) is recorded like anyone else (the hub process's
    // own connection raises no hostRequest: broker-embedded.test.ts).
    expect(hostRequestEvent(request("automation", "hub"))).toMatchObject({ actor: "automation", action: "command.sent" });
    // An operator's command is recorded, whatever rolloutId or requestedBy it claims.
    expect(hostRequestEvent(request("olga", "operator"))).toMatchObject({ actor: "olga", action: "command.sent", details: { id: "c-1", rolloutId: "r-1", requestedBy: "someone-else" } });
  });
});

describe("GET /api/audit", () => {
  function call(audit: AuditLog, url: string, user = true): { status: number; body: { events?: AuditEvent[]; error?: string } } {
    let status = 0;
    let text = "";
    const res = {
      writeHead: (s: number) => {
        status = s;
        return res;
      },
      end: (t: string) => void (text = t),
    } as unknown as ServerResponse;
    const req = { url, ...(user ? { lockstepUser: { name: "v", role: "viewer" } } : {}) } as unknown as IncomingMessage;
    auditHandler(audit)(req, res);
    return { status, body: JSON.parse(text) as { events?: AuditEvent[]; error?: string } };
  }

  it("returns the newest events first, 100 by default, and refuses bad queries", () => {
    const audit = new AuditLog({ dataDir: tempDir(), log: memoryLog().log });
    for (let i = 1; i <= 120; i++) audit.append(ev(i));
    const all = call(audit, "/api/audit");
    expect(all.status).toBe(200);
    expect(all.body.events).toHaveLength(100);
    expect(all.body.events?.[0]?.id).toBe("e-120");
    expect(call(audit, "/api/audit?limit=2").body.events?.map((e) => e.id)).toEqual(["e-120", "e-119"]);
    for (const q of ["limit=0", "limit=501", "limit=abc", "limit=1.5", "limit=1&limit=2", "foo=1"]) {
      const r = call(audit, `/api/audit?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.error, q).toMatch(/limit|unknown query parameter|more than once/);
    }
    expect(call(audit, "/api/audit", false).status).toBe(401);
  });
});
