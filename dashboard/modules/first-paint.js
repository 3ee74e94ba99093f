// First paint of a large fleet: the hub keeps a compact summary retained on fleet/summary
// (protocol/fleet-summary.ts) and the page subscribes to it first. Until the page holds the fleet
// stream's whole snapshot (or as many hosts as the summary counts, or no new host came for a
// while), the header shows the summary's figures and the hosts card lists the hosts it names as
// needing attention, while the per-host rows fill in.
import { $, el } from "./dom.js";
import { app } from "./state.js";
import { dirty, schedule } from "./render.js";

/**
 * No new host for this long: take the page's own count (a fallback: the fleet stream's last
 * snapshot part, app.fleetLoaded, normally says the page holds every host).
 */
const QUIET_MS = 2000;
/**
 * Before the first host arrived the summary is all the page knows: a slow broker (or a loaded
 * machine) must not turn "2,001 hosts" into "0 hosts" after two quiet seconds.
 */
const EMPTY_MS = 15000;
let done = false;
let lastTotal = -1;
let lastChangeAt = 0;
let timer = 0;

/**
 * The header's figures from the summary while hosts are still arriving, else null (then the page
 * counts its own hosts). `tally` is the page's own count so far.
 */
export function summaryCounts(tally) {
  const s = app.summary;
  if (!s || done) return null;
  const now = performance.now();
  if (tally.total !== lastTotal) {
    lastTotal = tally.total;
    lastChangeAt = now;
  }
  const quietMs = tally.total > 0 ? QUIET_MS : EMPTY_MS;
  if (app.fleetLoaded || tally.total >= s.hosts || now - lastChangeAt > quietMs) {
    done = true;
    clearTimeout(timer);
    renderFirstPaint(null);
    return null;
  }
  // Nothing else may render for a while: look again when the quiet time is up.
  clearTimeout(timer);
  timer = setTimeout(() => {
    dirty.counts = true;
    schedule();
  }, quietMs + 50);
  renderFirstPaint(s);
  const n = (x) => x.toLocaleString("en-US");
  return { total: s.hosts, online: s.online, reasons: s.attention, loading: `loading hosts: ${n(tally.total)} of ${n(s.hosts)}` };
}

/** The hosts the summary names as needing attention, above the table while the rows fill in. */
function renderFirstPaint(s) {
  const box = $("first-paint");
  box.hidden = !s || s.needsAttention.length === 0;
  if (box.hidden || box._summary === s) return;
  box._summary = s;
  const listed = s.needsAttention;
  const total = Object.values(s.attention).reduce((a, b) => a + b, 0);
  box.replaceChildren(
    el("strong", { text: "Needs attention: " }),
    ...listed.flatMap((x, i) => [i ? ", " : "", el("span", { class: `fp-host ${x.why.replace(" ", "-")}`, dataset: { host: x.host }, text: `${x.host} (${x.why})` })]),
    total > listed.length ? ` and ${(total - listed.length).toLocaleString("en-US")} more` : "",
  );
}
