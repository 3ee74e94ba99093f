// Host state from the hub's fleet stream (protocol/fleet-stream.ts): one snapshot of every host,
// then live changes, on one ordered HTTP response. The page does not subscribe to the per-host
// retained topics: the broker's replay of 7 messages per host was most of a login at 10,000 hosts.
// Lines are applied a few per task, so a 10,000-host snapshot never holds a frame for long. After
// a lost connection the stream starts again with a new snapshot, which replaces the hosts held.
import { COMPARTMENTS, FLEET_STREAM_PATH, LineSplitter } from "../generated/protocol.js";
import { isObj, isStr } from "./dom.js";
import { app, hostRecord, stats, touch } from "./state.js";
import { checks, rejectPayload } from "./payloads.js";
import { markHost } from "./render.js";
import { closeDetail } from "./detail.js";
import { basicAuth } from "./api.js";
import { showBanner } from "./notice.js";

/** Work on stream lines for at most this long before letting the browser draw a frame. */
const SLICE_MS = 8;
const RETRY_MS = 3000;
/** 503s in a row (the hub's stream cap) before the page says so. */
const REFUSALS_SHOWN = 2;

/** Asks the hub for the fleet stream (the login sends it while it asks whoami: one round trip less). */
export function openFleetStream(authorization) {
  return fetch(FLEET_STREAM_PATH.slice(1), { headers: { authorization }, cache: "no-store" });
}

/**
 * Follows the fleet while the page's MQTT client is connected, from `first` (a stream already
 * asked for) or a new one; reconnects after a lost connection. Logout reloads the page, which ends
 * the stream: this loop does not cancel its reader itself.
 */
export async function followFleet(first) {
  let refused = 0;
  while (app.client && !app.client.disconnecting) {
    try {
      const res = await (first ?? openFleetStream(basicAuth()));
      first = undefined;
      refused = res.status === 503 ? refused + 1 : 0;
      await readStream(res);
    } catch (err) {
      first = undefined;
      if (err.status === 401 || err.status === 403) return showBanner(`Cannot load the fleet: ${err.message}`, true);
      console.warn("lockstep: fleet stream lost", err.message);
      // One refusal is a moment's crowd; more in a row the user should see (and can act on).
      if (refused >= REFUSALS_SHOWN) showBanner(`The hub is streaming the fleet to as many pages as it allows (${err.message}); close fleet pages in other tabs. Retrying…`);
    }
    await new Promise((r) => setTimeout(r, RETRY_MS));
  }
}

async function readStream(res) {
  if (!res.ok || !res.body) throw Object.assign(new Error(await refusal(res)), { status: res.status });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const lines = new LineSplitter();
  const snapshot = new Set();
  let sliceStart = performance.now();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the hub ended the fleet stream");
    for (const text of lines.push(value)) {
      applyLine(text, snapshot);
      if (performance.now() - sliceStart > SLICE_MS) {
        await new Promise((r) => setTimeout(r, 0));
        sliceStart = performance.now();
      }
    }
  }
}

/** The hub's reason for a refused stream (its JSON error), or the HTTP status. */
async function refusal(res) {
  const body = await res.json().catch(() => undefined);
  return isObj(body) && isStr(body.error) ? `HTTP ${res.status}: ${body.error.slice(0, 200)}` : `HTTP ${res.status}`;
}

function applyLine(text, snapshot) {
  let line;
  try {
    line = JSON.parse(text);
  } catch {
    return rejectPayload("the fleet stream", "not JSON");
  }
  if (!isObj(line) || !["snapshot", "changes", "ping"].includes(line.kind)) return rejectPayload("the fleet stream", "not a stream line");
  if (line.kind === "ping") return;
  if (!Array.isArray(line.hosts)) return rejectPayload("the fleet stream", "no hosts");
  const live = line.kind === "changes";
  for (const x of line.hosts) {
    if (!isObj(x) || !isStr(x.host)) {
      rejectPayload("the fleet stream", "not a host");
      continue;
    }
    if (!live) snapshot.add(x.host);
    applyHost(x, live);
  }
  if (line.kind === "snapshot" && line.done === true) {
    // Hosts the page held from an earlier connection that the new snapshot does not have left meanwhile.
    for (const h of app.hosts.values()) if (h.info && !snapshot.has(h.id)) removeHost(h);
    snapshot.clear();
    app.fleetLoaded = true;
    stats.fleetLoaded = true;
  }
}

/** One host's whole state; `live`: it changed now (a snapshot tells what was, not when). */
function applyHost(x, live) {
  // A bad info leaves the host's last good state whole (nothing of this line applied).
  if (x.info !== null && !checks.info(x.info, x.host)) return rejectPayload(`the fleet stream (${x.host})`, "not a host info");
  const h = hostRecord(x.host);
  stats.hostStates++;
  const availability = x.availability === "online" || x.availability === "offline" ? x.availability : null;
  // A live change carries when the hub last heard from the host (an "offline" is its last sign of
  // life). A snapshot's lastSeen is not used: after a hub restart it is the time the broker
  // replayed the retained state, which would make a host gone for days look just seen; the host's
  // own times (info, compartments) below tell it then.
  if (live && isStr(x.lastSeen)) touch(h, x.lastSeen);
  h.availability = availability;
  const compartments = {};
  for (const name of COMPARTMENTS) {
    const c = isObj(x.compartments) ? x.compartments[name] : undefined;
    if (c === undefined) continue;
    if (!checks.compartment(c)) {
      rejectPayload(`the fleet stream (${x.host} ${name})`, "not a compartment");
      continue;
    }
    compartments[name] = c;
    touch(h, c.checkedAt);
  }
  h.compartments = compartments;
  if (x.info === null) return h.info ? removeHost(h) : markHost(h);
  h.info = x.info;
  touch(h, x.info.updatedAt);
  markHost(h);
}

/** A host without info left the fleet: its row goes with the next frame. */
export function removeHost(h) {
  h.info = null;
  if (app.openHost === h.id) closeDetail();
  markHost(h);
}
