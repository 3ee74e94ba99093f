// Rendering, batched per animation frame: state changes mark what is dirty, one frame redraws it.
// The renderers are registered by app.js (so this module imports none of them).
import { stats } from "./state.js";

export const dirty = { hosts: new Set(), order: false, fleet: false, rollout: false, history: false, activity: false, counts: false, banner: false };
const FLAGS = ["order", "counts", "fleet", "rollout", "history", "activity", "banner"];
/** flag → function; `host` renders one host row. */
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

/** Marks every card dirty (after login). */
export function markAll() {
  for (const f of FLAGS) dirty[f] = true;
  schedule();
}

/** New rows built per frame: a first load of hundreds of hosts spreads over a few short frames. */
const MAX_NEW_ROWS_PER_FRAME = 120;

function render() {
  frame = 0;
  const t0 = performance.now();
  let created = 0;
  const later = [];
  for (const h of dirty.hosts) {
    if (!h.info) continue;
    if (!h.row && ++created > MAX_NEW_ROWS_PER_FRAME) later.push(h);
    else renderers.host(h);
  }
  dirty.hosts.clear();
  for (const h of later) dirty.hosts.add(h);
  if (later.length) frame = requestAnimationFrame(render);
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
