// Rendering, batched per animation frame: state changes mark what is dirty, one frame redraws it.
// A frame first reads layout (row heights, where the table is), then only writes, so the browser
// lays the page out once per frame. The renderers are registered by app.js (so this module imports
// none of them): `measure` (the read), `rows` (the hosts table: changed hosts and the rows on
// screen), then one function per flag.
import { stats } from "./state.js";

export const dirty = { hosts: new Set(), rows: false, fleet: false, rollout: false, history: false, activity: false, counts: false, banner: false };
const FLAGS = ["counts", "fleet", "rollout", "history", "activity", "banner"];
const renderers = {};
let frame = 0;

export function setRenderers(fns) {
  Object.assign(renderers, fns);
}

export function schedule() {
  if (!frame) frame = requestAnimationFrame(render);
}

export function markHost(h) {
  dirty.hosts.add(h);
  dirty.counts = true;
  schedule();
}

/** The table's rows need laying out again: scrolled, resized, filtered, a detail opened. */
export function markRows() {
  dirty.rows = true;
  schedule();
}

/** Marks every card dirty (after login). */
export function markAll() {
  for (const f of FLAGS) dirty[f] = true;
  markRows();
}

function render() {
  frame = 0;
  const t0 = performance.now();
  if (dirty.rows || dirty.hosts.size) {
    const view = renderers.measure();
    const changed = [...dirty.hosts];
    dirty.hosts.clear();
    dirty.rows = false;
    renderers.rows(changed, view);
  }
  for (const f of FLAGS) {
    if (!dirty[f]) continue;
    dirty[f] = false;
    renderers[f]?.();
  }
  const ms = performance.now() - t0;
  stats.renders++;
  stats.lastRenderMs = ms;
  stats.totalRenderMs += ms;
  stats.maxRenderMs = Math.max(stats.maxRenderMs, ms);
}
