/**
 * The lock reader, the lock diff and the lock-update text parser against real data no one here
 * wrote: ../shared/corpus/flake-locks (see its README; kept beside the repository, never in it).
 * Another real data set is run the same way later, so nothing here names a file or an input: every
 * expectation comes from the data (the lock files are the truth, a message is checked only when
 * it names the same inputs and revs as its commit's files).
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { DetectionRules } from "../../github/config.js";
import { groupUpdates, inputsChanged, isRevertPull, matchRules } from "../../github/detect.js";
import { diffLocks, FlakeLockError, parseFlakeLock, parseLockUpdateText, readLockInputs, SUPPORTED_LOCK_VERSIONS, type InputChange, type LockDiff, type LockedRef } from "../../protocol/index.js";

const CORPUS = process.env.LOCKSTEP_LOCK_CORPUS ?? resolve(__dirname, "../../../shared/corpus/flake-locks");
const present = existsSync(join(CORPUS, "locks"));
if (!present) console.warn(`lock corpus not found at ${CORPUS}: the corpus tests are not run (set LOCKSTEP_LOCK_CORPUS to its folder)`);

const read = (rel: string) => readFileSync(join(CORPUS, rel), "utf8");

interface MsgEntry {
  repo: string;
  commit: string;
  msg: string;
  files: string[] | null;
  before?: string;
  after?: string;
}

/** What the corpus test compares for one change: input, kind, revs, dates, follows, types. */
function facts(c: InputChange, change: string) {
  const side = (r: LockedRef | undefined) =>
    r && { rev: r.rev, date: r.date, follows: r.follows, type: r.type === "unknown" ? undefined : r.type };
  if (change === "removed") return { input: c.input, change };
  return { input: c.input, change: change === "updated" ? c.kind : change, ...(change === "updated" ? { old: side(c.old) } : {}), new: side(c.new) };
}
const allFacts = (d: LockDiff) => [...d.updated.map((c) => facts(c, "updated")), ...d.added.map((c) => facts(c, "added")), ...d.removed.map((c) => facts(c, "removed"))];

/**
 * Does the message describe this lock pair? Decided without the parser, by plain text search: the
 * input names it quotes in change lines are the ones that changed, and the text after each name
 * holds that input's real revs, with the real date next to each rev it dates.
 */
function textAgreesWithFiles(text: string, diff: LockDiff): boolean {
  const segments = new Map<string, string>();
  const parts = text.split(/(?:Updated|Added|Removed)(?: input)? '([^']+)'/);
  for (let i = 1; i < parts.length; i += 2) segments.set(parts[i]!, (segments.get(parts[i]!) ?? "") + parts[i + 1]!);
  const changes = [...diff.updated, ...diff.added, ...diff.removed];
  if (segments.size !== changes.length || changes.some((c) => !segments.has(c.input))) return false;
  for (const c of changes) {
    const seg = segments.get(c.input)!;
    for (const side of [c.old, c.new]) {
      if (!side?.rev || !seg.includes(side.rev)) continue;
      const dated = new RegExp(`${side.rev}[^'\\s]*'?\\s*\\((\\d{4}-\\d{2}-\\d{2})\\)`).exec(seg);
      if (dated && dated[1] !== side.date) return false;
    }
    const revs = c === diff.removed.find((r) => r === c) ? [] : [c.old?.rev, c.new?.rev];
    if (revs.some((r) => r !== undefined && !seg.includes(r))) return false;
  }
  return true;
}

/** Dates are compared where the text has them (Nix printed none before 2021). */
function withoutUnprintedDates(parsed: LockDiff, real: LockDiff): LockDiff {
  const strip = (r: LockedRef | undefined, printed: LockedRef | undefined) => (r && printed && printed.date === undefined ? { ...r, date: undefined } : r);
  const byInput = new Map([...parsed.updated, ...parsed.added].map((c) => [c.input, c]));
  const fix = (c: InputChange) => ({ ...c, old: strip(c.old, byInput.get(c.input)?.old), new: strip(c.new, byInput.get(c.input)?.new) });
  return { updated: real.updated.map(fix), added: real.added.map(fix), removed: real.removed };
}

