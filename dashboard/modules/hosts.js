// The hosts table: only the rows on screen are in the DOM (virtual-rows.js), in name order kept by
// host-index.js; a row is updated cell by cell and reused for another host when it scrolls away.
// Header counts; filters.
import { ATTENTION_REASONS, COMPARTMENTS, TERMINAL_JOB_STATES } from "../generated/protocol.js";
import { $, ago, el, setClass, setText } from "./dom.js";
import { COMPARTMENT_LABEL, OS_LABEL, STATUS_ICON, app, hostProblem, runningJob, stats } from "./state.js";
import { renderNoHosts } from "./empty-hub.js";
import { createHostIndex } from "./host-index.js";
import { createVirtualRows } from "./virtual-rows.js";
import { summaryCounts } from "./first-paint.js";
import { hideTooltip, showTooltip, tooltipFor, tooltipTarget } from "./tooltip.js";
import { renderDetail } from "./detail.js";

export const hostIndex = createHostIndex();
/** Rows that scrolled away, kept for the hosts that scroll in. */
const spareRows = [];
const MAX_SPARE_ROWS = 100;
let table = null;

function rowsTable() {
  table ??= createVirtualRows({
    tbody: $("host-rows"),
    columns: 6 + COMPARTMENTS.length,
    nodesOf: (h) => (!h.row ? [] : h.detail ? [h.row.tr, h.detail.tr] : [h.row.tr]),
    bind: bindRow,
    release: releaseRow,
  });
  return table;
}

function createRow() {
  const cells = {};
  const name = el("span", { class: "name-text" });
  const flags = el("span", { class: "flags" });
  const sub = el("div", { class: "host-sub" });
  const tr = el(
    "tr",
    { class: "host", tabindex: 0, "aria-expanded": "false" },
    el("td", { class: "c-host" }, el("div", { class: "host-name" }, el("span", { class: "state-dot" }), name, flags), sub),
    el("td", { class: "c-os" }),
    el("td", { class: "c-where" }),
    el("td", { class: "c-gen mono" }),
    el("td", { class: "c-agentv mono" }),
    el("td", { class: "c-seen" }),
  );
  const [, os, where, gen, agentv, seen] = tr.children;
  const row = { host: null, tr, name, flags, sub, os, where, gen, agentv, seen, cells, rendered: {} };
  for (const c of COMPARTMENTS) {
    const cell = el("span", { class: "cell unknown", tabindex: 0, "aria-label": `${COMPARTMENT_LABEL[c]}: unknown` });
    // Built when shown (for the host the row shows then): a re-render builds no tooltips.
    cell._tip = () => row.host && tooltipFor(row.host, c);
    cells[c] = cell;
    tr.append(el("td", { class: "c-comp", dataset: { compartment: c } }, cell));
  }
  return row;
}

/** Host `h` comes on screen at position `index` of the rows shown: give it a row (new or reused). */
function bindRow(h, index) {
  if (!h.row) {
    const row = spareRows.pop() ?? createRow();
    row.host = h;
    h.row = row;
    row.tr.dataset.host = h.id;
    row.tr.setAttribute("aria-expanded", String(app.openHost === h.id));
    renderHost(h);
  }
  // Screen readers hear "row 5,120 of 10,000" although only a few rows exist.
  const rowIndex = String(index + 2);
  if (h.row.tr.getAttribute("aria-rowindex") !== rowIndex) h.row.tr.setAttribute("aria-rowindex", rowIndex);
}

function releaseRow(h) {
  const row = h.row;
  if (!row) return;
  if (tooltipTarget && row.tr.contains(tooltipTarget)) hideTooltip();
  h.row = null;
  row.host = null;
  if (spareRows.length < MAX_SPARE_ROWS) spareRows.push(row);
}

/**
 * The hosts table in one frame: the index takes the hosts that changed, rows on screen that
 * changed are redrawn, then the rows the screen shows are laid out. `view` comes from measureRows()
 * (read before any write of this frame).
 */
export function renderRows(changed, view) {
  for (const h of changed) hostIndex.update(h);
  for (const h of changed) if (h.row && h.info) renderHost(h);
  const rendered = rowsTable().layout(hostIndex.shown, view);
  stats.rows = hostIndex.order.length;
  stats.rendered = rendered;
  const rowCount = String(hostIndex.shown.length + 1);
  if ($("hosts").getAttribute("aria-rowcount") !== rowCount) $("hosts").setAttribute("aria-rowcount", rowCount);
  renderNoHosts(hostIndex.order.length === 0);
}

/** The read half of a frame: row heights and where the table is on screen. */
export function measureRows() {
  return rowsTable().measure();
}

