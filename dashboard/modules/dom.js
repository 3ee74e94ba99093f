// Small DOM and formatting helpers. Text only: nothing from the wire is ever parsed as HTML.

export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, ...children) {
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
export function setText(node, text) {
  if (node._text !== text) {
    node._text = text;
    node.textContent = text;
  }
}
export function setClass(node, cls) {
  if (node.className !== cls) node.className = cls;
}

export const short = (sha, n = 8) => (typeof sha === "string" && sha ? sha.slice(0, n) : "?");

export function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

export const isObj = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
export const isStr = (v) => typeof v === "string";

export function randomId() {
  const bytes = new Uint8Array(4);
  crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
