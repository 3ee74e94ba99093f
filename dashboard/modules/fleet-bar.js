// Fleet bar: the pending update, the rollout's progress, the update history.
import { FINAL_ROLLOUT_STATES } from "../generated/protocol.js";
import { $, ago, el, isObj, isStr, short, when } from "./dom.js";
import { app, lastLines } from "./state.js";
import { dirty, schedule } from "./render.js";
import { confirmDialog, showBanner } from "./notice.js";
import { api } from "./api.js";
import { lockDiffList, lockDiffText } from "./lock-diff.js";
import { noExpectedState } from "./empty-hub.js";
import { previewSection } from "./preview.js";

export function activeRollout() {
  const all = [...app.rollouts.values()];
  if (app.followRolloutId && app.rollouts.has(app.followRolloutId)) return app.rollouts.get(app.followRolloutId);
  const running = all.filter((r) => !FINAL_ROLLOUT_STATES.includes(r.state));
  const pool = running.length ? running : all;
  return pool.sort((a, b) => String(b.updatedAt).localeCompare(String(a.updatedAt)))[0] ?? null;
}

export function renderUpdateCard() {
  const body = $("update-body");
  const exp = app.expected;
  const p = exp?.pendingUpdate;
  if (!exp) {
    body.replaceChildren(noExpectedState());
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
  const busy = rollout && !FINAL_ROLLOUT_STATES.includes(rollout.state);
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
    lockDiffList(p.lockDiff),
    p.superseded?.length ? el("p", { class: "host-sub", text: `supersedes ${p.superseded.map((n) => `#${n}`).join(", ")}` }) : "",
    previewSection(p),
    mergeBtn,
  );
}

export async function mergeAndDeploy(p) {
  const ok = await confirmDialog(`Merge PR #${p.number} and deploy?`, `${lockDiffText(p.lockDiff, { max: 4 })}. The merged commit rolls out to the fleet: canary first, then waves.`, "Merge & deploy");
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


export function renderRollout() {
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
  const pct = (n) => (total ? `${(100 * n) / total}%` : "0");
  body.replaceChildren(
    el("div", { class: "rollout-title", id: "rollout-title", text: rolloutTitle(r) }),
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
    failureReasons(Object.values(r.hosts)),
    r.revertPr ? el("p", {}, "Reverted in ", el("a", { href: r.revertPr.url, target: "_blank", rel: "noopener", text: `PR #${r.revertPr.number}` })) : "",
  );
}

const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** What the rollout is doing or did, in words: "Deploying 1/3", "Rolling back 2 hosts", "Halted: 1 host failed". */
export function rolloutTitle(r) {
  const hosts = Object.values(r.hosts ?? {});
  const count = (...states) => hosts.filter((h) => states.includes(h?.state)).length;
  const total = r.counts.total || hosts.length;
  const { succeeded, failed, skipped } = r.counts;
  const done = succeeded + failed + skipped;
  const failedPart = failed ? `, ${plural(failed, "host")} failed` : "";
  switch (r.state) {
    case "planned":
      return `Starting: ${plural(total, "host")} to deploy`;
    case "soaking":
      return `Watching the canary before the next wave (${done}/${total} done)`;
    case "rolling-back": {
      const n = count("rolling-back") || count("failed");
      return `Rolling back ${plural(n, "host")}`;
    }
    case "rolled-back":
      return `Rolled back ${plural(count("rolled-back"), "host")}${count("failed") ? `; ${plural(count("failed"), "host")} failed` : ""}`;
    case "completed":
      return `Deployed ${succeeded}/${total}${failedPart}${skipped ? `, ${skipped} skipped` : ""}`;
    case "halted":
      return `Halted: ${plural(failed, "host")} failed, ${succeeded}/${total} deployed`;
    case "failed":
      return `Failed: ${plural(failed, "host")} failed, ${succeeded}/${total} deployed`;
    case "interrupted":
      return `Interrupted: ${succeeded}/${total} deployed`;
    case "cancelled":
      return `Cancelled: ${succeeded}/${total} deployed`;
    default:
      return `Deploying ${done}/${total}`;
  }
}

/** Host states that mean something went wrong on that host. */
const WENT_WRONG = ["failed", "rolling-back", "rolled-back", "interrupted"];

/** Why hosts failed, shown in full where the eye goes (a phone has no hover): host — last lines of the reason. */
function failureReasons(hosts) {
  const bad = hosts.filter((h) => isObj(h) && WENT_WRONG.includes(h.state) && isStr(h.reason));
  if (bad.length === 0) return "";
  return el(
    "ul",
    { class: "why-list" },
    bad.map((h) => el("li", { class: `why ${h.state}`, dataset: { host: h.host } }, el("strong", { text: `${h.host}: ` }), el("span", { class: "why-text", text: lastLines(h.reason) }))),
  );
}

export function renderHistory() {
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
        el("div", { class: "mono", text: e.lockDiff ? lockDiffText(e.lockDiff) : e.summary }),
        el(
          "div",
          { class: "chips" },
          e.hosts.filter(isObj).map((hs) =>
            el("span", { class: "chip", title: hs.reason ?? "" }, hs.host, el("span", { class: `badge ${hs.state}`, text: hs.state })),
          ),
        ),
        failureReasons(e.hosts),
        e.revertPr ? el("div", {}, "reverted in ", el("a", { href: e.revertPr.url, target: "_blank", rel: "noopener", text: `PR #${e.revertPr.number}` })) : "",
      ),
    ),
  );
}
