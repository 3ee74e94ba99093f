// MQTT messages into state (each payload checked by payloads.js first).
import { isObj, isStr } from "./dom.js";
import { MAX_OUTPUT_LINES, app, hostRecord, stats } from "./state.js";
import { checks, decode, rejectPayload } from "./payloads.js";
import { dirty, markHost, markRows, schedule } from "./render.js";
import { tooltipTarget } from "./tooltip.js";
import { addActivity } from "./activity.js";

/** One MQTT message. */
export function onMessage(topic, payload) {
  stats.messages++;
  const parsed = app.topics.parse(topic);
  if (!parsed) return;
  // Hub availability is a bare word, everything else is JSON. (Host state comes from the fleet
  // stream, host-stream.js, not from MQTT.)
  const plainText = parsed.kind === "hubAvailability";
  const d = plainText ? { text: new TextDecoder().decode(payload), empty: payload.length === 0 } : decode(payload);
  if (d.error) return rejectPayload(topic, d.error);

  switch (parsed.kind) {
    case "job": {
      const h = hostRecord(parsed.host);
      if (d.empty) h.jobs.delete(parsed.jobId);
      else if (!checks.job(d.value)) return rejectPayload(topic, "not a job state");
      else h.jobs.set(parsed.jobId, d.value);
      return markHost(h);
    }
    case "jobOutput": {
      if (d.empty) return;
      if (!checks.jobOutput(d.value)) return rejectPayload(topic, "not job output");
      const h = hostRecord(parsed.host);
      let out = h.output.get(parsed.jobId);
      if (!out) h.output.set(parsed.jobId, (out = { seqs: new Set(), lines: [] }));
      if (out.seqs.has(d.value.seq)) return; // a redelivered batch
      out.seqs.add(d.value.seq);
      for (const line of d.value.lines) {
        if (isObj(line) && isStr(line.text)) out.lines.push({ stream: isStr(line.stream) ? line.stream : "stdout", text: line.text });
      }
      if (out.lines.length > MAX_OUTPUT_LINES) out.lines.splice(0, out.lines.length - MAX_OUTPUT_LINES);
      return markHost(h);
    }
    case "expected": {
      if (d.empty) app.expected = null;
      else if (!checks.expected(d.value)) return rejectPayload(topic, "not fleet/expected");
      else app.expected = d.value;
      dirty.fleet = true;
      // Of the host rows only the tooltips show fleet/expected, and they are built when shown:
      // re-render just the host whose tooltip is open.
      const tipHost = tooltipTarget && app.hosts.get(tooltipTarget.closest("tr.host")?.dataset.host);
      if (tipHost) dirty.hosts.add(tipHost);
      return schedule();
    }
    case "rollout": {
      if (d.empty) app.rollouts.delete(parsed.rolloutId);
      else if (!checks.rollout(d.value)) return rejectPayload(topic, "not a rollout");
      else app.rollouts.set(parsed.rolloutId, d.value);
      markNamedHosts(d.value?.hosts ? Object.keys(d.value.hosts) : []);
      // Activity's rollout lines name the rollout's PR and state.
      dirty.rollout = dirty.activity = true;
      dirty.fleet = true;
      return schedule();
    }
    case "history": {
      if (d.empty) app.history.delete(parsed.rolloutId);
      else if (!checks.history(d.value)) return rejectPayload(topic, "not a history entry");
      else app.history.set(parsed.rolloutId, d.value);
      markNamedHosts(Array.isArray(d.value?.hosts) ? d.value.hosts.map((x) => x?.host) : []);
      dirty.history = dirty.activity = true;
      return schedule();
    }
    case "preview": {
      let byHost = app.previews.get(parsed.pr);
      if (!byHost) app.previews.set(parsed.pr, (byHost = new Map()));
      if (d.empty) byHost.delete(parsed.host);
      else if (!checks.preview(d.value, parsed.pr, parsed.host)) return rejectPayload(topic, "not a host preview");
      else byHost.set(parsed.host, d.value);
      dirty.fleet = true;
      return schedule();
    }
    case "previewSummary": {
      if (d.empty) app.previewSummaries.delete(parsed.pr);
      else if (!checks.previewSummary(d.value, parsed.pr)) return rejectPayload(topic, "not a preview summary");
      else app.previewSummaries.set(parsed.pr, d.value);
      dirty.fleet = true;
      return schedule();
    }
    case "events": {
      if (d.empty || !checks.event(d.value)) return rejectPayload(topic, "not an audit event");
      addActivity([d.value]);
      return;
    }
    case "automatic": {
      if (d.empty) app.automatic = null;
      else if (!checks.automatic(d.value)) return rejectPayload(topic, "not an automatic-mode state");
      else app.automatic = d.value;
      dirty.fleet = true;
      return schedule();
    }
    case "automaticPause": {
      if (d.empty) app.automaticPause = null;
      else if (!checks.automaticPause(d.value)) return rejectPayload(topic, "not an automatic-mode pause state");
      else app.automaticPause = d.value;
      dirty.fleet = true;
      return schedule();
    }
    case "hubStatus": {
      if (d.empty) app.hubStatus = null;
      else if (!checks.hubStatus(d.value)) return rejectPayload(topic, "not a hub status");
      else app.hubStatus = d.value;
      dirty.fleet = true;
      return markRows(); // the empty table's guidance names the MQTT port
    }
    case "fleetSummary": {
      if (d.empty) app.summary = null;
      else if (!checks.fleetSummary(d.value)) return rejectPayload(topic, "not a fleet summary");
      else app.summary = d.value;
      dirty.counts = true;
      return schedule();
    }
    case "hubStorage": {
      if (d.empty) app.storage = null;
      else if (!checks.storage(d.value)) return rejectPayload(topic, "not a storage health state");
      else app.storage = d.value;
      dirty.banner = true;
      return schedule();
    }
    case "hubAvailability": {
      app.hubOnline = d.empty ? null : d.text.trim() === "online";
      dirty.banner = true;
      return schedule();
    }
    default:
      return;
  }
}

/**
 * A rollout's outcome shows in its hosts' rows (why a host failed): re-render those on screen (the
 * others are drawn afresh when they scroll in; a 10,000-host rollout touches no other row).
 */
function markNamedHosts(ids) {
  for (const id of ids) {
    const h = app.hosts.get(id);
    if (h?.row) dirty.hosts.add(h);
  }
}
