// Activity: the audit log (who did what, when).
import { $, el, isObj, isStr, when } from "./dom.js";
import { MAX_ACTIVITY, app } from "./state.js";
import { dirty, schedule } from "./render.js";
import { checks, rejectPayload } from "./payloads.js";
import { basicAuth } from "./api.js";

export function addActivity(events) {
  for (const e of events) app.activity.set(e.id, e);
  dirty.activity = true;
  schedule();
}

export async function loadActivity() {
  try {
    const res = await fetch(`api/audit?limit=${MAX_ACTIVITY}`, { headers: { authorization: basicAuth() } });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const body = await res.json();
    const events = Array.isArray(body?.events) ? body.events : [];
    const valid = events.filter(checks.event);
    if (valid.length < events.length) rejectPayload("api/audit", `${events.length - valid.length} invalid event(s)`);
    addActivity(valid);
  } catch (err) {
    console.warn(`lockstep: the activity log could not be loaded: ${err.message}`);
  }
}

/** Actors as a person reads them: "rollout" for the engine's "rollout:<id>" (the group says which). */
export const shortActor = (actor) => (actor.startsWith("rollout:") ? "rollout" : actor.replace(/^\$/, ""));

/**
 * One short line from an event's details: op, state or summary, the warning's text, who it was
 * requested as, and the rollout (left out inside a rollout's group, which already says it).
 */
export function activityDetail(e, inGroup = false) {
  const d = isObj(e.details) ? e.details : {};
  const parts = [];
  for (const key of ["op", "phase", "state"]) if (isStr(d[key])) parts.push(d[key]);
  if (isStr(d.summary)) parts.push(d.summary);
  else if (isStr(d.reason)) parts.push(d.reason);
  for (const key of ["warning", "detail", "error"]) if (isStr(d[key])) parts.push(d[key]);
  if (Array.isArray(d.hosts) && d.hosts.every(isStr) && d.hosts.length) parts.push(d.hosts.join(", "));
  if (isStr(d.requestedBy) && d.requestedBy !== e.actor) parts.push(`requested as ${d.requestedBy}`);
  if (isStr(d.rolloutId) && !inGroup) parts.push(`rollout ${d.rolloutId}`);
  if (d.invalid === true) parts.push("invalid payload");
  const text = parts.join(" · ");
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

const rolloutOf = (e) => (isObj(e.details) && isStr(e.details.rolloutId) ? e.details.rolloutId : null);
/** Rollout groups the user opened: kept open across re-renders. */
const openGroups = new Set();

function eventRow(e, inGroup) {
  return el(
    "li",
    { dataset: { event: e.id, action: e.action } },
    el("span", { class: "a-when", title: e.at, text: when(e.at) }),
    el("span", { class: "a-actor", title: e.actor, text: shortActor(e.actor) }),
    el("span", { class: "a-action", text: e.action }),
    el("span", { class: "a-target", text: e.target ?? "" }),
    el("span", { class: `a-detail host-sub${e.action === "rollout.warning" ? " warning" : ""}`, text: activityDetail(e, inGroup) }),
  );
}

/** A rollout's events under one line: who started it, how it ended (or where it is), how many events. */
function groupRow(id, events) {
  const started = events.find((e) => e.action === "rollout.started");
  const by = started ? shortActor(started.actor) : "rollout";
  const newest = events[0];
  const rollout = app.rollouts.get(id) ?? app.history.get(id);
  const state = rollout?.state;
  const failed = events.filter((e) => e.action === "host.failed").length;
  const summary = [`${events.length} events`, state ? state : `latest: ${newest.action}`, failed ? `${failed} host${failed === 1 ? "" : "s"} failed` : ""].filter(Boolean).join(" · ");
  const details = el(
    "details",
    { open: openGroups.has(id) || undefined, ontoggle: () => (details.open ? openGroups.add(id) : openGroups.delete(id)) },
    el(
      "summary",
      { class: "a-line" },
      el("span", { class: "a-when", title: newest.at, text: when(newest.at) }),
      el("span", { class: "a-actor", text: by }),
      el("span", { class: "a-action", text: "rollout" }),
      el("span", { class: "a-target", text: rollout?.prNumber ? `PR #${rollout.prNumber}` : id }),
      el("span", { class: "a-detail host-sub", text: summary }),
    ),
    el("ol", { class: "activity nested" }, events.map((e) => eventRow(e, true))),
  );
  return el("li", { class: "a-group", dataset: { rollout: id } }, details);
}

export function renderActivity() {
  const list = $("activity");
  const events = [...app.activity.values()].sort((a, b) => b.at.localeCompare(a.at) || b.id.localeCompare(a.id));
  for (const e of events.slice(MAX_ACTIVITY)) app.activity.delete(e.id);
  if (events.length === 0) {
    list.replaceChildren(el("li", { class: "muted", text: "No activity yet." }));
    return;
  }
  // A rollout with several events is one line (at its newest event) that expands; the rest stay single.
  const byRollout = new Map();
  for (const e of events.slice(0, MAX_ACTIVITY)) {
    const id = rolloutOf(e);
    if (id) byRollout.set(id, [...(byRollout.get(id) ?? []), e]);
  }
  const rows = [];
  const placed = new Set();
  for (const e of events.slice(0, MAX_ACTIVITY)) {
    const id = rolloutOf(e);
    const group = id ? byRollout.get(id) : null;
    if (!group || group.length < 2) rows.push(eventRow(e, false));
    else if (!placed.has(id)) {
      placed.add(id);
      rows.push(groupRow(id, group));
    }
  }
  list.replaceChildren(...rows);
}
