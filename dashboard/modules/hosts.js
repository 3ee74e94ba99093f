// The hosts table: one row per host, updated cell by cell; header counts; filters.
import { COMPARTMENTS, TERMINAL_JOB_STATES } from "../generated/protocol.js";
import { $, ago, el, setClass, setText } from "./dom.js";
import { COMPARTMENT_LABEL, OS_LABEL, STATUS_ICON, app, attentionOf, hostProblem, runningJob, stats } from "./state.js";
import { renderNoHosts } from "./empty-hub.js";
import { dirty } from "./render.js";
import { showTooltip, tooltipFor, tooltipTarget } from "./tooltip.js";
import { renderDetail } from "./detail.js";

export function createRow(h) {
  const cells = {};
  const name = el("span", { class: "name-text" });
  const flags = el("span", { class: "flags" });
  const sub = el("div", { class: "host-sub" });
  const tr = el(
    "tr",
    { class: "host", dataset: { host: h.id }, tabindex: 0, "aria-expanded": "false" },
    el("td", { class: "c-host" }, el("div", { class: "host-name" }, el("span", { class: "state-dot" }), name, flags), sub),
    el("td", { class: "c-os" }),
    el("td", { class: "c-where" }),
    el("td", { class: "c-gen mono" }),
    el("td", { class: "c-agentv mono" }),
    el("td", { class: "c-seen" }),
  );
  for (const c of COMPARTMENTS) {
    const cell = el("span", { class: "cell unknown", tabindex: 0, "aria-label": `${COMPARTMENT_LABEL[c]}: unknown` });
    // Built when shown: a re-render (500 hosts on a fleet/expected change) does not build tooltips.
    cell._tip = () => tooltipFor(h, c);
    cells[c] = cell;
    tr.append(el("td", { class: "c-comp", dataset: { compartment: c } }, cell));
  }
  const [, os, where, gen, agentv, seen] = tr.children;
  h.row = { tr, name, flags, sub, os, where, gen, agentv, seen, cells, rendered: {} };
  dirty.order = true;
  return h.row;
}

export function renderHost(h) {
  const row = h.row ?? createRow(h);
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
  row.tr.hidden = !matchesFilter(h);
  if (app.openHost === h.id) renderDetail(h);
  if (tooltipTarget && row.tr.contains(tooltipTarget)) showTooltip(tooltipTarget);
}

export function renderOrder() {
  const tbody = $("host-rows");
  const ids = [...app.hosts.values()].filter((h) => h.row).map((h) => h.id).sort();
  // Append in order: existing nodes move, nothing is re-created.
  const frag = document.createDocumentFragment();
  for (const id of ids) {
    const h = app.hosts.get(id);
    frag.append(h.row.tr);
    if (h.detail) frag.append(h.detail.tr);
  }
  tbody.append(frag);
  stats.rows = ids.length;
  renderNoHosts(ids.length === 0);
}

/**
 * "Last seen": an online host has a live MQTT session (the broker's keep-alive is its heartbeat,
 * and its last will says offline when that stops), so it is seen now; an offline one was last seen
 * when it went offline while this page watched, else at its newest report.
 */
export function seenText(h) {
  return h.availability === "online" ? "now" : `offline, ${ago(h.lastSeen)}`;
}

/** Header: hosts, online, and how many need attention and why (each host counted once). */
export function renderCounts() {
  const reasons = new Map();
  let total = 0, online = 0;
  for (const h of app.hosts.values()) {
    if (!h.info) continue;
    total++;
    if (h.availability === "online") online++;
    const why = attentionOf(h);
    if (why) reasons.set(why, (reasons.get(why) ?? 0) + 1);
  }
  const box = $("fleet-counts");
  const attention = [...reasons.values()].reduce((a, b) => a + b, 0);
  const key = JSON.stringify([total, online, [...reasons]]);
  if (box._key === key) return;
  box._key = key;
  const order = ["failed", "offline", "outdated", "no report"];
  box.replaceChildren(
    el("span", { class: "count", text: `${total} hosts` }),
    el("span", { class: "count", text: `${online} online` }),
    attention
      ? el(
          "span",
          { class: "count attention", id: "attention" },
          `⚠ ${attention} need${attention === 1 ? "s" : ""} attention: `,
          order.filter((r) => reasons.has(r)).map((r) => `${reasons.get(r)} ${r}`).join(", "),
        )
      : total
        ? el("span", { class: "count", text: "✓ all current" })
        : "",
  );
}

export function matchesFilter(h) {
  if (app.problemsOnly && !attentionOf(h)) return false;
  if (!app.filter) return true;
  const info = h.info ?? {};
  const hay = [h.id, info.hostname, info.location, info.os, ...(info.tags ?? [])].join(" ").toLowerCase();
  return app.filter.split(/\s+/).every((w) => hay.includes(w));
}

export function applyFilter() {
  for (const h of app.hosts.values()) if (h.row) h.row.tr.hidden = !matchesFilter(h);
  for (const h of app.hosts.values()) if (h.detail) h.detail.tr.hidden = h.row?.tr.hidden ?? true;
}
