/**
 * Whether the hub can write its data dir: retained on `hub/storage` (Topics.hubStorage) by the
 * hub's storage health (hub/storage-health.ts), read by the fleet page (banner) and Home Assistant
 * (a problem binary_sensor). Every durable writer of the hub (rollout store, audit log,
 * automatic.json, last-switch.json, the embedded broker's LevelDB) reports its writes through a
 * StorageReporter; one failure makes the state "fault", and it is "ok" again once every writer that
 * failed has written again.
 */
import { z } from "zod";
import { LockstepError } from "./errors.js";

const IsoTime = z.string().datetime({ offset: true });

/** One writer whose last write failed. */
export const StorageWriterFault = z.object({
  /** Which writer: "rollouts", "audit", "automatic", "last-switch", "broker". */
  writer: z.string().min(1).max(50),
  /** The file system's error code when there is one (ENOSPC, EROFS, EACCES, EIO …), else the library's. */
  code: z.string().min(1).max(50),
  path: z.string().max(1000),
  message: z.string().max(1000),
  since: IsoTime,
});
export type StorageWriterFault = z.infer<typeof StorageWriterFault>;

export const StorageHealthState = z.object({
  state: z.enum(["ok", "fault"]),
  /** When this state began. */
  since: IsoTime,
  dataDir: z.string().max(1000),
  /** While faulted: the first failure's code and path (the one to read first) … */
  code: z.string().max(50).optional(),
  path: z.string().max(1000).optional(),
  /** … and what an operator should do, in one sentence. */
  hint: z.string().max(1000).optional(),
  /** Every writer that cannot write now. */
  faults: z.array(StorageWriterFault).max(50),
  /** Rollouts held (not failed) until their state can be stored again. */
  heldRollouts: z.array(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/)).max(1000),
  updatedAt: IsoTime,
});
export type StorageHealthState = z.infer<typeof StorageHealthState>;

/** How a durable writer tells the hub whether its write reached the disk. */
export interface StorageReporter {
  ok(): void;
  failed(error: unknown, path: string): void;
}

/** A reporter that tells nobody (a writer used outside the hub, e.g. in a unit test). */
export const IGNORE_STORAGE: StorageReporter = { ok: () => undefined, failed: () => undefined };

const MESSAGE_CODES: Array<[RegExp, string]> = [
  [/no space left on device/i, "ENOSPC"],
  [/read-only file system/i, "EROFS"],
  [/disk quota exceeded/i, "EDQUOT"],
  [/permission denied/i, "EACCES"],
  [/input\/output error/i, "EIO"],
];

/**
 * The most telling code of a write error: an errno code (ENOSPC …) anywhere on the cause chain,
 * else one read from the message (LevelDB says "IO error: … No space left on device" with its own
 * code LEVEL_IO_ERROR), else the error's own code, else "unknown".
 */
export function storageErrorCode(error: unknown): string {
  let own: string | undefined;
  const texts: string[] = [];
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return code;
    if (typeof code === "string") own ??= code;
    texts.push(e instanceof Error ? e.message : String(e));
  }
  for (const [re, code] of MESSAGE_CODES) if (texts.some((t) => re.test(t))) return code;
  return own ?? "unknown";
}

/** What to do about a storage fault with this code. */
export function storageFaultHint(code: string, dataDir: string): string {
  const what =
    code === "ENOSPC" || code === "EDQUOT"
      ? `free space on the file system of ${dataDir}`
      : code === "EROFS"
        ? `remount the file system of ${dataDir} read-write`
        : code === "EACCES" || code === "EPERM"
          ? `give the hub's user write access to ${dataDir}`
          : `check the disk holding ${dataDir} (see the hub's log)`;
  return `${what}; the hub notices by itself within seconds, writes what it kept and resumes held rollouts`;
}

/** Refused because the data dir cannot be written now (HTTP 409: retry once storage is ok). */
export class StorageFaultError extends LockstepError {
  override name = "StorageFaultError";
  constructor(
    readonly storageCode: string,
    readonly path: string,
    hint: string,
  ) {
    super(`the hub cannot write its data dir (${storageCode} at ${path}), so it starts no rollout now`, "storage-fault", hint);
  }
}
