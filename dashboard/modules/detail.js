// Host detail: compartments, actions, the running job's live output.
import { COMPARTMENTS, TERMINAL_JOB_STATES } from "../generated/protocol.js";
import { el, randomId, short } from "./dom.js";
import { COMMAND_TTL_MS, COMPARTMENT_LABEL, OS_LABEL, app, lastLines, rolloutFailure, runningJob } from "./state.js";
import { markHost, markRows } from "./render.js";
import { tooltipFor } from "./tooltip.js";
import { confirmDialog, showBanner } from "./notice.js";

/** Ops an operator can run on a host from the page; `confirm` ones change the running system. */
export const HOST_ACTIONS = [
  { op: "pull", label: "Pull" },
  { op: "switch", label: "Switch", confirm: "Build and activate the checked-out configuration on {host}?" },
  { op: "test", label: "Test" },
  { op: "rollback", label: "Roll back", confirm: "Roll {host} back to its previous generation?" },
  { op: "restart", label: "Restart agent", confirm: "Restart the Lockstep agent on {host}?" },
  { op: "hold", label: "Hold" },
  { op: "release", label: "Release" },
  { op: "stop", label: "Stop job", confirm: "Cancel the job running on {host}?" },
];

export function toggleDetail(h) {
  const previous = closeDetail();
  if (previous !== h) openDetail(h);
}

/** Close the open host's detail (its row, its job output subscription); returns that host, if any. */
export function closeDetail() {
  const previous = app.openHost ? app.hosts.get(app.openHost) : null;
  if (previous?.detail) {
    previous.detail.tr.remove();
    previous.detail = null;
    previous.row?.tr.setAttribute("aria-expanded", "false");
    unsubscribeOutput(previous.id);
    markRows();
  }
  app.openHost = null;
  return previous;
}

/**
 * The detail cell spans the columns that are shown: on phones five are hidden, and a cell spanning
 * them too squeezes the host column to nothing (the detail then looks cut off).
 */
function visibleColumns() {
  const shown = [...document.querySelectorAll("table.hosts thead th")].filter((th) => th.offsetWidth > 0).length;
  return shown || 6 + COMPARTMENTS.length;
}

/** After a resize across the phone breakpoint: the open detail spans the columns now shown. */
export function fitDetailToColumns() {
  const h = app.openHost ? app.hosts.get(app.openHost) : null;
  if (h?.detail) h.detail.td.colSpan = visibleColumns();
}

export function openDetail(h) {
  if (app.openHost === h.id && h.detail) return;
  if (app.openHost && app.openHost !== h.id) toggleDetail(app.hosts.get(app.openHost));
  app.openHost = h.id;
  const td = el("td", { colspan: visibleColumns() });
  const tr = el("tr", { class: "detail", dataset: { detailFor: h.id } }, td);
  h.detail = { tr, td, pre: el("pre", { class: "job-output", "aria-live": "off" }), shownJob: null, shownLines: 0 };
  // On screen it follows its row now; the next frame's layout keeps it there (virtual-rows.js).
  h.row?.tr.after(tr);
  h.row?.tr.setAttribute("aria-expanded", "true");
  subscribeOutput(h.id);
  renderDetail(h);
  markRows();
}

export function subscribeOutput(host) {
  app.client?.subscribe(app.topics.jobOutput(host, "+"), { qos: 0 });
}
export function unsubscribeOutput(host) {
  app.client?.unsubscribe(app.topics.jobOutput(host, "+"));
}

/**
 * The job whose output to show: the one this page just started while it runs or is the newest,
 * else the newest (so a rollout's pull/switch/test replace a finished manual switch).
 */
export function shownJob(h) {
  const newest = runningJob(h);
  const mine = h.pendingCommand;
  if (mine && (h.jobs.has(mine) || h.output.has(mine))) {
    const job = h.jobs.get(mine) ?? { id: mine, op: "?", state: "running", summary: "" };
    if (!newest || newest.id === mine || !TERMINAL_JOB_STATES.includes(job.state)) return job;
  }
  return newest;
}

/** The host's last rollout failure, first thing in its detail: which rollout, what happened, why. */
function whyFailed(h) {
  const f = rolloutFailure(h);
  if (!f) return "";
  const what = { failed: "failed", "rolled-back": "failed and was rolled back", "rolling-back": "failed; rolling back", interrupted: "was interrupted" }[f.state] ?? f.state;
  return el("div", { class: `why-box ${f.state}` }, el("strong", { text: `Rollout ${f.rolloutId}: ${h.id} ${what}` }), el("pre", { class: "why-text", text: lastLines(f.reason, 6) }));
}

