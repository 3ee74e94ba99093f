// Virtual rows: of a long table only the rows on screen (plus a margin) are in the DOM; a spacer row
// above and one below stand in for the rest, so the page scrolls as if every row were there. Rows
// are measured after the browser laid them out (a host with a problem line is taller); rows never
// seen count as the average of those measured. Each frame reads first (measure) and then writes (layout),
// so the browser lays the page out at most once per frame. The window scrolls (the table is part
// of the page); rows keep their place while hosts above them come and go (scroll anchoring).

/** Rows rendered above and below the screen: keyboard focus and quick scrolls find rows there. */
const MARGIN_PX = 600;
/** Until a row was measured. */
const DEFAULT_ROW_PX = 45;
/** However small the rows measure, never more than this many at once. */
const MAX_ROWS = 400;

function spacer(columns) {
  const td = document.createElement("td");
  td.colSpan = columns;
  const tr = document.createElement("tr");
  tr.className = "spacer";
  tr.setAttribute("aria-hidden", "true");
  tr.append(td);
  return { tr, td, px: -1 };
}

function setHeight(s, px) {
  if (s.px === px) return;
  s.px = px;
  s.td.style.height = `${px}px`;
  s.tr.hidden = px === 0;
}

/**
 * @param tbody the table body; the rows of `items` go between its two spacers.
 * @param columns how many columns the spacers span.
 * @param nodesOf item → its DOM rows in order (a host row and its open detail), or [] when it has none.
 * @param bind item → creates or reuses its row (called for items coming on screen).
 * @param release item → its row leaves the screen (the row may be reused for another item).
 */
export function createVirtualRows({ tbody, columns, nodesOf, bind, release }) {
  const top = spacer(columns);
  const bottom = spacer(columns);
  tbody.append(top.tr, bottom.tr);
  let measuredSum = 0;
  let measuredCount = 0;
  /** Items whose rows are in the DOM now, in order. */
  let onScreen = [];
  const heights = new WeakMap();
  const px = (item) => heights.get(item) || (measuredCount ? measuredSum / measuredCount : DEFAULT_ROW_PX);

  return {
    /** Read phase: the heights of the rows in the DOM and which part of the table the screen shows. */
    measure() {
      for (const item of onScreen) {
        let h = 0;
        for (const node of nodesOf(item)) h += node.offsetHeight;
        if (h > 0) {
          const before = heights.get(item);
          measuredSum += h - (before ?? 0);
          if (before === undefined) measuredCount++;
          heights.set(item, h);
        }
      }
      const rect = tbody.getBoundingClientRect();
      return { from: -rect.top, to: window.innerHeight - rect.top };
    },

    /** Write phase: the rows of `items` that `view` (from measure) shows are in the DOM, the rest are spacers. */
    layout(items, view) {
      const from = view.from - MARGIN_PX;
      const to = view.to + MARGIN_PX;
      let y = 0;
      let i = 0;
      while (i < items.length && y + px(items[i]) <= from) y += px(items[i++]);
      const start = i;
      const above = y;
      while (i < items.length && y < to && i - start < MAX_ROWS) y += px(items[i++]);
      const next = items.slice(start, i);
      let below = 0;
      for (; i < items.length; i++) below += px(items[i]);

      const keep = new Set(next);
      for (const item of onScreen) {
        if (keep.has(item)) continue;
        // Out of the DOM before the rows that stay are placed: a row that stays is never moved
        // (moving a row blurs it, so a keyboard user scrolling would lose the focused row).
        for (const node of nodesOf(item)) node.remove();
        release(item);
      }
      next.forEach((item, k) => bind(item, start + k));
      // Put the rows between the spacers in order. Rows that stay are already in order (both lists
      // are in the items' order), so only rows coming on screen are inserted.
      const wanted = new Set(next.flatMap((item) => nodesOf(item)));
      let cursor = top.tr.nextSibling;
      for (const item of next) {
        for (const node of nodesOf(item)) {
          while (cursor && cursor !== bottom.tr && !wanted.has(cursor)) {
            const after = cursor.nextSibling;
            cursor.remove();
            cursor = after;
          }
          if (node === cursor) cursor = cursor.nextSibling;
          else tbody.insertBefore(node, cursor);
        }
      }
      while (cursor && cursor !== bottom.tr) {
        const after = cursor.nextSibling;
        cursor.remove();
        cursor = after;
      }
      setHeight(top, above);
      setHeight(bottom, below);
      onScreen = next;
      return next.length;
    },
  };
}
