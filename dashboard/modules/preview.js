// The preview of the pending PR on its card: the fleet summary ("affects 2 of 3 hosts · 1 needs a
// reboot · does not build on gamma · hello 2.12 → 2.13"), how far it has got while hosts are still
// previewing, and one expandable row per host (package list, units, reboot; a failed preview red
// with its reason's last lines). Wording from protocol/preview-view.ts via the generated module.
import { PREVIEW_OUTCOME_LABEL, previewProgress, previewRow } from "../generated/protocol.js";
import { el } from "./dom.js";
import { app } from "./state.js";

/** Outcome → the badge colour the page uses for statuses. */
const OUTCOME_CLASS = { affected: "outdated", "not-affected": "ok", "does-not-build": "failed", refused: "unknown", failed: "failed" };

/** The current head's previews of PR `pr`, by host (older heads' are not this update's). */
function hostPreviews(pr, headSha) {
  const byHost = app.previews.get(pr);
  return byHost ? [...byHost.values()].filter((p) => p.headSha === headSha).sort((a, b) => a.host.localeCompare(b.host)) : [];
}

function headline(summary) {
  const progress = previewProgress(summary);
  if (progress.notPreviewed) return el("div", { class: "pv-head" }, el("span", { class: "badge unknown", text: "not previewed" }), el("span", { class: "pv-text", text: progress.notPreviewed }));
  const badge = !progress.complete
    ? el("span", { class: "badge working", id: "preview-progress", text: `previewing ${progress.done} of ${progress.requested}` })
    : progress.doesNotBuild > 0
      ? el("span", { class: "badge failed", text: "does not build" })
      : el("span", { class: "badge ok", text: "previewed" });
  return el("div", { class: "pv-head" }, badge, el("span", { class: "pv-text", id: "preview-summary", text: summary.text }));
}

/** One host's preview: a summary line, and on expand its package list, reboot, units, reason. */
function hostRow(p) {
  const r = previewRow(p);
  const failed = r.reason !== "";
  const facts = [
    r.outcome === "affected" ? `builds: ${r.builds}` : "",
    r.outcome === "affected" && r.reboot.startsWith("yes") ? "needs a reboot" : "",
    r.packages.length ? `${r.packages.length} package change${r.packages.length === 1 ? "" : "s"}` : "",
    r.size,
    r.builtElsewhere,
  ].filter(Boolean);
  const units = p.units && ["restart", "reload", "start", "stop"].flatMap((k) => (p.units[k]?.length ? [`${k}: ${p.units[k].join(", ")}`] : []));
  const open = app.openPreviews.has(p.host);
  const details = el(
    "details",
    { class: `pv-host ${p.outcome}`, dataset: { host: p.host, outcome: p.outcome }, open: open || undefined, ontoggle: (ev) => (ev.target.open ? app.openPreviews.add(p.host) : app.openPreviews.delete(p.host)) },
    el(
      "summary",
      {},
      el("strong", { text: p.host }),
      " ",
      el("span", { class: `badge ${OUTCOME_CLASS[p.outcome] ?? "unknown"}`, text: PREVIEW_OUTCOME_LABEL[p.outcome] ?? p.outcome }),
      facts.length ? el("span", { class: "host-sub", text: ` ${facts.join(" · ")}` }) : "",
    ),
    failed ? el("pre", { class: "pv-reason", text: r.reason }) : "",
    r.outcome === "not-affected" ? el("p", { class: "host-sub", text: "This update changes nothing on this host: its system stays the same." }) : "",
    r.packages.length ? el("ul", { class: "pv-packages" }, r.packages.map((text) => el("li", { class: "mono", text }))) : "",
    r.outcome === "affected" && !r.packages.length ? el("p", { class: "host-sub", text: "no package-level changes reported" }) : "",
    r.outcome === "affected" ? el("p", { class: "host-sub", text: `reboot: ${r.reboot}` }) : "",
    units?.length ? el("ul", { class: "pv-units host-sub" }, units.map((text) => el("li", { text }))) : "",
  );
  return details;
}

/** Hosts the fleet knows that have no preview of this head yet: still running, or unreachable. */
function waitingHosts(summary, previewed) {
  const unreachable = new Set(summary.unreachable ?? []);
  const seen = new Set(previewed.map((p) => p.host));
  const known = [...app.hosts.values()].filter((h) => h.info && !seen.has(h.id)).map((h) => h.id).sort();
  if (known.length === 0 || summary.notPreviewed) return "";
  return el(
    "div",
    { class: "chips pv-waiting" },
    known.map((id) =>
      el("span", { class: "chip", dataset: { host: id } }, id, el("span", { class: `badge ${unreachable.has(id) ? "unknown" : "working"}`, text: unreachable.has(id) ? "offline, not previewed" : "previewing…" })),
    ),
  );
}

/** The preview section of the update card for `pending` (the pending update on fleet/expected). */
export function previewSection(pending) {
  const summary = app.previewSummaries.get(pending.number);
  if (!summary || summary.headSha !== pending.headSha) {
    return el("div", { class: "preview", id: "preview" }, el("span", { class: "host-sub", text: "Preview: waiting for the fleet to start on this head…" }));
  }
  const previews = hostPreviews(pending.number, pending.headSha);
  return el("div", { class: "preview", id: "preview", dataset: { head: summary.headSha } }, headline(summary), el("div", { class: "pv-hosts" }, previews.map(hostRow)), waitingHosts(summary, previews));
}
