// A lock diff on the page: per input old rev and date → new rev and date, a compare link to the
// upstream forge, follows changes as such, and the inputs that only follow it listed under it.
// The rows and their wording come from protocol/lock-diff-view.ts (through the generated module).
import { describeLockDiff, describeRow, lockDiffRows } from "../generated/protocol.js";
import { el, isObj, isStr } from "./dom.js";

const isRef = (r) => r === undefined || (isObj(r) && isStr(r.type));
const changes = (list) => (Array.isArray(list) ? list.filter((c) => isObj(c) && isStr(c.input) && isRef(c.old) && isRef(c.new)) : []);

/** The diff from the wire with only well-formed changes (the browser has no zod). */
function checked(diff) {
  if (!isObj(diff)) return { updated: [], added: [], removed: [] };
  return { updated: changes(diff.updated), added: changes(diff.added), removed: changes(diff.removed) };
}

export const lockDiffRowsOf = (diff) => lockDiffRows(checked(diff));
export const lockDiffText = (diff, opts) => describeLockDiff(checked(diff), opts);
export const lockDiffLines = (diff) => lockDiffRowsOf(diff).map(describeRow);

/** The diff as a list: one item per input, its compare link, the inputs that follow it. */
export function lockDiffList(diff) {
  const rows = lockDiffRowsOf(diff);
  if (rows.length === 0) return el("p", { class: "host-sub", text: "no input changes" });
  return el(
    "ul",
    { class: "diff" },
    rows.map((row) =>
      el(
        "li",
        { class: `d-row ${row.kind}`, dataset: { input: row.input } },
        el("span", { class: "d-text", text: describeRow({ ...row, followers: [] }) }),
        row.compareUrl ? [" ", el("a", { class: "d-compare", href: row.compareUrl, target: "_blank", rel: "noopener noreferrer", text: "compare ↗" })] : "",
        row.followers.length ? el("div", { class: "d-followers host-sub", text: `followed by ${row.followers.join(", ")}` }) : "",
      ),
    ),
  );
}
