/**
 * The hosts' last successful switch times, kept in the hub's data dir so the metric survives a hub
 * restart: the agents' retained job states only hold each host's newest `keepJobs` jobs, and a
 * host that ran previews and tests since its last switch would otherwise lose its series (and its
 * "not updated in 7 days" alert) at every restart. Written whole (temp file + rename) on a change.
 */
import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import { z } from "zod";
import { isValidHostId, type StorageReporter } from "../protocol/index.js";
import { StorageFile } from "./storage-file.js";

/** More hosts than any fleet Lockstep is built for; a file beyond it is not read. */
const MAX_HOSTS = 100_000;

const LastSwitchFileShape = z.object({
  version: z.literal(1),
  /** host id → Unix seconds. */
  hosts: z.record(z.string().refine(isValidHostId, "a host id"), z.number().finite().nonnegative()),
});

export class LastSwitchFile {
  /** The file; what a failed save could not write is kept there and written by retry(). */
  private readonly file: StorageFile;

  constructor(
    private readonly path: string,
    private readonly log: Logger,
    storage?: StorageReporter,
  ) {
    this.file = new StorageFile({
      path,
      ...(storage ? { storage } : {}),
      // Kept in memory (the metric is served from there) and written again once the data dir can be written.
      onFault: (err) => log.warn({ err, path }, "cannot store the last-switch times (the metric is kept in memory)"),
    });
  }

  /** What the file holds; nothing when it is missing, and nothing (with a warning) when it is not valid. */
  load(): Map<string, number> {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.log.warn({ err, path: this.path }, "cannot read the last-switch times; starting without them");
      return new Map();
    }
    let parsed: z.infer<typeof LastSwitchFileShape>;
    try {
      parsed = LastSwitchFileShape.parse(JSON.parse(text));
    } catch (err) {
      this.log.warn({ err, path: this.path }, "the last-switch times file is not valid; starting without it");
      return new Map();
    }
    const entries = Object.entries(parsed.hosts);
    if (entries.length > MAX_HOSTS) {
      this.log.warn({ path: this.path, hosts: entries.length }, "the last-switch times file names too many hosts; starting without it");
      return new Map();
    }
    return new Map(entries);
  }

  save(times: ReadonlyMap<string, number>): void {
    this.file.write(JSON.stringify({ version: 1, hosts: Object.fromEntries(times) }) + "\n");
  }

  /** Write what the last failed save could not (the hub's storage health calls this while faulted). */
  retry(): void {
    this.file.retry();
  }
}
