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
  if (app.hubOnline === false) {
    b.textContent = "The hub is offline: host states are the last known ones and fleet actions are unavailable.";
    b.className = "banner";
    b.hidden = false;
  } else {
    b.hidden = true;
  }
}
