/**
 * One row of the fault matrix (`npm run faults`): a scenario run on real parts (brokers, hub and
 * agent processes, the local GitHub, real git and Nix), what should happen, and what did.
 *
 * Every row has the same shape: a name (for --only), the scenario and the expected outcome in
 * words, how long it takes (fast rows run in CI), and run(), which returns what it observed and
 * whether that is what was expected. A row that throws or runs out of time fails with the reason.
 */

/** fast: seconds, run in CI; slow: minutes (a hub, agents and Nix); long: the 10-minute soak, by hand. */
export type RowSpeed = "fast" | "slow" | "long";

export interface RowOutcome {
  observed: string;
  pass: boolean;
}

export interface FaultRow {
  name: string;
  scenario: string;
  expected: string;
  speed: RowSpeed;
  /** Give up after this long (default: fast 90 s, slow 10 min, long 20 min). */
  timeoutMs?: number;
  run(ctx: RowContext): Promise<RowOutcome>;
}

export interface RowContext {
  /** Runs after the row, whatever its outcome (last registered first). */
  cleanup(fn: () => unknown): void;
  /** A progress line (printed by the command line runner, dropped under vitest). */
  log(line: string): void;
  /**
   * Something costly several rows use (the local GitHub, a whole fleet): made by the first row that
   * asks, kept for the next ones, disposed of by closeShared() at the end of the run. A row leaves
   * it as it found it (faults cleared, its PRs closed, rollouts finished).
   */
  shared<T>(key: string, create: () => Promise<T>, dispose: (value: T) => unknown): Promise<T>;
}

const sharedValues = new Map<string, { value: Promise<unknown>; dispose: (value: never) => unknown }>();

export function sharedValue<T>(key: string, create: () => Promise<T>, dispose: (value: T) => unknown): Promise<T> {
  let entry = sharedValues.get(key);
  if (!entry) {
    const value = create();
    entry = { value, dispose: dispose as (value: never) => unknown };
    sharedValues.set(key, entry);
    // A failed creation is not kept: the next row tries again.
    value.catch(() => sharedValues.delete(key));
  }
  return entry.value as Promise<T>;
}

/** Dispose of a shared value now (e.g. a row that may have left it broken); the next row makes a new one. */
export async function dropShared(key: string): Promise<void> {
  const entry = sharedValues.get(key);
  if (!entry) return;
  sharedValues.delete(key);
  const value = await entry.value.catch(() => undefined);
  if (value !== undefined) await entry.dispose(value as never);
}

/** Dispose of everything rows shared (the end of a run). */
export async function closeShared(): Promise<void> {
  for (const key of [...sharedValues.keys()]) await dropShared(key);
}

/**
 * Collects what a row saw and which expectations failed:
 *   const c = new Checks();
 *   c.see(`merge: ${err.code}`);
 *   c.expect(requests === 1, `merge sent ${requests} times`);
 *   return c.outcome();
 * The observed text is every `see` joined by "; ", then "FAILED: ..." with the failed expectations.
 */
export class Checks {
  private readonly seen: string[] = [];
  private readonly failed: string[] = [];

  see(fact: string): void {
    this.seen.push(fact);
  }

  expect(ok: boolean, whenNot: string): boolean {
    if (!ok) this.failed.push(whenNot);
    return ok;
  }

  outcome(): RowOutcome {
    const observed = this.seen.join("; ") + (this.failed.length ? `${this.seen.length ? "; " : ""}FAILED: ${this.failed.join("; ")}` : "");
    return { observed, pass: this.failed.length === 0 };
  }
}

/** What a promise settles to, as a value: the result or the error (rows look at both). */
export async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
export const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
