/**
 * The fleet page's host index (dashboard/modules/host-index.js): hosts in name order, the filtered
 * list and the header tallies kept incrementally, checked against a from-scratch computation over
 * random sequences of changes (insertions, status changes, removals, filter changes).
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { ATTENTION_REASONS, COMPARTMENTS, STATUSES, attentionOf } from "../../protocol/index.js";
// @ts-expect-error a plain browser ES module (the page's), without types
import { createHostIndex } from "../../dashboard/modules/host-index.js";

interface PageHost {
  id: string;
  info: { hostname: string; os: string; location?: string; tags: string[] } | null;
  availability: string | null;
  compartments: Record<string, { status: (typeof STATUSES)[number] }>;
}
interface HostIndex {
  order: PageHost[];
  shown: PageHost[];
  tally: { total: number; online: number; reasons: Record<string, number> };
  update(h: PageHost): boolean;
  setFilter(text: string, problemsOnly: boolean): void;
}
const create = createHostIndex as () => HostIndex;

function expected(hosts: Map<string, PageHost>, words: string, problemsOnly: boolean) {
  const listed = [...hosts.values()].filter((h) => h.info).sort((a, b) => (a.id < b.id ? -1 : 1));
  const matches = (h: PageHost) => {
    if (problemsOnly && !attentionOf(h)) return false;
    const hay = [h.id, h.info!.hostname, h.info!.location, h.info!.os, ...h.info!.tags].join(" ").toLowerCase();
    return words.split(/\s+/).filter(Boolean).every((w) => hay.includes(w));
  };
  const reasons = Object.fromEntries(ATTENTION_REASONS.map((r) => [r, 0]));
  for (const h of listed) {
    const why = attentionOf(h);
    if (why) reasons[why]!++;
  }
  return {
    order: listed.map((h) => h.id),
    shown: listed.filter(matches).map((h) => h.id),
    tally: { total: listed.length, online: listed.filter((h) => h.availability === "online").length, reasons },
  };
}

const change = fc.oneof(
  fc.record({ kind: fc.constant("info" as const), host: fc.integer({ min: 0, max: 30 }), tag: fc.constantFrom("web", "db", "edge"), removed: fc.boolean() }),
  fc.record({ kind: fc.constant("availability" as const), host: fc.integer({ min: 0, max: 30 }), online: fc.boolean() }),
  fc.record({ kind: fc.constant("compartment" as const), host: fc.integer({ min: 0, max: 30 }), name: fc.constantFrom(...COMPARTMENTS), status: fc.constantFrom(...STATUSES) }),
  fc.record({ kind: fc.constant("filter" as const), words: fc.constantFrom("", "web", "host-1", "db site", "nothing"), problemsOnly: fc.boolean() }),
);

describe("the page's host index", () => {
  it("keeps order, filtered rows and tallies equal to computing them afresh after every change", () => {
    fc.assert(
      fc.property(fc.array(change, { maxLength: 120 }), (changes) => {
        const index = create();
        const hosts = new Map<string, PageHost>();
        let filter = { words: "", problemsOnly: false };
        const host = (n: number) => {
          const id = `host-${n}`;
          let h = hosts.get(id);
          if (!h) hosts.set(id, (h = { id, info: null, availability: null, compartments: {} }));
          return h;
        };
        for (const c of changes) {
          if (c.kind === "filter") {
            filter = { words: c.words, problemsOnly: c.problemsOnly };
            index.setFilter(c.words, c.problemsOnly);
            continue;
          }
          const h = host(c.host);
          if (c.kind === "info") h.info = c.removed ? null : { hostname: `${h.id}.example`, os: "nixos", location: "site-a", tags: [c.tag] };
          if (c.kind === "availability") h.availability = c.online ? "online" : "offline";
          if (c.kind === "compartment") h.compartments[c.name] = { status: c.status };
          index.update(h);
          const want = expected(hosts, filter.words, filter.problemsOnly);
          expect(index.order.map((x) => x.id)).toEqual(want.order);
          expect(index.shown.map((x) => x.id)).toEqual(want.shown);
          expect(index.tally).toEqual(want.tally);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("inserts a host between others without re-sorting", () => {
    const index = create();
    const mk = (id: string): PageHost => ({ id, info: { hostname: id, os: "nixos", tags: [] }, availability: "online", compartments: {} });
    for (const id of ["c", "a", "e", "b", "d"]) index.update(mk(id));
    expect(index.order.map((h) => h.id)).toEqual(["a", "b", "c", "d", "e"]);
    expect(index.tally.reasons["no report"]).toBe(5);
  });
});
