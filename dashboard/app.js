// Lockstep fleet page: MQTT over WebSocket straight to the broker, state from retained topics.
// Plain ES module, no framework. Rendering is batched per animation frame and touches only the
// cells whose value changed, so hundreds of hosts stay smooth.
import mqtt from "./vendor/mqtt.esm.js";
import {
  COMPARTMENTS,
  STATUSES,
  TERMINAL_JOB_STATES,
  TERMINAL_ROLLOUT_STATES,
  describeChange,
  formatLockDiff,
  topicsFor,
  worstStatus,
} from "./protocol.js";

const $ = (id) => document.getElementById(id);
const COMPARTMENT_LABEL = { agent: "Agent", git: "Git", lock: "Lock", system: "System", tests: "Tests" };
const OS_LABEL = { nixos: "NixOS", darwin: "macOS", "home-manager": "Home Manager", generic: "Nix" };
/** Ops an operator can run on a host from the page; `confirm` ones change the running system. */
const HOST_ACTIONS = [
  { op: "pull", label: "Pull" },
  { op: "switch", label: "Switch", confirm: "Build and activate the checked-out configuration on {host}?" },
  { op: "test", label: "Test" },
  { op: "rollback", label: "Roll back", confirm: "Roll {host} back to its previous generation?" },
  { op: "restart", label: "Restart agent", confirm: "Restart the Lockstep agent on {host}?" },
  { op: "hold", label: "Hold" },
  { op: "release", label: "Release" },
  { op: "stop", label: "Stop job", confirm: "Cancel the job running on {host}?" },
];
const COMMAND_TTL_MS = 15 * 60_000;
const MAX_OUTPUT_LINES = 2000;
const SESSION_KEY = "lockstep.session";
const MAX_ACTIVITY = 100;

const app = {
  config: null,
  topics: null,
  client: null,
  user: null,
  password: null,
  role: "viewer",
  hosts: new Map(),
  expected: null,
  rollouts: new Map(),
  history: new Map(),
  /** Audit events by id (GET /api/audit, then fleet/events live), at most MAX_ACTIVITY after a render. */
  activity: new Map(),
  hubOnline: null,
  openHost: null,
  followRolloutId: null,
  filter: "",
  problemsOnly: false,
  invalidPayloads: 0,
};

// Exposed for the browser tests and the benchmark (read-only numbers, no credentials).
const stats = { renders: 0, lastRenderMs: 0, maxRenderMs: 0, totalRenderMs: 0, messages: 0, handleMs: 0, invalid: 0, rows: 0 };
window.lockstepStats = stats;

// ---------------------------------------------------------------------------------------------
// Small DOM helpers (text only: nothing from the wire is ever parsed as HTML)

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

/** Set text only when it changed (keeps layout work to the cells that really moved). */
function setText(node, text) {
  if (node._text !== text) {
    node._text = text;
    node.textContent = text;
  }
}
function setClass(node, cls) {
  if (node.className !== cls) node.className = cls;
}

const short = (sha, n = 8) => (typeof sha === "string" && sha ? sha.slice(0, n) : "?");

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

// ---------------------------------------------------------------------------------------------
// Defensive payload checks (the browser has no zod: check the fields the page relies on)

const isObj = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
const isStr = (v) => typeof v === "string";

function decode(payload) {
  const text = new TextDecoder().decode(payload);
  if (text.length === 0) return { empty: true };
  try {
    return { value: JSON.parse(text), text };
  } catch {
    return { error: "not JSON", text };
  }
}

const checks = {
  info: (v, host) => isObj(v) && v.host === host && isStr(v.os) && isStr(v.agentVersion) && isStr(v.updatedAt),
  compartment: (v) => isObj(v) && STATUSES.includes(v.status) && isStr(v.summary) && isStr(v.checkedAt),
  job: (v) => isObj(v) && isStr(v.id) && isStr(v.op) && isStr(v.state) && isStr(v.acceptedAt),
  jobOutput: (v) => isObj(v) && isStr(v.id) && Number.isInteger(v.seq) && Array.isArray(v.lines),
  expected: (v) => isObj(v) && isStr(v.headCommit) && isStr(v.lockHash),
  rollout: (v) => isObj(v) && isStr(v.id) && isStr(v.state) && Array.isArray(v.phases) && isObj(v.hosts) && isObj(v.counts),
  history: (v) => isObj(v) && isStr(v.rolloutId) && isStr(v.state) && Array.isArray(v.hosts),
  event: (v) => isObj(v) && isStr(v.id) && isStr(v.at) && isStr(v.actor) && isStr(v.action) && (v.target === undefined || isStr(v.target)),
};

