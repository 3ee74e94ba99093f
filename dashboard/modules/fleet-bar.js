// Fleet bar: the pending update, the rollout's progress, the update history.
import { FINAL_ROLLOUT_STATES, hostRunsStep } from "../generated/protocol.js";
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
      pausedBanner(),
      el("div", { text: "flake.lock is current: no update PR is open." }),
      el("div", { class: "host-sub", text: `head ${short(exp.headCommit)} on ${exp.branch}${typeof exp.lockLastModified === "number" ? `, newest input ${new Date(exp.lockLastModified * 1000).toISOString().slice(0, 10)}` : ""}` }),
    );
    return;
  }
  const parts = partsOf(p);
  const ci = worstCi(parts);
  const rollout = activeRollout();
  const busy = rollout && !FINAL_ROLLOUT_STATES.includes(rollout.state);
  const mergeBtn =
    app.role === "operator"
      ? el("button", {
          type: "button",
          class: "btn primary",
          id: "merge-deploy",
          text: parts.length > 1 ? `Merge ${parts.length} PRs & deploy` : "Merge & deploy",
          disabled: busy ? true : undefined,
          title: busy ? "a rollout is running" : ci !== "success" ? `CI is ${ci}` : "",
          onclick: () => mergeAndDeploy(p),
        })
      : "";
  const superseded = p.superseded?.length ? el("p", { class: "host-sub", text: `supersedes ${p.superseded.map((n) => `#${n}`).join(", ")}` }) : "";
  if (parts.length === 1) {
    body.replaceChildren(pausedBanner(), ...prView(p), superseded, previewSection(p), mergeBtn);
    return;
  }
  // Per-input updaters: one update made of several PRs, merged together in this order.
  body.replaceChildren(
    pausedBanner(),
    el("div", { class: "pr-title", text: `One update in ${parts.length} pull requests, merged in this order:` }),
    el(
      "ol",
      { class: "parts" },
      parts.map((part) => el("li", { class: "part", dataset: { pr: String(part.number) } }, ...prView(part))),
    ),
    superseded,
    previewSection(p),
    automaticNote(p),
    mergeBtn,
  );
}

/** The PRs of the pending update in merge order (its `parts`, or itself), well-formed ones only. */
function partsOf(p) {
  const parts = Array.isArray(p.parts) ? p.parts.filter((x) => isObj(x) && Number.isInteger(x.number)) : [];
  return parts.length > 1 ? parts : [p];
}

/** Green only when every part is; a failing part makes the whole update failing. */
function worstCi(parts) {
  const states = parts.map((x) => x.ci?.state ?? "unknown");
  if (states.every((s) => s === "success")) return "success";
  return ["failure", "pending", "unknown"].find((s) => states.includes(s)) ?? "unknown";
}

/** One PR: number and title, CI, mergeability, age, lock diff. */
function prView(pr) {
  const ci = pr.ci?.state ?? "unknown";
  return [
    el("div", { class: "pr-title" }, el("a", { href: pr.url, target: "_blank", rel: "noopener", text: `#${pr.number}` }), ` ${pr.title}`),
    el(
      "div",
      { class: "pr-meta" },
      el("span", { class: `badge ${ci}`, text: `CI ${ci}` }),
      pr.ci?.summary ? el("span", { class: "host-sub", text: pr.ci.summary }) : "",
      pr.mergeable === false ? el("span", { class: "badge failed", text: "not mergeable" }) : "",
      el("span", { class: "host-sub", text: `opened ${ago(Date.parse(pr.openedAt))}` }),
    ),
    lockDiffList(pr.lockDiff),
  ];
}

/** "Automatic updates paused after PR #N failed: resume" (fleet/automatic-pause), with the button for an operator. */
function pausedBanner() {
  const a = app.automaticPause;
  if (!a?.paused) return "";
  const after = Number.isInteger(a.prNumber) ? `after PR #${a.prNumber} failed` : "after a failed rollout";
  return el(
    "div",
    { class: "why-box", id: "automatic-paused" },
    el("strong", { text: `Automatic updates paused ${after}` }),
    app.role === "operator" ? [": ", el("button", { type: "button", class: "btn", id: "automatic-resume", text: "resume", onclick: () => resumeAutomatic() })] : "",
    isStr(a.reason) ? el("div", { class: "host-sub", text: a.reason }) : "",
  );
}

export async function resumeAutomatic() {
  try {
    await api("api/automatic/resume", {});
    showBanner("Automatic updates resumed.");
  } catch (err) {
    showBanner(`Resuming automatic updates failed: ${err.message}`, true);
  }
}

/**
 * What automatic mode decided about this PR head (fleet/automatic): refused with the reason in
 * full (a phone has no hover), or waiting. A decision about another head or PR is not shown.
 */
function automaticNote(p) {
  const a = app.automatic;
  if (!a || a.pr !== p.number || a.headSha !== p.headSha || a.decision === "passed") return "";
  const refused = a.decision === "refused";
  return el(
    "div",
    { class: refused ? "why-box automatic-note" : "host-sub automatic-note", dataset: { decision: a.decision } },
    el("strong", { text: refused ? "Automatic mode will not merge this update: " : "Automatic mode is waiting: " }),
    el("span", { class: "why-text", text: a.reason }),
  );
}

export async function mergeAndDeploy(p) {
  const parts = partsOf(p);
  const numbers = parts.map((x) => `#${x.number}`).join(", ");
  const title = parts.length > 1 ? `Merge PRs ${numbers} (in this order) and deploy?` : `Merge PR #${p.number} and deploy?`;
  const what = parts.map((x) => (parts.length > 1 ? `#${x.number}: ` : "") + lockDiffText(x.lockDiff, { max: 4 })).join("; ");
  const ok = await confirmDialog(title, `${what}. The merged commit rolls out to the fleet: canary first, then waves.`, "Merge & deploy");
  if (!ok) return;
  const btn = $("merge-deploy");
  if (btn) btn.disabled = true;
  try {
    // parts: what this page showed; the hub refuses if a PR joined or left the update since.
    const res = await api("api/flake-updates/merge-and-deploy", parts.length > 1 ? { pr_number: p.number, parts: parts.map((x) => x.number) } : { pr_number: p.number });
    if (!res || !isStr(res.job_id)) throw new Error("the hub did not return a rollout id");
    app.followRolloutId = res.job_id;
    const notMerged = Array.isArray(res.not_merged) ? res.not_merged.filter((x) => isObj(x) && Number.isInteger(x.pr_number)) : [];
    if (notMerged.length) {
      // A later PR was refused after earlier ones landed: what landed is deployed, the rest stays open.
      const merged = Array.isArray(res.merged) ? res.merged.map((n) => `#${n}`).join(", ") : "";
      showBanner(`Merged ${merged}; not merged: ${notMerged.map((x) => `#${x.pr_number}${isStr(x.reason) ? ` (${x.reason})` : ""}`).join("; ")}. Rollout ${res.job_id} deploys what was merged.`, true);
    } else showBanner(`Merging ${parts.length > 1 ? `PRs ${numbers}` : `PR #${p.number}`}; rollout ${res.job_id} started.`);
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
              // The plan says which hosts only pull (the preview showed them not affected) and which need a reboot.
              return el(
                "span",
                { class: "chip", dataset: { host }, title: hs?.reason ?? hs?.pullOnly ?? hs?.reboot ?? hs?.phase ?? "" },
                host,
                el("span", { class: `badge ${st}`, text: st }),
                hs?.pullOnly ? el("span", { class: "badge plan-note", title: hs.pullOnly, text: "pull only" }) : "",
                hs?.reboot ? el("span", { class: "badge plan-note", title: hs.reboot, text: "reboot" }) : "",
                cancelStepButton(r, host, st),
              );
            }),
          ),
        ),
      ),
    ),
    failureReasons(Object.values(r.hosts)),
    convergesLine(r.converges),
    revertLine(r),
  );
}

