/**
 * `npm run faults`: the fault matrix. Runs each scenario on real parts and prints a table
 * (scenario, expected, observed, pass); exits 1 if any row failed. Rows live in test/faults/rows/.
 *   node dist/test/faults/run.js                  fast and slow rows (the soak only when asked)
 *   node dist/test/faults/run.js --fast           the rows that take seconds (what CI runs)
 *   node dist/test/faults/run.js --only NAME      rows whose name contains NAME (repeatable; "soak" runs the soak)
 *   node dist/test/faults/run.js --json FILE      also write the rows, with the machine, as JSON
 *   node dist/test/faults/run.js --list           the rows, without running them
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { dirname } from "node:path";
import { ALL_ROWS } from "./rows/index.js";
import { closeShared, sharedValue, type FaultRow, type RowOutcome, type RowSpeed } from "./row.js";

export interface FaultArgs {
  fast: boolean;
  only: string[];
  json?: string;
  list: boolean;
}

export function parseFaultArgs(argv: string[]): FaultArgs {
  const args: FaultArgs = { fast: false, only: [], list: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === "--fast") args.fast = true;
    else if (arg === "--only") args.only.push(value());
    else if (arg === "--json") args.json = value();
    else if (arg === "--list") args.list = true;
    else throw new Error(`unknown argument ${arg} (use --fast, --only NAME, --json FILE, --list)`);
  }
  return args;
}

/** The rows a run takes: --only picks by name (the soak too); otherwise fast and slow, or fast only. */
export function selectRows(args: Pick<FaultArgs, "fast" | "only">, rows: FaultRow[] = ALL_ROWS): FaultRow[] {
  if (args.only.length) {
    const picked = rows.filter((r) => args.only.some((o) => r.name.includes(o)));
    if (picked.length === 0) throw new Error(`no row matches ${args.only.join(", ")} (rows: ${rows.map((r) => r.name).join(", ")})`);
    return args.fast ? picked.filter((r) => r.speed === "fast") : picked;
  }
  const speeds: RowSpeed[] = args.fast ? ["fast"] : ["fast", "slow"];
  return rows.filter((r) => speeds.includes(r.speed));
}

export interface RowResult extends RowOutcome {
  name: string;
  scenario: string;
  expected: string;
  speed: RowSpeed;
  seconds: number;
}

const DEFAULT_TIMEOUT: Record<RowSpeed, number> = { fast: 90_000, slow: 10 * 60_000, long: 20 * 60_000 };

/** Run one row with its time limit and cleanups; a throw or a timeout is a failed row. */
export async function runRow(row: FaultRow, log: (line: string) => void = () => undefined): Promise<RowResult> {
  const cleanups: Array<() => unknown> = [];
  const t0 = performance.now();
  const limit = row.timeoutMs ?? DEFAULT_TIMEOUT[row.speed];
  let timer: NodeJS.Timeout | undefined;
  let outcome: RowOutcome;
  try {
    outcome = await Promise.race([
      row.run({ cleanup: (fn) => cleanups.push(fn), log: (line) => log(`  [${row.name}] ${line}`), shared: sharedValue }),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not done after ${limit / 1000} s`)), limit))),
    ]);
  } catch (err) {
    outcome = { observed: `error: ${(err as Error).message ?? String(err)}`.split("\n").slice(0, 6).join(" "), pass: false };
  } finally {
    clearTimeout(timer);
  }
  for (const fn of cleanups.reverse()) {
    try {
      await fn();
    } catch (err) {
      log(`  [${row.name}] cleanup failed: ${(err as Error).message}`);
    }
  }
  // A failed row may have left what it shared broken (a fleet mid-rollout, a fault injected): the next row starts afresh.
  if (!outcome.pass) await closeShared();
  const { name, scenario, expected, speed } = row;
  return { name, scenario, expected, speed, ...outcome, seconds: Number(((performance.now() - t0) / 1000).toFixed(1)) };
}

/** Words wrapped to `width` columns (a long word is cut). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (let word of text.split(/\s+/).filter(Boolean)) {
    while (word.length > width) {
      if (line) lines.push(line), (line = "");
      lines.push(word.slice(0, width));
      word = word.slice(width);
    }
    if (line && line.length + 1 + word.length > width) lines.push(line), (line = word);
    else line = line ? `${line} ${word}` : word;
  }
  if (line || lines.length === 0) lines.push(line);
  return lines;
}

/** The table: one block of wrapped lines per row, columns separated by " | ". */
export function formatTable(results: RowResult[]): string {
  const widths = [34, 46, 62, 4];
  const cells = (r: RowResult) => [`${r.name} (${r.seconds} s): ${r.scenario}`, r.expected, r.observed, r.pass ? "pass" : "FAIL"];
  const line = (cols: string[]) => cols.map((c, i) => c.padEnd(widths[i]!)).join(" | ").trimEnd();
  const out = [line(["scenario", "expected", "observed", "pass"]), widths.map((w) => "-".repeat(w)).join("-|-")];
  for (const r of results) {
    const wrapped = cells(r).map((c, i) => wrap(c, widths[i]!));
    const height = Math.max(...wrapped.map((w) => w.length));
    for (let i = 0; i < height; i++) out.push(line(wrapped.map((w) => w[i] ?? "")));
    out.push(widths.map((w) => "-".repeat(w)).join("-|-"));
  }
  const failed = results.filter((r) => !r.pass).length;
  out.push(`${results.length - failed} of ${results.length} rows passed${failed ? `; FAILED: ${results.filter((r) => !r.pass).map((r) => r.name).join(", ")}` : ""}`);
  return out.join("\n");
}

export async function runFaults(args: FaultArgs, print: (line: string) => void = (l) => console.log(l)): Promise<RowResult[]> {
  const rows = selectRows(args);
  if (args.list) {
    for (const r of rows) print(`${r.name.padEnd(24)} ${r.speed.padEnd(5)} ${r.scenario}`);
    return [];
  }
  const startedAt = new Date().toISOString();
  const results: RowResult[] = [];
  try {
    for (const row of rows) {
      print(`== ${row.name} (${row.speed}): ${row.scenario}`);
      const result = await runRow(row, print);
      print(`   ${result.pass ? "pass" : "FAIL"} in ${result.seconds} s: ${result.observed}`);
      results.push(result);
    }
  } finally {
    await closeShared();
  }
  print("");
  print(formatTable(results));
  if (args.json) {
    mkdirSync(dirname(args.json), { recursive: true });
    const machine = { cpu: cpus()[0]?.model, cores: cpus().length, memoryGb: Number((totalmem() / 2 ** 30).toFixed(1)), loadavg: loadavg(), node: process.version };
    writeFileSync(args.json, JSON.stringify({ startedAt, machine, rows: results }, null, 2) + "\n");
    print(`written: ${args.json}`);
  }
  return results;
}

if (process.argv[1]?.endsWith("run.js")) {
  (async () => {
    const results = await runFaults(parseFaultArgs(process.argv.slice(2)));
    // Child processes and sockets of a failed row may linger: exit rather than wait for them.
    process.exit(results.some((r) => !r.pass) ? 1 : 0);
  })().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(2);
  });
}
