// Tooltips: why a compartment has its colour (built when shown, not on every render).
import { $, ago, el, isObj, isStr, short } from "./dom.js";
import { COMPARTMENT_LABEL, app } from "./state.js";
import { lockDiffLines } from "./lock-diff.js";

export function pendingUpdateLines() {
  const p = app.expected?.pendingUpdate;
  if (!p) return [];
  const lines = [`Update PR #${p.number} pending (CI ${p.ci?.state ?? "unknown"}):`];
  for (const line of lockDiffLines(p.lockDiff)) lines.push(`  ${line}`);
  return lines;
}

export function tooltipFor(h, name) {
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

export let tooltipTarget = null;
export function showTooltip(target) {
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
export function hideTooltip() {
  tooltipTarget = null;
  $("tooltip").hidden = true;
}
