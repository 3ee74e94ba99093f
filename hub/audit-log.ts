/**
 * The audit log: every AuditEvent ("who did what, when") appended as one JSON line to
 * <dataDir>/audit.jsonl (append-only, created 0600), with the newest events kept in memory for
 * GET /api/audit. On start the tail of the file is read back; a malformed line is skipped and logged.
 * When the file would grow past `maxBytes` it is rotated like logrotate does it: audit.jsonl.1 is
 * the newest old file, up to `keepFiles` of them; the oldest is deleted.
 */
import { appendFileSync, closeSync, existsSync, fstatSync, openSync, readSync, renameSync, rmSync, statSync, truncateSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import type { Logger } from "pino";
import { z } from "zod";
import type { HostRequestInfo } from "../broker/embedded.js";
import { newAuditEventId } from "../protocol/audit.js";
import { decodeJson } from "../protocol/payload.js";
import { AuditEvent } from "../protocol/schemas.js";
import { IGNORE_STORAGE, type StorageReporter } from "../protocol/storage.js";

export const AUDIT_FILE = "audit.jsonl";
export const AUDIT_MEMORY = 500;
export const AUDIT_MAX_BYTES = 10 * 1024 * 1024;
export const AUDIT_KEEP_FILES = 5;
/** Events kept in memory while the file cannot be written (the oldest are dropped beyond it, and counted). */
export const AUDIT_PENDING_MAX = 5000;
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
  /** Where each write's outcome goes (the hub's storage health). */
  storage?: StorageReporter;
  /** Events kept while the file cannot be written (default AUDIT_PENDING_MAX). */
  pendingMax?: number;
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
  private readonly storage: StorageReporter;
  private readonly pendingMax: number;
  /** Events not yet in the file (it could not be written), oldest first; written before any newer one. */
  private pending: AuditEvent[] = [];
  /** Pending events dropped (oldest first) because more than pendingMax piled up. */
  private dropped = 0;

  constructor(opts: AuditLogOptions) {
    this.file = join(opts.dataDir, AUDIT_FILE);
    this.keep = opts.keep ?? AUDIT_MEMORY;
    this.maxBytes = opts.maxBytes ?? AUDIT_MAX_BYTES;
    this.keepFiles = opts.keepFiles ?? AUDIT_KEEP_FILES;
    this.log = opts.log;
    this.storage = opts.storage ?? IGNORE_STORAGE;
    this.pendingMax = opts.pendingMax ?? AUDIT_PENDING_MAX;
    this.load();
  }

  /**
   * Append one event to the in-memory window and the file. When the file cannot be written (full or
   * read-only data dir) the event is kept in memory, in order, and written by flushPending() once it
   * can; the failure goes to the storage reporter, not to the caller.
   */
  append(event: AuditEvent): void {
    const parsed = AuditEvent.parse(event);
    this.events.push(parsed);
    if (this.events.length > this.keep) this.events.splice(0, this.events.length - this.keep);
    this.pending.push(parsed);
    if (this.pending.length > this.pendingMax) {
      this.dropped += this.pending.length - this.pendingMax;
      this.pending.splice(0, this.pending.length - this.pendingMax);
    }
    this.flushPending();
  }

  /** Events waiting to be written (kept in memory while the file cannot be written). */
  get pendingCount(): number {
    return this.pending.length;
  }

  /**
   * Write the kept events, oldest first (and, when some had to be dropped, how many); true when none
   * is left. Called on every append and by the hub's storage health while it is faulted.
   */
  flushPending(): boolean {
    try {
      if (this.dropped > 0) {
        const at = new Date();
        this.write({ id: newAuditEventId(at), at: at.toISOString(), actor: "hub", action: "audit.dropped", target: "audit", details: { count: this.dropped, why: "the data dir could not be written and more events came than are kept in memory" } });
        this.dropped = 0;
      }
      while (this.pending.length > 0) {
        this.write(this.pending[0]!);
        this.pending.shift();
      }
    } catch (err) {
      this.storage.failed(err, this.file);
      return false;
    }
    this.storage.ok();
    return true;
  }

  private write(event: AuditEvent): void {
    const line = JSON.stringify(event) + "\n";
    const size = Buffer.byteLength(line);
    if (this.bytes > 0 && this.bytes + size > this.maxBytes) this.rotate();
    try {
      appendFileSync(this.file, line, { mode: 0o600 });
    } catch (err) {
      // A full disk may have taken part of the line: cut it off, or the next line would be glued to it.
      try {
        if (existsSync(this.file)) truncateSync(this.file, this.bytes);
      } catch {
        // Read-only: nothing was written either.
      }
      throw err;
    }
    this.bytes += size;
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
    id: newAuditEventId(now),
    at: now.toISOString(),
    actor: actorName(info.user),
    action: info.kind === "command" ? "command.sent" : "action.sent",
    target: info.host,
    details,
  };
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