export function renderDetail(h) {
  const d = h.detail;
  if (!d) return;
  const info = h.info;
  const compList = el(
    "ul",
    { class: "comp-list" },
    COMPARTMENTS.map((name) => {
      const c = h.compartments[name];
      const tip = tooltipFor(h, name);
      return el(
        "li",
        {},
        el("span", { class: `cell ${c?.status ?? "unknown"}`, text: COMPARTMENT_LABEL[name] }),
        el("div", {}, el("div", { text: tip.lines[0] ?? "" }), el("div", { class: "host-sub", text: tip.lines.slice(1).join("\n") })),
      );
    }),
  );
  const facts = el(
    "p",
    { class: "host-sub" },
    [
      info.hostname,
      `${OS_LABEL[info.os] ?? info.os}`,
      info.repo ? `${info.repo} (${info.branch})` : `branch ${info.branch}`,
      info.commit ? `commit ${short(info.commit)}` : "",
      `priority ${info.priority ?? 100}`,
      info.hold ? `on hold${info.holdReason ? `: ${info.holdReason}` : ""}` : "",
    ]
      .filter(Boolean)
      .join(" · "),
  );

  const right = el("div", {});
  const latest = runningJob(h);
  const jobRunning = latest && !TERMINAL_JOB_STATES.includes(latest.state);
  if (app.role === "operator") {
    right.append(
      el(
        "div",
        { class: "actions", role: "group", "aria-label": `Actions for ${h.id}` },
        HOST_ACTIONS.filter((a) => {
          if (a.op === "hold") return !info.hold;
          if (a.op === "release") return info.hold;
          if (a.op === "stop") return !!jobRunning;
          return true;
        }).map((a) =>
          el("button", {
            type: "button",
            class: `btn small${a.confirm ? " danger-outline" : ""}`,
            dataset: { op: a.op, host: h.id },
            text: a.label,
            onclick: (ev) => {
              ev.stopPropagation();
              runAction(h, a);
            },
          }),
        ),
      ),
    );
  }
  const job = shownJob(h);
  if (job) {
    right.append(
      el(
        "div",
        { class: "job-head" },
        el("strong", { text: job.op }),
        el("span", { class: `badge ${job.state}`, text: job.state }),
        el("span", { class: "host-sub", text: job.summary ?? "" }),
      ),
    );
    if (d.shownJob !== job.id) {
      d.shownJob = job.id;
      d.shownLines = 0;
      d.pre.replaceChildren();
    }
    const out = h.output.get(job.id);
    if (out && out.lines.length > d.shownLines) {
      const atBottom = d.pre.scrollTop + d.pre.clientHeight >= d.pre.scrollHeight - 4;
      const frag = document.createDocumentFragment();
      for (const line of out.lines.slice(d.shownLines)) frag.append(el("span", { class: line.stream, text: line.text + "\n" }));
      d.pre.append(frag);
      d.shownLines = out.lines.length;
      if (atBottom) d.pre.scrollTop = d.pre.scrollHeight;
    }
    // Output is not retained: after a reload a finished job has none, so show no empty box.
    if (d.pre.childNodes.length) right.append(d.pre);
  } else {
    right.append(el("p", { class: "muted", text: "No job has run on this host yet." }));
  }
  d.td.replaceChildren(whyFailed(h), el("div", { class: "detail-grid" }, el("div", {}, facts, compList), right));
}

export async function runAction(h, action) {
  if (action.confirm) {
    const ok = await confirmDialog(`${action.label} ${h.id}?`, action.confirm.replace("{host}", h.id), action.label);
    if (!ok) return;
  }
  try {
    const command = buildCommand(action.op);
    h.pendingCommand = command.id;
    app.client.publish(app.topics.commands(h.id), JSON.stringify(command), { qos: 1 }, (err) => {
      if (err) showBanner(`Sending ${action.op} to ${h.id} failed: ${err.message}`, true);
    });
    openDetail(h);
    markHost(h);
  } catch (err) {
    showBanner(err.message, true);
  }
}

export function buildCommand(op) {
  const now = new Date();
  let args = {};
  if (op === "pull") {
    // A pull always names the exact commit: the fleet's head.
    if (!app.expected?.headCommit) throw new Error("Cannot pull: the fleet's head commit is not known yet (is the hub running?).");
    args = { commit: app.expected.headCommit };
  }
  return {
    id: `page-${op}-${now.getTime().toString(36)}-${randomId()}`,
    op,
    args,
    issuedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + COMMAND_TTL_MS).toISOString(),
    requestedBy: app.user,
  };
}
