// Activity: the audit log (who did what, when).
import { $, el, isObj, isStr, when } from "./dom.js";
import { MAX_ACTIVITY, app } from "./state.js";
import { dirty, schedule } from "./render.js";
import { checks, rejectPayload } from "./messages.js";
import { basicAuth } from "./session.js";

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

/** One short line from an event's details: op, state or summary, who it was requested as, the rollout. */
export function activityDetail(e) {
  const d = isObj(e.details) ? e.details : {};
  const parts = [];
  for (const key of ["op", "phase", "state"]) if (isStr(d[key])) parts.push(d[key]);
  if (isStr(d.summary)) parts.push(d.summary);
  else if (isStr(d.reason)) parts.push(d.reason);
  if (isStr(d.requestedBy) && d.requestedBy !== e.actor) parts.push(`requested as ${d.requestedBy}`);
  if (isStr(d.rolloutId)) parts.push(`rollout ${d.rolloutId}`);
  if (d.invalid === true) parts.push("invalid payload");
  const text = parts.join(" · ");
  return text.length > 160 ? `${text.slice(0, 159)}…` : text;
}

export function renderActivity() {
  const list = $("activity");
  const events = [...app.activity.values()].sort((a, b) => b.at.localeCompare(a.at) || b.id.localeCompare(a.id));
  for (const e of events.slice(MAX_ACTIVITY)) app.activity.delete(e.id);
  if (events.length === 0) {
    list.replaceChildren(el("li", { class: "muted", text: "No activity yet." }));
    return;
  }
  list.replaceChildren(
    ...events.slice(0, MAX_ACTIVITY).map((e) =>
      el(
        "li",
        { dataset: { event: e.id, action: e.action } },
        el("span", { class: "a-when", title: e.at, text: when(e.at) }),
        el("span", { class: "a-actor", text: e.actor }),
        el("span", { class: "a-action", text: e.action }),
        el("span", { class: "a-target", text: e.target ?? "" }),
        el("span", { class: "a-detail host-sub", text: activityDetail(e) }),
      ),
    ),
  );
}