function rejectPayload(topic, why) {
  stats.invalid++;
  console.warn(`lockstep: ignoring invalid payload on ${topic}: ${why}`);
}

// ---------------------------------------------------------------------------------------------
// State updates from MQTT

function hostRecord(id) {
  let h = app.hosts.get(id);
  if (!h) {
    h = { id, info: null, availability: null, compartments: {}, jobs: new Map(), output: new Map(), lastSeen: 0, row: null, detail: null, pendingCommand: null };
    app.hosts.set(id, h);
  }
  return h;
}

function touch(h, iso) {
  const t = Date.parse(iso ?? "");
  if (Number.isFinite(t) && t > h.lastSeen) h.lastSeen = t;
}

function onMessage(topic, payload) {
  stats.messages++;
  const parsed = app.topics.parse(topic);
  if (!parsed) return;
  // Availability payloads are bare words, everything else is JSON.
  const plainText = parsed.kind === "availability" || parsed.kind === "hubAvailability";
  const d = plainText ? { text: new TextDecoder().decode(payload), empty: payload.length === 0 } : decode(payload);
  if (d.error) return rejectPayload(topic, d.error);

  switch (parsed.kind) {
    case "availability": {
      const h = hostRecord(parsed.host);
      const text = d.empty ? null : d.text.trim();
      if (text !== null && text !== "online" && text !== "offline") return rejectPayload(topic, "expected online/offline");
      h.availability = text;
      return markHost(h);
    }
    case "info": {
      const h = hostRecord(parsed.host);
      if (d.empty) return removeHost(h);
      if (!checks.info(d.value, parsed.host)) return rejectPayload(topic, "not a host info");
      const isNew = !h.info;
      h.info = d.value;
      touch(h, d.value.updatedAt);
      if (isNew) dirty.order = true;
      return markHost(h);
    }
    case "compartment": {
      const h = hostRecord(parsed.host);
      if (d.empty) delete h.compartments[parsed.compartment];
      else if (!checks.compartment(d.value)) return rejectPayload(topic, "not a compartment");
      else {
        h.compartments[parsed.compartment] = d.value;
        touch(h, d.value.checkedAt);
      }
      return markHost(h);
    }
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
      dirty.rollout = true;
      dirty.fleet = true;
      return schedule();
    }
    case "history": {
      if (d.empty) app.history.delete(parsed.rolloutId);
      else if (!checks.history(d.value)) return rejectPayload(topic, "not a history entry");
      else app.history.set(parsed.rolloutId, d.value);
      dirty.history = true;
      return schedule();
    }
    case "events": {
      if (d.empty || !checks.event(d.value)) return rejectPayload(topic, "not an audit event");
      addActivity([d.value]);
      return;
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

function removeHost(h) {
  h.info = null;
  if (h.row) {
    h.row.tr.remove();
    h.row = null;
  }
  if (h.detail) {
    h.detail.tr.remove();
    h.detail = null;
  }
  if (app.openHost === h.id) app.openHost = null;
  dirty.counts = true;
  schedule();
}

// ---------------------------------------------------------------------------------------------
// Rendering, batched per animation frame

const dirty = { hosts: new Set(), order: false, fleet: false, rollout: false, history: false, activity: false, counts: false, banner: false };
let frame = 0;
function schedule() {
  if (!frame) frame = requestAnimationFrame(render);
}
function markHost(h) {
  dirty.hosts.add(h);
  dirty.counts = true;
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
    else renderHost(h);
  }
  dirty.hosts.clear();
  for (const h of later) dirty.hosts.add(h);
  if (later.length) frame = requestAnimationFrame(render);
  if (dirty.order) renderOrder();
  if (dirty.counts) renderCounts();
  if (dirty.fleet) renderUpdateCard();
  if (dirty.rollout) renderRollout();
  if (dirty.history) renderHistory();
  if (dirty.activity) renderActivity();
  if (dirty.banner) renderBanner();
  dirty.order = dirty.counts = dirty.fleet = dirty.rollout = dirty.history = dirty.activity = dirty.banner = false;
  const ms = performance.now() - t0;
  stats.renders++;
  stats.lastRenderMs = ms;
  stats.totalRenderMs += ms;
  stats.maxRenderMs = Math.max(stats.maxRenderMs, ms);
}

function worstOf(h) {
  return worstStatus(COMPARTMENTS.map((name) => h.compartments[name]?.status ?? "unknown"));
}

function runningJob(h) {
  let latest = null;
  for (const j of h.jobs.values()) if (!latest || j.acceptedAt > latest.acceptedAt) latest = j;
  return latest;
}

function createRow(h) {
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

function renderHost(h) {
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
  const subKey = `${subText}|${OS_LABEL[info.os] ?? info.os}|${where.join(",")}`;
  if (row.rendered.sub !== subKey) {
    row.rendered.sub = subKey;
    row.sub.replaceChildren(
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
  setText(row.seen, online ? ago(h.lastSeen) : `offline, ${ago(h.lastSeen)}`);

  for (const name of COMPARTMENTS) {
    const c = h.compartments[name];
    const status = c?.status ?? "unknown";
    const cell = row.cells[name];
    setClass(cell, `cell ${status}`);
    setText(cell, status);
    const label = `${COMPARTMENT_LABEL[name]}: ${status}. ${c?.summary ?? ""}`;
    if (cell.getAttribute("aria-label") !== label) cell.setAttribute("aria-label", label);
  }
  row.tr.hidden = !matchesFilter(h);
  if (app.openHost === h.id) renderDetail(h);
  if (tooltipTarget && row.tr.contains(tooltipTarget)) showTooltip(tooltipTarget);
}

function renderOrder() {
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
  $("hosts-empty").hidden = ids.length > 0;
}

function renderCounts() {
  const counts = { ok: 0, outdated: 0, failed: 0, working: 0, unknown: 0 };
  let total = 0, online = 0;
  for (const h of app.hosts.values()) {
    if (!h.info) continue;
    total++;
    if (h.availability === "online") online++;
    counts[worstOf(h)]++;
  }
  const box = $("fleet-counts");
  const key = JSON.stringify([total, online, counts]);
  if (box._key === key) return;
  box._key = key;
  box.replaceChildren(
    el("span", { class: "count", text: `${total} hosts` }),
    el("span", { class: "count", text: `${online} online` }),
    ...STATUSES.filter((s) => counts[s] > 0).map((s) =>
      el("span", { class: "count", title: `hosts whose worst compartment is ${s}` }, el("span", { class: "dot", style: `background: var(--${s})` }), `${counts[s]} ${s}`),
    ),
  );
}

function matchesFilter(h) {
  if (app.problemsOnly && worstOf(h) === "ok" && h.availability === "online") return false;
  if (!app.filter) return true;
  const info = h.info ?? {};
  const hay = [h.id, info.hostname, info.location, info.os, ...(info.tags ?? [])].join(" ").toLowerCase();
  return app.filter.split(/\s+/).every((w) => hay.includes(w));
}

function applyFilter() {
  for (const h of app.hosts.values()) if (h.row) h.row.tr.hidden = !matchesFilter(h);
  for (const h of app.hosts.values()) if (h.detail) h.detail.tr.hidden = h.row?.tr.hidden ?? true;
}

// ---------------------------------------------------------------------------------------------
// Tooltips: why a compartment has its colour

function pendingUpdateLines() {
  const p = app.expected?.pendingUpdate;
  if (!p) return [];
  const lines = [`Update PR #${p.number} pending (CI ${p.ci?.state ?? "unknown"}):`];
  for (const c of allChanges(p.lockDiff)) lines.push(`  ${describeChange(c)}`);
  return lines;
}

function allChanges(diff) {
  if (!isObj(diff)) return [];
  return [...(diff.updated ?? []), ...(diff.added ?? []), ...(diff.removed ?? [])].filter((c) => isObj(c) && isStr(c.input));
}

function tooltipFor(h, name) {
  const c = h.compartments[name];
  const title = `${COMPARTMENT_LABEL[name]}: ${c?.status ?? "unknown"}`;
  if (!c) return { title, lines: ["No report from this host yet."] };
  const d = isObj(c.detail) ? c.detail : {};
  const lines = [c.summary];
  const exp = app.expected;
  switch (name) {
    case "agent":
      if (d.version) lines.push(`running ${d.version}`);
      if (d.expectedVersion) lines.push(`fleet expects ${d.expectedVersion}`);
      if (d.onDiskVersion) lines.push(`installed on disk ${d.onDiskVersion}`);
      if (d.restartSuggested) lines.push("Restart the agent to load the new version.");
      break;
    case "git":
      if (d.branch) lines.push(`branch ${d.branch}`);
      if (d.head) lines.push(`checkout ${short(d.head)}`);
      lines.push(`fleet head ${short(d.expectedHead ?? exp?.headCommit)}`);
      if (typeof d.behindBy === "number") lines.push(`${d.behindBy} commit(s) behind`);
      if (d.dirty) lines.push("local changes in the checkout");
      break;
    case "lock": {
      const p = exp?.pendingUpdate;
      // The summary already names the pending PR: the full per-input list below replaces it.
      if (p && c.summary.includes(`PR #${p.number}`)) lines.splice(0, 1, ...pendingUpdateLines());
      else lines.push(...pendingUpdateLines());
      if (d.lockHash) lines.push(`lock ${short(d.lockHash, 12)}${d.expectedLockHash && d.expectedLockHash !== d.lockHash ? `, head has ${short(d.expectedLockHash, 12)}` : ""}`);
      if (typeof d.ageDays === "number") lines.push(`inputs ${d.ageDays} days old${typeof d.lastModified === "number" ? ` (newest ${new Date(d.lastModified * 1000).toISOString().slice(0, 10)})` : ""}`);
      break;
    }
    case "system":
      if (c.generation !== undefined) lines.push(`generation ${c.generation}`);
      if (d.currentSystemPath) lines.push(`running ${d.currentSystemPath}`);
      if (d.expectedSystemPath && d.expectedSystemPath !== d.currentSystemPath) lines.push(`built ${d.expectedSystemPath}`);
      if (isObj(d.lastSwitch)) lines.push(`last switch ${d.lastSwitch.ok ? "ok" : "failed"}${d.lastSwitch.commit ? ` at ${short(d.lastSwitch.commit)}` : ""}${d.lastSwitch.error ? `: ${d.lastSwitch.error}` : ""}`);
      break;
    case "tests":
      if (typeof d.total === "number") lines.push(`${d.total} checks${Array.isArray(d.failed) && d.failed.length ? `, failed: ${d.failed.join(", ")}` : ""}`);
      if (d.testedGeneration !== undefined) lines.push(`tested generation ${d.testedGeneration}`);
      break;
  }
  if (isStr(d.error) && d.error !== c.summary) lines.push(`error: ${d.error}`);
  lines.push(`checked ${ago(Date.parse(c.checkedAt))}`);
  return { title, lines: lines.filter(Boolean) };
}

let tooltipTarget = null;
function showTooltip(target) {
  const tip = $("tooltip");
  const content = target._tip?.();
  if (!content) return;
  tooltipTarget = target;
  tip.replaceChildren(el("strong", { text: content.title }), content.lines.join("\n"));
  tip.hidden = false;
  const r = target.getBoundingClientRect();
  const w = tip.offsetWidth, hgt = tip.offsetHeight;
  let left = Math.min(Math.max(8, r.left + r.width / 2 - w / 2), window.innerWidth - w - 8);
  let top = r.bottom + 8;
  if (top + hgt > window.innerHeight - 8) top = r.top - hgt - 8;
  tip.style.left = `${left}px`;
  tip.style.top = `${Math.max(8, top)}px`;
}
function hideTooltip() {
  tooltipTarget = null;
  $("tooltip").hidden = true;
}

// ---------------------------------------------------------------------------------------------
// Host detail: compartments, actions, the running job's live output

function toggleDetail(h) {
  const previous = app.openHost ? app.hosts.get(app.openHost) : null;
  if (previous?.detail) {
    previous.detail.tr.remove();
    previous.detail = null;
    previous.row?.tr.setAttribute("aria-expanded", "false");
    unsubscribeOutput(previous.id);
  }
  if (previous === h) {
    app.openHost = null;
    return;
  }
  openDetail(h);
}

function openDetail(h) {
  if (app.openHost === h.id && h.detail) return;
  if (app.openHost && app.openHost !== h.id) toggleDetail(app.hosts.get(app.openHost));
  app.openHost = h.id;
  const td = el("td", { colspan: 6 + COMPARTMENTS.length });
  const tr = el("tr", { class: "detail", dataset: { detailFor: h.id } }, td);
  h.detail = { tr, td, pre: el("pre", { class: "job-output", "aria-live": "off" }), shownJob: null, shownLines: 0 };
  h.row.tr.after(tr);
  h.row.tr.setAttribute("aria-expanded", "true");
  subscribeOutput(h.id);
  renderDetail(h);
}

function subscribeOutput(host) {
  app.client?.subscribe(app.topics.jobOutput(host, "+"), { qos: 0 });
}
function unsubscribeOutput(host) {
  app.client?.unsubscribe(app.topics.jobOutput(host, "+"));
}

/**
 * The job whose output to show: the one this page just started while it runs or is the newest,
 * else the newest (so a rollout's pull/switch/test replace a finished manual switch).
 */
function shownJob(h) {
  const newest = runningJob(h);
  const mine = h.pendingCommand;
  if (mine && (h.jobs.has(mine) || h.output.has(mine))) {
    const job = h.jobs.get(mine) ?? { id: mine, op: "?", state: "running", summary: "" };
    if (!newest || newest.id === mine || !TERMINAL_JOB_STATES.includes(job.state)) return job;
  }
  return newest;
}

function renderDetail(h) {
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
  d.td.replaceChildren(el("div", { class: "detail-grid" }, el("div", {}, facts, compList), right));
}

async function runAction(h, action) {
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

function randomId() {
  const bytes = new Uint8Array(4);
  crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function buildCommand(op) {
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

function confirmDialog(title, text, okLabel) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

// ---------------------------------------------------------------------------------------------
// Fleet bar: pending update, rollout progress, history

function activeRollout() {
  const all = [...app.rollouts.values()];
  if (app.followRolloutId && app.rollouts.has(app.followRolloutId)) return app.rollouts.get(app.followRolloutId);
  const running = all.filter((r) => !TERMINAL_ROLLOUT_STATES.includes(r.state));
  const pool = running.length ? running : all;
  return pool.sort((a, b) => String(b.updatedAt).localeCompare(String(a.updatedAt)))[0] ?? null;
}

function renderUpdateCard() {
  const body = $("update-body");
  const exp = app.expected;
  const p = exp?.pendingUpdate;
  if (!exp) {
    body.replaceChildren(el("span", { class: "muted", text: "Waiting for the hub to publish the fleet's expected state…" }));
    return;
  }
  if (!p) {
    body.replaceChildren(
      el("div", { text: "flake.lock is current: no update PR is open." }),
      el("div", { class: "host-sub", text: `head ${short(exp.headCommit)} on ${exp.branch}${typeof exp.lockLastModified === "number" ? `, newest input ${new Date(exp.lockLastModified * 1000).toISOString().slice(0, 10)}` : ""}` }),
    );
    return;
  }
  const ci = p.ci?.state ?? "unknown";
  const rollout = activeRollout();
  const busy = rollout && !TERMINAL_ROLLOUT_STATES.includes(rollout.state);
  const mergeBtn =
    app.role === "operator"
      ? el("button", {
          type: "button",
          class: "btn primary",
          id: "merge-deploy",
          text: "Merge & deploy",
          disabled: busy ? true : undefined,
          title: busy ? "a rollout is running" : ci !== "success" ? `CI is ${ci}` : "",
          onclick: () => mergeAndDeploy(p),
        })
      : "";
  body.replaceChildren(
    el("div", { class: "pr-title" }, el("a", { href: p.url, target: "_blank", rel: "noopener", text: `#${p.number}` }), ` ${p.title}`),
    el(
      "div",
      { class: "pr-meta" },
      el("span", { class: `badge ${ci}`, text: `CI ${ci}` }),
      p.ci?.summary ? el("span", { class: "host-sub", text: p.ci.summary }) : "",
      p.mergeable === false ? el("span", { class: "badge failed", text: "not mergeable" }) : "",
      el("span", { class: "host-sub", text: `opened ${ago(Date.parse(p.openedAt))}` }),
    ),
    el("ul", { class: "diff" }, allChanges(p.lockDiff).map((c) => el("li", { text: describeChange(c) }))),
    p.superseded?.length ? el("p", { class: "host-sub", text: `supersedes ${p.superseded.map((n) => `#${n}`).join(", ")}` }) : "",
    mergeBtn,
  );
}

async function mergeAndDeploy(p) {
  const ok = await confirmDialog(`Merge PR #${p.number} and deploy?`, `${formatLockDiff(p.lockDiff, { max: 4 })}. The merged commit rolls out to the fleet: canary first, then waves.`, "Merge & deploy");
  if (!ok) return;
  const btn = $("merge-deploy");
  if (btn) btn.disabled = true;
  try {
    const res = await api("api/flake-updates/merge-and-deploy", { pr_number: p.number });
    if (!res || !isStr(res.job_id)) throw new Error("the hub did not return a rollout id");
    app.followRolloutId = res.job_id;
    showBanner(`Merging PR #${p.number}; rollout ${res.job_id} started.`);
    dirty.rollout = dirty.fleet = true;
    schedule();
  } catch (err) {
    showBanner(`Merge & deploy failed: ${err.message}`, true);
    if (btn) btn.disabled = false;
  }
}

async function api(path, body) {
  const res = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: basicAuth() },
    body: JSON.stringify(body ?? {}),
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // a non-JSON error page: report its status below
  }
  if (!res.ok) throw new Error((isObj(json) && (json.error || json.message)) || `HTTP ${res.status}`);
  return json;
}

function basicAuth() {
  return "Basic " + btoa(unescape(encodeURIComponent(`${app.user}:${app.password}`)));
}

function renderRollout() {
  const r = activeRollout();
  const body = $("rollout-body");
  const badge = $("rollout-state");
  if (!r) {
    badge.hidden = true;
    body.replaceChildren(el("span", { class: "muted", text: "No rollout yet." }));
    return;
  }
  badge.hidden = false;
  badge.className = `badge ${r.state}`;
  badge.textContent = r.state;
  const total = r.counts.total || Object.keys(r.hosts).length;
  const done = r.counts.succeeded + r.counts.failed + r.counts.skipped;
  const running = !TERMINAL_ROLLOUT_STATES.includes(r.state);
  const title = running ? `Deploying ${done}/${total}` : `${r.state === "completed" ? "Deployed" : "Finished"} ${r.counts.succeeded}/${total}`;
  const pct = (n) => (total ? `${(100 * n) / total}%` : "0");
  body.replaceChildren(
    el("div", { class: "rollout-title", id: "rollout-title", text: title }),
    el("div", { class: "host-sub", text: `${r.summary} · commit ${short(r.commit)}${r.prNumber ? ` · PR #${r.prNumber}` : ""} · by ${r.requestedBy}` }),
    el(
      "div",
      { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": total, "aria-valuenow": done },
      el("span", { class: "ok", style: `width:${pct(r.counts.succeeded)}` }),
      el("span", { class: "failed", style: `width:${pct(r.counts.failed)}` }),
      el("span", { class: "skipped", style: `width:${pct(r.counts.skipped)}` }),
    ),
    el(
      "div",
      { class: "phases" },
      r.phases.map((phase) =>
        el(
          "div",
          { class: "phase", dataset: { phase: phase.name } },
          el("div", { class: `phase-name${phase.name === r.currentPhase ? " current" : ""}`, text: phase.name }),
          el(
            "div",
            { class: "chips" },
            (phase.hosts ?? []).map((host) => {
              const hs = r.hosts[host];
              const st = hs?.state ?? "pending";
              return el("span", { class: "chip", dataset: { host }, title: hs?.reason ?? hs?.phase ?? "" }, host, el("span", { class: `badge ${st}`, text: st }));
            }),
          ),
        ),
      ),
    ),
    r.revertPr ? el("p", {}, "Reverted in ", el("a", { href: r.revertPr.url, target: "_blank", rel: "noopener", text: `PR #${r.revertPr.number}` })) : "",
  );
}

function renderHistory() {
  const list = $("history");
  const entries = [...app.history.values()].sort((a, b) => String(b.finishedAt).localeCompare(String(a.finishedAt))).slice(0, 25);
  if (entries.length === 0) {
    list.replaceChildren(el("li", { class: "muted", text: "No finished rollouts yet." }));
    return;
  }
  list.replaceChildren(
    ...entries.map((e) =>
      el(
        "li",
        { dataset: { rollout: e.rolloutId } },
        el(
          "div",
          { class: "h-head" },
          el("span", { class: `badge ${e.state}`, text: e.state }),
          el("strong", { text: e.prNumber ? `PR #${e.prNumber}` : `rollout ${e.rolloutId}` }),
          el("span", { class: "host-sub", text: `commit ${short(e.commit)} · by ${e.requestedBy}` }),
          el("span", { class: "h-when", text: when(e.finishedAt) }),
        ),
        el("div", { class: "mono", text: e.lockDiff ? formatLockDiff(e.lockDiff) : e.summary }),
        el(
          "div",
          { class: "chips" },
          e.hosts.filter(isObj).map((hs) =>
            el("span", { class: "chip", title: hs.reason ?? "" }, hs.host, el("span", { class: `badge ${hs.state}`, text: hs.state })),
          ),
        ),
        e.revertPr ? el("div", {}, "reverted in ", el("a", { href: e.revertPr.url, target: "_blank", rel: "noopener", text: `PR #${e.revertPr.number}` })) : "",
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Activity: the audit log (who did what, when)

function addActivity(events) {
  for (const e of events) app.activity.set(e.id, e);
  dirty.activity = true;
  schedule();
}

async function loadActivity() {
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
function activityDetail(e) {
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

function renderActivity() {
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

let bannerTimer = 0;
function showBanner(text, isError = false) {
  const b = $("banner");
  b.textContent = text;
  b.className = `banner${isError ? " error" : ""}`;
  b.hidden = false;
  clearTimeout(bannerTimer);
  if (!isError) bannerTimer = setTimeout(renderBanner, 8000);
}
function renderBanner() {
  const b = $("banner");
  if (app.hubOnline === false) {
    b.textContent = "The hub is offline: host states are the last known ones and fleet actions are unavailable.";
    b.className = "banner";
    b.hidden = false;
  } else {
    b.hidden = true;
  }
}

// ---------------------------------------------------------------------------------------------
// Login and the MQTT connection

function defaultWsUrl() {
  const u = new URL("mqtt", location.href);
  u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return u.toString();
}

function explainConnectError(err, url) {
  const code = err?.code;
  const msg = String(err?.message ?? err);
  if (code === 4 || code === 5 || /not authori[sz]ed|bad user ?name or password/i.test(msg)) return "Wrong username or password.";
  return `Cannot reach the fleet's MQTT broker at ${url}: ${msg}`;
}

function connectMqtt(url, username, password) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, {
      username,
      password,
      clientId: `lockstep-page-${randomId()}${randomId()}`,
      protocolVersion: 4,
      clean: true,
      connectTimeout: 10_000,
      reconnectPeriod: 0, // first attempt only; reconnects are switched on once it worked
    });
    const fail = (err) => {
      client.removeAllListeners("connect");
      client.end(true);
      reject(new Error(explainConnectError(err, url)));
    };
    client.once("connect", () => {
      client.removeListener("error", fail);
      client.removeListener("close", onClose);
      resolve(client);
    });
    client.once("error", fail);
    const onClose = () => fail(new Error("the connection was closed"));
    client.once("close", onClose);
  });
}

async function whoami(username, password) {
  try {
    const res = await fetch("api/whoami", { headers: { authorization: "Basic " + btoa(unescape(encodeURIComponent(`${username}:${password}`))) } });
    if (!res.ok) return { role: "viewer", note: `role unknown (whoami: HTTP ${res.status}); actions hidden` };
    const body = await res.json();
    return { role: body?.role === "operator" ? "operator" : "viewer", user: isStr(body?.user) ? body.user : username };
  } catch (err) {
    return { role: "viewer", note: `role unknown (${err.message}); actions hidden` };
  }
}

async function login(username, password) {
  const cfgRes = await fetch("config.json");
  if (!cfgRes.ok) throw new Error(`the page configuration could not be loaded (HTTP ${cfgRes.status})`);
  app.config = await cfgRes.json();
  app.topics = topicsFor(app.config.prefix);
  const url = app.config.mqttWsUrl || defaultWsUrl();
  const client = await connectMqtt(url, username, password);
  const who = await whoami(username, password);
  app.client = client;
  app.user = who.user ?? username;
  app.password = password;
  app.role = who.role;
  client.options.reconnectPeriod = 3000;
  client.on("message", (topic, payload) => {
    const t0 = performance.now();
    onMessage(topic, payload);
    stats.handleMs += performance.now() - t0;
  });
  client.on("connect", () => setConn(true));
  client.on("close", () => setConn(false));
  client.on("error", (err) => console.warn("lockstep: mqtt error", err.message));
  const t = app.topics;
  client.subscribe([...t.allHostState(), t.expected(), t.allRollouts(), t.allHistory(), t.allJobs(), t.hubAvailability(), t.events()], { qos: 0 });
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({ username, password }));
  document.body.dataset.role = app.role;
  $("session-user").textContent = `${app.user} · ${app.role}`;
  $("session").hidden = false;
  $("login-view").hidden = true;
  $("fleet-view").hidden = false;
  for (const b of document.querySelectorAll(".operator-only")) b.hidden = app.role !== "operator";
  setConn(true);
  if (who.note) showBanner(who.note);
  dirty.fleet = dirty.rollout = dirty.history = dirty.activity = dirty.counts = dirty.banner = true;
  schedule();
  void loadActivity();
}

function setConn(online) {
  const c = $("conn-state");
  c.dataset.state = online ? "online" : "offline";
  c.textContent = online ? "live" : "reconnecting…";
}

function logout() {
  sessionStorage.removeItem(SESSION_KEY);
  app.client?.end(true);
  location.reload();
}

function wireUi() {
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const err = $("login-error");
    const btn = $("login-submit");
    err.hidden = true;
    btn.disabled = true;
    try {
      await login($("login-username").value.trim(), $("login-password").value);
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
    } finally {
      btn.disabled = false;
    }
  });
  $("logout").addEventListener("click", logout);
  $("check-updates").addEventListener("click", async () => {
    try {
      await api("api/flake-updates/check", {});
      showBanner("Checking GitHub for a lock-update PR…");
    } catch (e) {
      showBanner(`Check failed: ${e.message}`, true);
    }
  });
  $("host-filter").addEventListener("input", (ev) => {
    app.filter = ev.target.value.trim().toLowerCase();
    applyFilter();
  });
  $("problems-only").addEventListener("change", (ev) => {
    app.problemsOnly = ev.target.checked;
    applyFilter();
  });
  const rows = $("host-rows");
  rows.addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr.host");
    if (tr) toggleDetail(app.hosts.get(tr.dataset.host));
  });
  rows.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter") return;
    const tr = ev.target.closest("tr.host");
    if (tr) toggleDetail(app.hosts.get(tr.dataset.host));
  });
  for (const type of ["mouseover", "focusin"]) {
    rows.addEventListener(type, (ev) => {
      const cell = ev.target.closest?.(".cell");
      if (cell && cell._tip) showTooltip(cell);
    });
  }
  for (const type of ["mouseout", "focusout"]) {
    rows.addEventListener(type, (ev) => {
      if (ev.target.closest?.(".cell")) hideTooltip();
    });
  }
  // Relative times ("3 min ago") age without messages.
  setInterval(() => {
    for (const h of app.hosts.values()) if (h.row) setText(h.row.seen, h.availability === "online" ? ago(h.lastSeen) : `offline, ${ago(h.lastSeen)}`);
  }, 30_000);
}

wireUi();
const saved = sessionStorage.getItem(SESSION_KEY);
if (saved) {
  try {
    const { username, password } = JSON.parse(saved);
    $("login-username").value = username;
    login(username, password).catch((e) => {
      sessionStorage.removeItem(SESSION_KEY);
      $("login-error").textContent = e.message;
      $("login-error").hidden = false;
    });
  } catch {
    sessionStorage.removeItem(SESSION_KEY);
  }
}
