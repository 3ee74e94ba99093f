/**
 * The one persisted "switch awaiting the hub's confirmation" of magic rollback, for both paths that
 * switch by themselves: the agent daemon (magic-rollback.ts, <stateDir>/awaiting-confirmation.json)
 * and the standalone self-update (self-update/confirmation.ts, <stateDir>/self-update-confirmation.json,
 * which also keeps the run record to finish). The deadline is written before the switch's job goes
 * out with `confirmBy`, so a process killed during the window finds it when it starts again: still
 * open, it waits for the rest of it; past, it rolls back. A confirmation removes it first.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { z } from "zod";
import { CommitSha } from "../protocol/index.js";
import { readJsonFile, writeJsonAtomic } from "./state.js";

export const PendingConfirmation = z.object({
  /** The switch's job id (the self-update's run id). */
  job: z.string(),
  /** When the switch is rolled back without a confirmation (ISO time; the job's `confirmBy`). */
  deadline: z.string(),
  timeoutSeconds: z.number(),
  generationBefore: z.number().int(),
  generationAfter: z.number().int(),
  /** What the checkout was built from before the switch (restored with the system). */
  commitBefore: CommitSha.optional(),
  rolloutId: z.string().optional(),
});
export type PendingConfirmation = z.infer<typeof PendingConfirmation>;

/** A pending confirmation's deadline from now. */
export function confirmationDeadline(timeoutSeconds: number, now = Date.now()): string {
  return new Date(now + timeoutSeconds * 1000).toISOString();
}

/** Milliseconds until the deadline (0 once it passed). */
export function msUntilDeadline(p: Pick<PendingConfirmation, "deadline">, now = Date.now()): number {
  return Math.max(0, Date.parse(p.deadline) - now);
}

/** One file holding at most one pending confirmation (schema: PendingConfirmation, or an extension of it). */
export class PendingConfirmationFile<S extends z.ZodType<PendingConfirmation>> {
  constructor(
    readonly file: string,
    private readonly schema: S,
    private readonly onBroken: (why: string) => void,
  ) {}

  /** The pending confirmation; an unreadable file is moved aside (never acted upon) and reported. */
  read(): z.infer<S> | undefined {
    return readJsonFile(this.file, this.schema, this.onBroken);
  }

  /**
   * The pending confirmation for a reader that does not own the file (the daemon asking whether a
   * self-update waits): an unreadable file is left for its owner to set aside and report.
   */
  peek(): z.infer<S> | undefined {
    try {
      const r = this.schema.safeParse(JSON.parse(readFileSync(this.file, "utf8")));
      return r.success ? r.data : undefined;
    } catch {
      return undefined;
    }
  }

  write(p: z.infer<S>): void {
    writeJsonAtomic(this.file, this.schema.parse(p));
  }

  clear(): void {
    rmSync(this.file, { force: true });
  }

  exists(): boolean {
    return existsSync(this.file);
  }
}