export function renderHost(h) {
  const row = h.row; // bound by the virtual rows (bindRow) before any render
  const info = h.info;
  const online = h.availability === "online";
  setClass(row.tr, `host ${online ? "online" : "offline"}${app.openHost === h.id ? " open" : ""}`);
  setText(row.name, h.id);
  row.name.title = info.hostname ?? "";

  const flagKey = `${info.hold}|${info.canary}|${info.holdReason ?? ""}`;
  if (row.rendered.flags !== flagKey) {
    row.rendered.flags = flagKey;
    row.flags.replaceChildren(
      info.canary ? el("span", { class: "flag canary", text: "canary" }) : "",
      info.hold ? el("span", { class: "flag hold", text: "hold", title: info.holdReason ?? "held: rollouts skip this host" }) : "",
    );
  }
  const job = runningJob(h);
  const jobText = job && !TERMINAL_JOB_STATES.includes(job.state) ? `${job.op}: ${job.state}…` : "";
  const where = [info.location, ...(info.tags ?? [])].filter(Boolean);
  const subText = [jobText, online ? "" : `offline · seen ${ago(h.lastSeen)}`].filter(Boolean).join(" · ");
  // Why a failed host is red, in the row itself (a phone has no hover).
  const problem = hostProblem(h);
  const subKey = `${subText}|${problem}|${OS_LABEL[info.os] ?? info.os}|${where.join(",")}`;
  if (row.rendered.sub !== subKey) {
    row.rendered.sub = subKey;
    row.sub.replaceChildren(
      problem ? el("div", { class: "why-line", text: problem }) : "",
      subText ? el("span", { text: subText }) : "",
      el("span", { class: "mobile-only", text: `${subText ? " · " : ""}${OS_LABEL[info.os] ?? info.os}${where.length ? " · " + where.join(", ") : ""}` }),
    );
  }
  setText(row.os, OS_LABEL[info.os] ?? info.os);
  const whereKey = where.join("\u0000");
  if (row.rendered.where !== whereKey) {
    row.rendered.where = whereKey;
    row.where.replaceChildren(
      info.location ? el("span", { text: info.location + (info.tags?.length ? " " : "") }) : "",
      ...(info.tags ?? []).map((t) => el("span", { class: "tag", text: t })),
    );
  }
  const generation = h.compartments.system?.generation ?? info.generation;
  setText(row.gen, generation !== undefined ? String(generation) : "–");
  setText(row.agentv, info.agentVersion);
  setText(row.seen, seenText(h));

  for (const name of COMPARTMENTS) {
    const c = h.compartments[name];
    const status = c?.status ?? "unknown";
    const cell = row.cells[name];
    setClass(cell, `cell ${status}`);
    setText(cell, status);
    // Not colour alone: where the word does not fit (phones), the cell shows this icon.
    if (cell.dataset.icon !== STATUS_ICON[status]) cell.dataset.icon = STATUS_ICON[status];
    const label = `${COMPARTMENT_LABEL[name]}: ${status}. ${c?.summary ?? ""}`;
    if (cell.getAttribute("aria-label") !== label) cell.setAttribute("aria-label", label);
  }
  if (app.openHost === h.id) renderDetail(h);
  if (tooltipTarget && row.tr.contains(tooltipTarget)) showTooltip(tooltipTarget);
}

/**
 * "Last seen": an online host has a live MQTT session (the broker's keep-alive is its heartbeat,
 * and its last will says offline when that stops), so it is seen now; an offline one was last seen
 * when it went offline while this page watched, else at its newest report.
 */
export function seenText(h) {
  return h.availability === "online" ? "now" : `offline, ${ago(h.lastSeen)}`;
}

/**
 * Header: hosts, online, and how many need attention and why (each host counted once). While a
 * large fleet is still arriving, the hub's retained summary gives the figures (first-paint.js).
 */
export function renderCounts() {
  const counts = summaryCounts(hostIndex.tally) ?? { ...hostIndex.tally, loading: null };
  const { total, online, reasons, loading } = counts;
  const box = $("fleet-counts");
  const attention = Object.values(reasons).reduce((a, b) => a + b, 0);
  const key = JSON.stringify(counts);
  if (box._key === key) return;
  box._key = key;
  const n = (x) => x.toLocaleString("en-US");
  box.replaceChildren(
    el("span", { class: "count", text: `${n(total)} hosts` }),
    el("span", { class: "count", text: `${n(online)} online` }),
    attention
      ? el(
          "span",
          { class: "count attention", id: "attention" },
          `⚠ ${n(attention)} need${attention === 1 ? "s" : ""} attention: `,
          ATTENTION_REASONS.filter((r) => reasons[r]).map((r) => `${n(reasons[r])} ${r}`).join(", "),
        )
      : total
        ? el("span", { class: "count", text: "✓ all current" })
        : "",
    loading ? el("span", { class: "count loading", id: "hosts-loading", text: loading }) : "",
  );
}

export function applyFilter() {
  hostIndex.setFilter(app.filter, app.problemsOnly);
}
