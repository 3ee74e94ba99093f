/**
 * The audit log: every AuditEvent ("who did what, when") appended as one JSON line to
 * <dataDir>/audit.jsonl (append-only, created 0600), with the newest events kept in memory for
 * GET /api/audit. On start the tail of the file is read back; a malformed line is skipped and logged.
 * When the file would grow past `maxBytes` it is rotated like logrotate does it: audit.jsonl.1 is
 * the newest old file, up to `keepFiles` of them; the oldest is deleted.
 */
import { randomBytes } from "node:crypto";
import { appendFileSync, closeSync, existsSync, fstatSync, openSync, readSync, renameSync, rmSync, statSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import type { Logger } from "pino";
import { z } from "zod";
import type { HostRequestInfo } from "../broker/embedded.js";
import { decodeJson } from "../protocol/payload.js";
import { AuditEvent } from "../protocol/schemas.js";

export const AUDIT_FILE = "audit.jsonl";
export const AUDIT_MEMORY = 500;
export const AUDIT_MAX_BYTES = 10 * 1024 * 1024;
export const AUDIT_KEEP_FILES = 5;
/** How much of the file's end is read at start: plenty for AUDIT_MEMORY lines of normal size. */
const TAIL_BYTES = 1024 * 1024;

export interface AuditLogOptions {
  dataDir: string;
  log: Logger;
  /** Events kept in memory (default 500). */
  keep?: number;
  /** Rotate before the file grows past this (default 10 MiB). */
  maxBytes?: number;
  /** Rotated files kept: audit.jsonl.1 … .N (default 5; 0 keeps none). */
  keepFiles?: number;
}

export class AuditLog {
  readonly file: string;
  private readonly keep: number;
  private readonly log: Logger;
  private readonly maxBytes: number;
  private readonly keepFiles: number;
  /** The current file's size, kept here so an append costs no stat. */
  private bytes = 0;
  /** Oldest first. */
  private events: AuditEvent[] = [];

  constructor(opts: AuditLogOptions) {
    this.file = join(opts.dataDir, AUDIT_FILE);
    this.keep = opts.keep ?? AUDIT_MEMORY;
    this.maxBytes = opts.maxBytes ?? AUDIT_MAX_BYTES;
    this.keepFiles = opts.keepFiles ?? AUDIT_KEEP_FILES;
    this.log = opts.log;
    this.load();
  }

  /** Append one event to the file and the in-memory window. */
  append(event: AuditEvent): void {
    const parsed = AuditEvent.parse(event);
    const line = JSON.stringify(parsed) + "\n";
    const size = Buffer.byteLength(line);
    if (this.bytes > 0 && this.bytes + size > this.maxBytes) this.rotate();
    appendFileSync(this.file, line, { mode: 0o600 });
    this.bytes += size;
    this.events.push(parsed);
    if (this.events.length > this.keep) this.events.splice(0, this.events.length - this.keep);
  }

  /** Newest first, at most `limit`; with `before` (an event id) only events older than that one. */
  recent(limit: number, opts: { before?: string } = {}): AuditEvent[] {
    let end = this.events.length;
    if (opts.before !== undefined) {
      const i = this.events.findIndex((e) => e.id === opts.before);
      if (i < 0) return [];
      end = i;
    }
    const n = Math.max(0, Math.min(limit, end));
    return this.events.slice(end - n, end).reverse();
  }

  get size(): number {
    return this.events.length;
  }

  /** audit.jsonl → .1 → .2 …; the file beyond keepFiles is deleted. */
  private rotate(): void {
    const name = (n: number) => (n === 0 ? this.file : `${this.file}.${n}`);
    if (this.keepFiles === 0) rmSync(this.file, { force: true });
    else rmSync(name(this.keepFiles), { force: true });
    for (let n = this.keepFiles - 1; n >= 0; n--) {
      if (existsSync(name(n))) renameSync(name(n), name(n + 1));
    }
    this.bytes = 0;
    this.log.info({ file: this.file, keepFiles: this.keepFiles }, "audit log rotated");
  }

  private load(): void {
    this.bytes = existsSync(this.file) ? statSync(this.file).size : 0;
    // The newest events may straddle a rotation: read the previous file first when there is one.
    const lines = [...tailLines(`${this.file}.1`), ...tailLines(this.file)];
    if (lines.length === 0) return;
    let skipped = 0;
    const events: AuditEvent[] = [];
    for (const line of lines.slice(-this.keep * 2)) {
      const r = decodeJson(AuditEvent, line);
      if (r.ok) events.push(r.value);
      else skipped++;
    }
    if (skipped > 0) this.log.warn({ file: this.file, skipped }, "audit log: skipped malformed lines");
    this.events = events.slice(-this.keep);
    this.log.info({ file: this.file, loaded: this.events.length }, "audit log loaded");
  }
}

/** The non-empty lines of a file's last TAIL_BYTES (none when it does not exist). */
function tailLines(file: string): string[] {
  if (!existsSync(file)) return [];
  const fd = openSync(file, "r");
  let text: string;
  try {
    const size = fstatSync(fd).size;
    const start = Math.max(0, size - TAIL_BYTES);
    const buf = Buffer.alloc(size - start);
    readSync(fd, buf, 0, buf.length, start);
    text = buf.toString("utf8");
    // Started mid-line: the first (partial) line is not a whole event.
    if (start > 0) text = text.slice(text.indexOf("\n") + 1);
  } finally {
    closeSync(fd);
  }
  return text.split("\n").filter((l) => l.trim() !== "");
}

/** The in-process hub's internal MQTT user ("$hub") is shown as "hub", like the rollout engine's own events. */
function actorName(user: string): string {
  return user.startsWith("$") ? user.slice(1) : user;
}

/** The audit event for a command or action the broker saw an operator or hub publish. */
export function hostRequestEvent(info: HostRequestInfo, now = new Date()): AuditEvent {
  const details: Record<string, unknown> = { op: info.op ?? null };
  if (info.kind === "command") {
    details.id = info.id ?? null;
    details.requestedBy = info.requestedBy ?? null;
    if (info.rolloutId !== undefined) details.rolloutId = info.rolloutId;
  }
  if (!info.valid) details.invalid = true;
  return {
    id: `e-${now.getTime().toString(36)}-${randomBytes(6).toString("hex")}`,
    at: now.toISOString(),
    actor: actorName(info.user),
    action: info.kind === "command" ? "command.sent" : "action.sent",
    target: info.host,
    details,
  };
}

/** How long a hub rollout command waits for the rollout engine's own "command.sent" event. */
export const ENGINE_AUDIT_WAIT_MS = 3000;
const REMEMBERED_IDS = 1000;

/**
 * Turns the broker's hostRequest events into audit events without recording a command twice: the
 * rollout engine audits each command it sends ("command.sent" with details.commandId, published just
 * after the command). A hub command carrying a rolloutId is therefore held for a moment and dropped
 * when the engine's event for its id arrives; other senders of rollout commands (e.g. the rollback
 * node) do not audit them, so those are published when the wait runs out. Operators' commands and
 * actions are published at once, whatever they claim.
 */
export class HostRequestAuditor {
  private pending = new Map<string, { timer: NodeJS.Timeout; event: AuditEvent }>();
  /** Command ids the engine audited before the broker's event was seen (not expected, but cheap). */
  private engineAudited = new Set<string>();

  constructor(
    private readonly publish: (event: AuditEvent) => void,
    private readonly waitMs = ENGINE_AUDIT_WAIT_MS,
  ) {}

  onHostRequest(info: HostRequestInfo): void {
    const event = hostRequestEvent(info);
    const id = info.id;
    if (info.kind !== "command" || info.role !== "hub" || info.rolloutId === undefined || id === undefined) return this.publish(event);
    if (this.engineAudited.delete(id) || this.pending.has(id)) return;
    const timer = setTimeout(() => {
      this.pending.delete(id);
      this.publish(event);
    }, this.waitMs);
    this.pending.set(id, { timer, event });
  }

  /** Every event seen on fleet/events. */
  onAuditEvent(event: AuditEvent): void {
    const id = event.action === "command.sent" && event.details?.commandId;
    if (typeof id !== "string" || typeof event.details?.rolloutId !== "string") return;
    const held = this.pending.get(id);
    if (held) {
      clearTimeout(held.timer);
      this.pending.delete(id);
      return;
    }
    this.engineAudited.add(id);
    if (this.engineAudited.size > REMEMBERED_IDS) this.engineAudited.delete(this.engineAudited.values().next().value as string);
  }

  /** Publish what is still held (the hub is stopping). */
  flush(): void {
    for (const { timer, event } of this.pending.values()) {
      clearTimeout(timer);
      this.publish(event);
    }
    this.pending.clear();
  }
}

const AuditQuery = z
  .object({
    limit: z
      .string()
      .regex(/^\d{1,3}$/, "limit must be a whole number from 1 to 500")
      .transform(Number)
      .pipe(z.number().int().min(1, "limit must be at least 1").max(AUDIT_MEMORY, `limit must be at most ${AUDIT_MEMORY}`))
      .default(100),
    before: z.string().min(1).max(200).optional(),
  })
  .strict();

type Req = IncomingMessage & { originalUrl?: string; lockstepUser?: { name: string; role: string } };

/** `GET /api/audit?limit=N[&before=<event id>]` → {events} newest first; runs after the API's Basic auth. */
export function auditHandler(audit: AuditLog): (req: Req, res: ServerResponse) => void {
  return (req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(JSON.stringify(body));
    };
    if (!req.lockstepUser) return send(401, { error: "authentication required" });
    const params = new URL(req.originalUrl ?? req.url ?? "/", "http://localhost").searchParams;
    const query: Record<string, string> = {};
    for (const key of new Set(params.keys())) {
      const values = params.getAll(key);
      if (values.length > 1) return send(400, { error: `query parameter ${key} given more than once` });
      query[key] = values[0]!;
    }
    const parsed = AuditQuery.safeParse(query);
    if (!parsed.success) {
      const error = parsed.error.issues.map((i) => (i.code === "unrecognized_keys" ? `unknown query parameter(s): ${i.keys.join(", ")}` : i.message)).join("; ");
      return send(400, { error });
    }
    send(200, { events: audit.recent(parsed.data.limit, parsed.data.before !== undefined ? { before: parsed.data.before } : {}) });
  };
}