/** An operator's cancel of the step a host runs in a running rollout (docs/architecture.md, "Cancelling a step"). */
function cancelStepButton(r, host, state) {
  if (app.role !== "operator" || FINAL_ROLLOUT_STATES.includes(r.state) || !hostRunsStep(state)) return "";
  return el("button", { type: "button", class: "btn chip-cancel", title: `cancel ${host}'s step`, text: "cancel", onclick: () => cancelStep(r.id, host) });
}

async function cancelStep(rolloutId, host) {
  const ok = await confirmDialog(
    `Cancel ${host}'s step?`,
    "The hub stops waiting for it and stops the job on the host (a switch or rollback is left to finish). The host fails and the rollout applies its failure policy.",
    "Cancel step",
  );
  if (!ok) return;
  try {
    await api(`api/rollouts/${encodeURIComponent(rolloutId)}/hosts/${encodeURIComponent(host)}/cancel`, {});
    showBanner(`Cancelled ${host}'s step in rollout ${rolloutId}.`);
  } catch (err) {
    showBanner(`Cancelling ${host}'s step failed: ${err.message}`, true);
  }
}

/** The rollout that brought the fleet back after failed rollout `id` (Lockstep's revert landed), if any. */
function convergenceOf(id) {
  const all = [...app.rollouts.values(), ...app.history.values()];
  return all.find((x) => x.converges === id) ?? null;
}

