/**
 * Hostile flake.lock files in lock-update PRs, read by detection (the hub) through the local GitHub:
 * the 173-byte lock whose 16 nodes each point at the next three times (3^16 paths) froze the hub
 * at 3.6 GB; a `follows` cycle overflowed the stack; a lock over the reader's limits.
 */
import { detectPendingUpdate } from "../../../github/detect.js";
import { sharedGitHub } from "./github.js";
import { Checks, mib, seconds, settle, type FaultRow } from "../row.js";

const MIB = 2 ** 20;

function lockBomb(): string {
  const nodes: Record<string, unknown> = {};
  for (let i = 0; i < 16; i++) nodes[`n${i}`] = i === 15 ? { locked: { type: "path", path: "/x" } } : { inputs: { a: `n${i + 1}`, b: `n${i + 1}`, c: `n${i + 1}` }, locked: { type: "path", path: "/x" } };
  nodes.r = { inputs: { a: "n0", b: "n0", c: "n0" } };
  return JSON.stringify({ version: 7, root: "r", nodes });
}
const followsCycle = () => JSON.stringify({ version: 7, root: "r", nodes: { r: { inputs: { a: ["b"], b: ["a"] } } } });
function tooDeep(): string {
  const nodes: Record<string, unknown> = { r: { inputs: { a: "n0" } } };
  for (let i = 0; i < 40; i++) nodes[`n${i}`] = { inputs: { a: `n${i + 1}` }, locked: { type: "path", path: "/x" } };
  nodes.n40 = { locked: { type: "path", path: "/x" } };
  return JSON.stringify({ version: 7, root: "r", nodes });
}

export const lockBombs: FaultRow = {
  name: "lock-bombs",
  scenario: "three PRs titled 'flake.lock: Update': a lock bomb (16 nodes, each pointing at the next three times: 3^16 paths), a follows cycle, a 41-deep lock; the hub detects updates",
  expected: "detection ends within seconds, memory flat; the bomb is read node by node; the cycle and the deep lock are reported broken with typed reasons, never deployed",
  speed: "fast",
  async run(ctx) {
    const c = new Checks();
    const h = await sharedGitHub(ctx);
    const prs: Record<string, number> = {};
    for (const [name, text] of [["bomb", lockBomb()], ["cycle", followsCycle()], ["deep", tooDeep()]] as const) {
      h.fleet.commit({ "flake.lock": text }, `flake.lock: ${name}`, `update-${name}`);
      prs[name] = await h.server.openPullRequest({ head: `update-${name}`, title: "flake.lock: Update", labels: ["automated", "dependencies"], body: "Flake lock file updates:" });
    }
    c.see(`bomb ${Buffer.byteLength(lockBomb())} bytes`);
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    const d = await settle(detectPendingUpdate(h.client, h.config));
    const took = performance.now() - t0;
    const rss1 = process.memoryUsage().rss;
    c.see(`detection ${seconds(took)}, RSS +${mib(rss1 - rss0)}`);
    c.expect(took < 20_000, "detection took longer than 20 s");
    c.expect(rss1 - rss0 < 200 * MIB, "memory grew by more than 200 MiB");
    if (!d.ok) {
      c.expect(false, `detection failed: ${(d.error as Error).message}`);
      return c.outcome();
    }
    const broken = new Map(d.value.broken.map((b) => [b.number, b.reason]));
    const cycle = broken.get(prs.cycle!) ?? "";
    const deep = broken.get(prs.deep!) ?? "";
    c.see(`cycle: ${cycle || "not broken"}`);
    c.see(`deep: ${deep || "not broken"}`);
    c.expect(/follows cycle/.test(cycle), "the follows cycle was not reported broken");
    c.expect(/deep|depth/.test(deep), "the deep lock was not reported broken");
    const bomb = d.value.matches.find((m) => m.number === prs.bomb);
    const bombDiff = d.value.pending?.number === prs.bomb ? d.value.pending?.lockDiff : undefined;
    c.see(`bomb: ${bomb ? `read${bombDiff ? `, ${bombDiff.added.length} inputs added` : ""}` : (broken.get(prs.bomb!) ?? "missing")}`);
    c.expect(bomb !== undefined || broken.has(prs.bomb!), "the bomb PR was neither read nor reported broken");
    const pending = d.value.pending?.number;
    c.expect(pending !== prs.cycle && pending !== prs.deep, "a broken PR became the pending update");
    return c.outcome();
  },
};
