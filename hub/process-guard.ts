/**
 * What the hub process (and a `lockstep broker` node) does about its own faults, so that they are
 * states and not crashes:
 *
 * - An unhandled promise rejection (a library call site we did not wrap, e.g. Aedes' persistence
 *   failing on a full disk) is logged and audited as "hub.fault" and the hub keeps serving. Node's
 *   default is to exit, which would take the broker and every rollout with it. Audits are
 *   rate-limited per message so a fault in a loop cannot flood the log.
 * - A marker file in the data dir says the hub is running; it is removed on a clean stop. Finding
 *   it at start means the last run ended without one (SIGKILL, OOM, power loss): audited as
 *   "hub.unclean-stop", because resumed rollouts and lost results start there.
 *
 * A `lockstep broker` node has no audit log: it only logs both, and keeps its own marker file.
 *
 * Synchronous exceptions are not caught: after one, the process state is unknown, and the service
 * manager restarting the hub (which then reports the unclean stop) is the safe answer.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { newAuditEventId } from "../protocol/audit.js";
import type { AuditEvent } from "../protocol/schemas.js";

export const RUNNING_MARKER = "hub.running";
/** The marker of a `lockstep broker` node (its data dir may be a hub's too). */
export const BROKER_RUNNING_MARKER = "broker.running";

/** The same fault is audited at most once per this long; the log line is written every time. */
const AUDIT_EVERY_MS = 60_000;

export interface ProcessGuardOptions {
  dataDir: string;
  log: Logger;
  /** Which process this is: the marker file's name and the log lines say it. */
  role?: "hub" | "broker";
  /** Where audit events go (the hub publishes them on fleet/events); a broker node only logs. */
  audit?: (event: AuditEvent) => void;
  /** Catch unhandled rejections on this emitter (the hub process; off when the hub runs inside a test runner). */
  process?: NodeJS.EventEmitter;
  now?: () => Date;
}

export interface ProcessGuard {
  stop(): void;
}

export function startProcessGuard(opts: ProcessGuardOptions): ProcessGuard {
  const now = opts.now ?? (() => new Date());
  const role = opts.role ?? "hub";
  const marker = join(opts.dataDir, role === "hub" ? RUNNING_MARKER : BROKER_RUNNING_MARKER);
  const audit = opts.audit ?? (() => undefined);
  const event = (action: string, details: Record<string, unknown>): AuditEvent => {
    const at = now();
    return { id: newAuditEventId(at), at: at.toISOString(), actor: "hub", action, target: "hub", details };
  };

  const previous = readMarker(marker);
  if (previous) {
    opts.log.warn({ previous }, `the last ${role} run did not stop cleanly`);
    audit(event("hub.unclean-stop", previous));
  }
  try {
    writeFileSync(marker, JSON.stringify({ pid: process.pid, startedAt: now().toISOString() }) + "\n", { mode: 0o600 });
  } catch (err) {
    // A read-only data dir is reported where storage is used; the marker alone is no reason to stop.
    opts.log.warn({ err, marker }, "cannot write the running marker: an unclean stop will not be reported");
  }

  const lastAudit = new Map<string, { at: number; suppressed: number }>();
  const onRejection = (reason: unknown) => {
    const message = reason instanceof Error ? reason.message : String(reason);
    opts.log.error({ err: reason }, "unhandled rejection: kept running (this is a bug; please report it)");
    const key = message.slice(0, 200);
    const t = now().getTime();
    const seen = lastAudit.get(key);
    if (seen && t - seen.at < AUDIT_EVERY_MS) {
      seen.suppressed += 1;
      return;
    }
    lastAudit.set(key, { at: t, suppressed: 0 });
    if (lastAudit.size > 100) lastAudit.delete(lastAudit.keys().next().value as string);
    audit(event("hub.fault", { kind: "unhandled-rejection", message: message.slice(0, 500), ...(seen?.suppressed ? { suppressedSinceLast: seen.suppressed } : {}) }));
  };
  opts.process?.on("unhandledRejection", onRejection);

  return {
    stop() {
      opts.process?.off("unhandledRejection", onRejection);
      rmSync(marker, { force: true });
    },
  };
}

/** The marker's content, or a stand-in when it is unreadable; undefined when there is none. */
function readMarker(path: string): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    return { unreadable: (err as Error).message };
  }
  try {
    const value = JSON.parse(text.slice(0, 1000)) as { pid?: unknown; startedAt?: unknown };
    return { previousPid: typeof value.pid === "number" ? value.pid : null, previousStartedAt: typeof value.startedAt === "string" ? value.startedAt : null };
  } catch {
    return { unreadable: "not JSON" };
  }
}