/** "Reverted in PR #N", then either what converged the fleet or, for an operator, the button that merges the revert. */
function revertLine(r) {
  const id = r.id ?? r.rolloutId;
  if (!r.revertPr) return "";
  const link = r.revertPr.number > 0 ? el("a", { href: r.revertPr.url, target: "_blank", rel: "noopener", text: `PR #${r.revertPr.number}` }) : el("span", { class: "mono", text: short(r.revertPr.commit ?? "") });
  // The converge rollout itself, or what the failed rollout's history entry recorded of it.
  const converged = convergenceOf(id) ?? (isObj(r.convergedBy) ? r.convergedBy : null);
  const after = converged
    ? el("span", { class: "host-sub", text: ` · fleet converged onto it by rollout ${converged.id ?? converged.rolloutId} (${converged.state}), merged by ${converged.requestedBy}` })
    : r.revertPr.number > 0 && app.role === "operator" && FINAL_ROLLOUT_STATES.includes(r.state)
      ? el("button", { type: "button", class: "btn", dataset: { mergeRevert: String(r.revertPr.number) }, text: "Merge revert", onclick: () => mergeRevert(r.revertPr.number) })
      : "";
  return el("p", {}, "Reverted in ", link, after);
}

/** On a converge rollout: which failed rollout it brings back to green. */
function convergesLine(failedId) {
  return isStr(failedId) ? el("p", { class: "host-sub", text: `brings the fleet back after rollout ${failedId} failed (Lockstep's revert)` }) : "";
}

export async function mergeRevert(number) {
  const ok = await confirmDialog(`Merge revert PR #${number}?`, "flake.lock goes back to what the fleet ran before. Hosts that already run it only pull; the others switch back.", "Merge revert");
  if (!ok) return;
  try {
    const res = await api("api/flake-updates/merge-revert", { pr_number: number });
    if (!res || !isStr(res.rollout_id)) throw new Error("the hub did not return a rollout id");
    app.followRolloutId = res.rollout_id;
    showBanner(`Merged revert PR #${number}; the fleet converges in rollout ${res.rollout_id}.`);
    dirty.rollout = dirty.fleet = true;
    schedule();
  } catch (err) {
    showBanner(`Merging the revert failed: ${err.message}`, true);
  }
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
  // One story per failed update: its converge rollout is told on the failed rollout's entry, not as an entry of its own.
  const told = (e) => isStr(e.converges) && app.history.has(e.converges);
  const entries = [...app.history.values()].filter((e) => !told(e)).sort((a, b) => String(b.finishedAt).localeCompare(String(a.finishedAt))).slice(0, 25);
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
        convergesLine(e.converges),
        revertLine(e),
      ),
    ),
  );
}