describe.runIf(present)("real flake.lock files (../shared/corpus/flake-locks)", () => {
  const lockFiles = present ? readdirSync(join(CORPUS, "locks")).filter((f) => f.endsWith(".lock")) : [];

  it("reads every lock file, versions 5 to 7, with a date on every input that has one", () => {
    expect(lockFiles.length).toBeGreaterThan(0);
    const versions = new Set<number>();
    for (const f of lockFiles) {
      const text = read(join("locks", f));
      const lock = parseFlakeLock(text);
      versions.add(lock.version);
      const raw = JSON.parse(text) as { nodes: Record<string, { locked?: { lastModified?: number }; info?: { lastModified?: number } }> };
      for (const input of readLockInputs(lock).inputs.values()) {
        if (input.follows !== undefined || input.node === undefined) continue;
        const node = raw.nodes[input.node]!;
        const lm = node.locked?.lastModified ?? node.info?.lastModified;
        if (lm !== undefined) expect(input.ref.date, `${f}: ${input.path}`).toBe(new Date(lm * 1000).toISOString().slice(0, 10));
        else expect(input.ref.date, `${f}: ${input.path}`).toBeUndefined();
      }
    }
    for (const v of versions) expect(SUPPORTED_LOCK_VERSIONS).toContain(v);
    console.info(`lock corpus: ${lockFiles.length} lock files read (versions ${[...versions].sort().join(", ")})`);
  });

  it("the parsed text of every message that agrees with its commit's files equals the diff of those files", () => {
    const msgs = JSON.parse(read("msgs.json")) as MsgEntry[];
    let compared = 0, disagree = 0, noPair = 0, oldLock = 0;
    const failures: string[] = [];
    for (const m of msgs) {
      const text = read(m.msg);
      const parsed = parseLockUpdateText(text);
      expect(parsed, `${m.msg}: no lock-update text found`).not.toBeNull();
      if (!m.before || !m.after) {
        noPair++;
        continue;
      }
      let real: LockDiff;
      try {
        real = diffLocks(read(m.before), read(m.after));
      } catch (e) {
        // A lock older than version 5 (Nix before 2.4): refused with a clear message.
        expect(e, m.msg).toBeInstanceOf(FlakeLockError);
        expect((e as FlakeLockError).code, `${m.msg}: ${(e as Error).message}`).toBe("version");
        oldLock++;
        continue;
      }
      if (!textAgreesWithFiles(text, real)) {
        disagree++;
        continue;
      }
      compared++;
      const got = allFacts(parsed!).map((f) => JSON.stringify(f));
      const want = allFacts(withoutUnprintedDates(parsed!, real)).map((f) => JSON.stringify(f));
      const missing = want.filter((f) => !got.includes(f)), extra = got.filter((f) => !want.includes(f));
      if (missing.length + extra.length > 0 || got.length !== want.length) failures.push(`${m.msg}: text says ${extra.slice(0, 3).join(" ")} where the files say ${missing.slice(0, 3).join(" ")}`);
    }
    console.info(`lock corpus: ${msgs.length} messages; ${compared} compared with their lock pair (${compared - failures.length} equal), ${disagree} disagree with their files, ${oldLock} have a lock older than version 5, ${noPair} have no lock pair`);
    expect(failures).toEqual([]);
    expect(compared).toBeGreaterThan(msgs.length / 2);
  });

  it("reads every PR body's lock-update text", () => {
    const bodies = readdirSync(join(CORPUS, "prbodies")).filter((f) => f.endsWith(".txt"));
    for (const f of bodies) {
      const d = parseLockUpdateText(read(join("prbodies", f)));
      expect(d, f).not.toBeNull();
      for (const c of d!.updated) {
        expect(c.old?.type, `${f}: ${c.input}`).not.toBe("unknown");
        expect(c.new?.type, `${f}: ${c.input}`).not.toBe("unknown");
      }
    }
  });

  it("every PR in pr_meta.json gets the verdict its note implies (reverts never; every lock-update tool's PRs detected by default)", () => {
    const prs = JSON.parse(read("pr_meta.json")) as { src: string; title: string; branch: string; labels: string[]; files: string[] | null }[];
    const rules = DetectionRules.parse({});
    const wrong: string[] = [];
    let reverts = 0, detected = 0;
    for (const p of prs) {
      // "?" = the branch is not known: a name no rule matches, so only title and labels decide.
      const pr = { title: p.title, head: { ref: p.branch === "?" ? "unknown-branch" : p.branch }, labels: p.labels.map((name) => ({ name })) };
      const isUpdate = matchRules(pr, rules).length > 0 && (p.files === null || (p.files.length === 1 && p.files[0] === "flake.lock"));
      const revert = /\brevert\b/i.test(p.src);
      if (revert) reverts++;
      else detected++;
      if (revert && (isUpdate || !isRevertPull(pr))) wrong.push(`${p.src}: a revert taken for an update`);
      if (!revert && !isUpdate) wrong.push(`${p.src}: "${p.title}" (${p.branch}) not detected`);
    }
    console.info(`lock corpus: ${prs.length} PRs: ${detected} lock updates detected, ${reverts} reverts never taken for one`);
    expect(wrong).toEqual([]);
  });

  it("per-input PRs are grouped: a real update of several inputs, opened one PR per input the way the per-input updater names them, is one update; a PR changing an input again is superseded", () => {
    const prs = JSON.parse(read("pr_meta.json")) as { src: string; title: string; branch: string; labels: string[] }[];
    const perInput = prs.filter((p) => /^Update flake input: /.test(p.title));
    expect(perInput.length).toBeGreaterThan(0);
    const rules = DetectionRules.parse({});
    const msgs = (JSON.parse(read("msgs.json")) as MsgEntry[]).filter((m) => m.before && m.after);
    let grouped = 0;
    for (const m of msgs) {
      let real: LockDiff;
      try {
        real = diffLocks(read(m.before!), read(m.after!));
      } catch {
        continue; // locks older than version 5: covered above
      }
      // One PR per top-level input the real update changed, titled and branched like the tool's own PR.
      const inputs = [...inputsChanged(real)];
      if (inputs.length < 2) continue;
      const own = (input: string) => ({
        updated: real.updated.filter((c) => c.input.split("/")[0] === input),
        added: real.added.filter((c) => c.input.split("/")[0] === input),
        removed: real.removed.filter((c) => c.input.split("/")[0] === input),
      });
      const tool = perInput[0]!;
      const opened = inputs.map((input) => ({ input, diff: own(input), title: tool.title.replace(/: .*/, `: ${input}`), head: { ref: tool.branch.replace(/^update-.*/, `update-${input}`) }, labels: tool.labels.map((name) => ({ name })) }));
      for (const pr of opened) expect(matchRules(pr, rules), `${m.msg}: ${pr.title}`).not.toEqual([]);
      const again = { ...opened[0]!, title: `${opened[0]!.title} (again)` };
      const { together, superseded } = groupUpdates([...opened, again], true);
      expect(together.map((p) => p.input), m.msg).toEqual(inputs);
      expect(superseded).toEqual([again]);
      grouped++;
    }
    console.info(`lock corpus: ${grouped} real updates of several inputs, opened as one PR per input, each grouped into one update`);
    expect(grouped).toBeGreaterThan(0);
  });
});
