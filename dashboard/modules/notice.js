// The banner and the confirm dialog.
import { $ } from "./dom.js";
import { app } from "./state.js";

export function confirmDialog(title, text, okLabel) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

export let bannerTimer = 0;
export function showBanner(text, isError = false) {
  const b = $("banner");
  b.textContent = text;
  b.className = `banner${isError ? " error" : ""}`;
  b.hidden = false;
  clearTimeout(bannerTimer);
  if (!isError) bannerTimer = setTimeout(renderBanner, 8000);
}
export function renderBanner() {
  const b = $("banner");
  const fault = storageFault();
  if (fault) {
    // Stays until the hub can write again: a transient message may cover it for a moment only.
    b.textContent = fault;
    b.className = "banner error";
    b.dataset.storage = "fault";
    b.hidden = false;
  } else if (app.hubOnline === false) {
    b.textContent = "The hub is offline: host states are the last known ones and fleet actions are unavailable.";
    b.className = "banner";
    b.hidden = false;
  } else {
    b.hidden = true;
  }
  if (!fault) delete b.dataset.storage;
}

/** The storage fault in one sentence (hub/storage), or "" while the hub can write its data dir. */
function storageFault() {
  const s = app.storage;
  if (s?.state !== "fault") return "";
  const what = [s.code, s.path ? `at ${s.path}` : ""].filter(Boolean).join(" ");
  const held = s.heldRollouts.length ? ` ${s.heldRollouts.length} rollout${s.heldRollouts.length === 1 ? " is" : "s are"} held until it can.` : "";
  return `The hub cannot write its data dir${what ? ` (${what})` : ""} since ${new Date(s.since).toLocaleString()}: new rollouts are refused.${held}${s.hint ? ` ${s.hint}` : ""}`;
}
