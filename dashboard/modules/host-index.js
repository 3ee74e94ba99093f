// The hosts table's model, kept incrementally so 10,000 hosts cost what changed, not what exists:
// every host with info in name order (`order`), the hosts the filters let through in the same
// order (`shown`), and the header's tallies (hosts, online, needing attention by reason). A host
// change moves one entry (binary search); only a filter change walks every host. No DOM here
// (test/unit/page-host-index.test.ts runs it in Node).
import { ATTENTION_REASONS, attentionOf } from "../generated/protocol.js";

/** The index's entries are the page's host records (state.js hostRecord); it adds `_ix` to each. */
export function createHostIndex() {
  const order = [];
  const shown = [];
  const tally = { total: 0, online: 0, reasons: Object.fromEntries(ATTENTION_REASONS.map((r) => [r, 0])) };
  let filter = { words: [], problemsOnly: false };

  /** What the filters and tallies need of a host, computed once per change. */
  function facts(h) {
    const info = h.info ?? {};
    return {
      listed: !!h.info,
      online: h.availability === "online",
      attention: attentionOf(h),
      hay: [h.id, info.hostname, info.location, info.os, ...(info.tags ?? [])].join(" ").toLowerCase(),
    };
  }

  function matches(f) {
    if (!f.listed) return false;
    if (filter.problemsOnly && !f.attention) return false;
    return filter.words.every((w) => f.hay.includes(w));
  }

  function count(f, sign) {
    if (!f?.listed) return;
    tally.total += sign;
    if (f.online) tally.online += sign;
    if (f.attention) tally.reasons[f.attention] += sign;
  }

  return {
    order,
    shown,
    tally,

    /** After any change to `h` (info, availability, compartments, removal): one entry moves. */
    update(h) {
      const before = h._ix;
      const after = facts(h);
      h._ix = after;
      count(before, -1);
      count(after, +1);
      if (!before?.listed && after.listed) insert(order, h);
      else if (before?.listed && !after.listed) remove(order, h);
      const was = !!before && matches(before);
      const is = matches(after);
      if (was && !is) remove(shown, h);
      else if (!was && is) insert(shown, h);
      return was !== is;
    },

    /** Filter words (lower case, space separated) and "Needs attention": one pass over every host. */
    setFilter(text, problemsOnly) {
      filter = { words: text.split(/\s+/).filter(Boolean), problemsOnly };
      shown.length = 0;
      for (const h of order) if (matches(h._ix)) shown.push(h);
    },

  };
}

/** Hosts are ordered by id; ids are unique. */
function position(list, h) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid].id < h.id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
function insert(list, h) {
  const i = position(list, h);
  if (list[i] !== h) list.splice(i, 0, h);
}
function remove(list, h) {
  const i = position(list, h);
  if (list[i] === h) list.splice(i, 1);
}
