/**
 * A small file in the hub's data dir, written whole (temp file + rename, mode 0600), whose failed
 * write is not lost: the text is kept and written again by retry(), which the hub's storage health
 * (hub/storage-health.ts) calls while the data dir is faulted. Each write reports to the writer's
 * StorageReporter. The owner keeps its state in memory; this keeps only what the disk lacks.
 * Used for automatic.json (the hub hands one to rollout/automatic-pause.ts as its AutomaticPauseStore)
 * and last-switch.json (hub/last-switch-file.ts). In hub/, not protocol/: protocol/ is the contract
 * (topics and payloads, bundled into the page) and does no writing.
 */
import { renameSync, writeFileSync } from "node:fs";
import { IGNORE_STORAGE, type StorageReporter } from "../protocol/storage.js";

export interface StorageFileOptions {
  path: string;
  /** Where each write's outcome goes (default: nobody). */
  storage?: StorageReporter;
  /** The first failed write after a good one: log it here once, not at every retry. */
  onFault(error: unknown): void;
}

export class StorageFile {
  /** The text the last failed write was to write; written by retry(). */
  private unsaved?: string;
  private readonly storage: StorageReporter;

  constructor(private readonly o: StorageFileOptions) {
    this.storage = o.storage ?? IGNORE_STORAGE;
  }

  /** Replace the file with `text`; false when it could not (then the text is kept for retry()). */
  write(text: string): boolean {
    const tmp = `${this.o.path}.tmp`;
    try {
      writeFileSync(tmp, text, { mode: 0o600 });
      renameSync(tmp, this.o.path);
    } catch (err) {
      if (this.unsaved === undefined) this.o.onFault(err);
      this.unsaved = text;
      this.storage.failed(err, this.o.path);
      return false;
    }
    this.unsaved = undefined;
    this.storage.ok();
    return true;
  }

  /** Write what the last failed write could not; with nothing kept, just report ok. */
  retry(): void {
    if (this.unsaved !== undefined) this.write(this.unsaved);
    else this.storage.ok();
  }
}
