// Lockstep fleet page: MQTT over WebSocket straight to the broker, state from retained topics.
// Plain ES modules, no framework. Rendering is batched per animation frame (reads, then writes),
// touches only the cells whose value changed, and keeps only the rows on screen in the DOM, so
// 10,000 hosts stay smooth. The modules (modules/), in the
// order a message travels: session (login, MQTT) → host-stream (host state from the hub's fleet
// stream) and payloads (checks) → messages (state) → render
// (the frame) → hosts (host-index, virtual-rows, first-paint), detail, tooltip, lock-diff, fleet-bar, empty-hub, activity, notice (the
// views); api.js calls the hub's HTTP API. They import downward only (no cycles). Topics, enums,
// final rollout states and the lock-diff wording come from protocol/ through
// generated/protocol.js (built by scripts/build-page.mjs).
import { $, setText } from "./modules/dom.js";
import { SESSION_KEY, app } from "./modules/state.js";
import { markRows, setRenderers } from "./modules/render.js";
import { applyFilter, measureRows, renderCounts, renderRows, seenText } from "./modules/hosts.js";
import { hideTooltip, showTooltip } from "./modules/tooltip.js";
import { fitDetailToColumns, toggleDetail } from "./modules/detail.js";
import { renderHistory, renderRollout, renderUpdateCard } from "./modules/fleet-bar.js";
import { renderActivity } from "./modules/activity.js";
import { renderBanner, showBanner } from "./modules/notice.js";
import { api } from "./modules/api.js";
import { login, logout } from "./modules/session.js";

setRenderers({
  measure: measureRows,
  rows: renderRows,
  counts: renderCounts,
  fleet: renderUpdateCard,
  rollout: renderRollout,
  history: renderHistory,
  activity: renderActivity,
  banner: renderBanner,
});

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
    markRows();
  });
  $("problems-only").addEventListener("change", (ev) => {
    app.problemsOnly = ev.target.checked;
    applyFilter();
    markRows();
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
  window.addEventListener("resize", () => {
    fitDetailToColumns();
    markRows();
  });
  // The rows on screen change as the page scrolls (only those are in the DOM).
  window.addEventListener("scroll", markRows, { passive: true });
  // Relative times ("3 min ago") age without messages.
  setInterval(() => {
    for (const h of app.hosts.values()) if (h.row) setText(h.row.seen, seenText(h));
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
