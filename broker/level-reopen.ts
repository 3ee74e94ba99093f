/**
 * LevelDB after a failed background write. When a compaction (a memtable written out as a table
 * file) fails, e.g. on a full disk, LevelDB records the error and fails every later write with it,
 * for as long as the database stays open: measured on a 8 MiB tmpfs, writes still failed with
 * "000018.ldb: No space left on device" after 2 MiB had been freed, and worked at once after a
 * reopen (reads kept working throughout). Without a reopen the broker's storage stayed faulted
 * until the hub was restarted.
 *
 * So while the broker's storage is faulted, each retry first checks: a LevelDB write fails, but a
 * file can be written in the LevelDB's directory. Then the database is stuck, not the disk, and it
 * is closed and opened again (the same Level object: Aedes' persistence and the session owners
 * keep their reference; operations during the reopen wait for it or fail as a reported fault).
 */
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Level } from "level";
import type { Logger } from "pino";

const PROBE_KEY = "lockstep:storage-probe";
const PROBE_FILE = ".lockstep-level-probe";

/** Write and delete a probe key: throws what the LevelDB throws. */
export async function probeLevel(db: Level<string, Buffer>): Promise<void> {
  await db.put(PROBE_KEY, Buffer.from("probe"));
  await db.del(PROBE_KEY);
}

/**
 * Reopen `db` (whose files are in `dir`) when its writes fail although `dir` can be written.
 * Returns whether it reopened; a disk that is still full or read-only is left alone.
 */
export async function reopenIfStuck(db: Level<string, Buffer>, dir: string, log: Logger): Promise<boolean> {
  let levelError: unknown;
  try {
    await probeLevel(db);
    return false;
  } catch (err) {
    levelError = err;
  }
  const file = join(dir, PROBE_FILE);
  try {
    await writeFile(file, "probe\n");
    await rm(file, { force: true });
  } catch {
    return false; // the disk itself still cannot be written: a reopen would not help
  }
  log.warn({ dir, err: (levelError as Error).message }, "the broker's LevelDB keeps failing although its directory can be written again: reopening it");
  await db.close();
  await db.open();
  return true;
}
