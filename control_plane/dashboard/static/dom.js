// DOM helpers and formatting. Data only ever becomes text: `el` appends strings as text nodes and
// sets attributes with setAttribute; there is no path from data to markup.

export const $ = (id) => document.getElementById(id);

export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child)); // strings become text nodes
  }
  return node;
}

export const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
export const text = (v) => (v === undefined || v === null || v === "" ? "–" : String(v));
export const num = (v) => (isNumber(v) ? String(Math.round(v * 10) / 10) : text(v));
export const usd = (v) => (isNumber(v) ? "$" + v.toFixed(v !== 0 && Math.abs(v) < 1 ? 3 : 2) : "–");
export const clock = (ts) => (isNumber(ts) ? new Date(ts * 1000).toLocaleTimeString() : "–");
export const when = (ts) => (isNumber(ts) ? new Date(ts * 1000).toLocaleString() : "–");

export function duration(seconds) {
  if (!isNumber(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function setEmpty(panel, message) {
  const empty = panel.querySelector(".empty");
  empty.textContent = message || "";
  empty.hidden = !message;
}

export function setPanelError(panel, message) {
  const box = panel.querySelector(".panel-error");
  box.textContent = message || "";
  box.hidden = !message;
}

export function banner(message, kind) {
  const box = $("banner");
  box.textContent = message || "";
  box.className = "banner " + (kind || "error");
  box.hidden = !message;
}
