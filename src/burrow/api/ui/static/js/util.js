// Small DOM and formatting helpers. Everything from the API goes in as text (never HTML).

/** Build an element: h("a", {href: "#/", class: "x", onclick: fn}, "text", child, [more]). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const SVG = "http://www.w3.org/2000/svg";
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

export const STATUSES = ["queued", "running", "retrying", "succeeded", "failed", "cancelled"];
export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export function badge(status) {
  return h("span", { class: `badge ${status}`, dataset: { status } }, status);
}

export function fmtTime(ts) {
  if (ts === null || ts === undefined) return "—";
  const d = new Date(ts * 1000);
  const today = new Date().toDateString() === d.toDateString();
  const time = d.toLocaleTimeString(undefined, { hour12: false });
  return today ? time : `${d.toLocaleDateString()} ${time}`;
}

export function fmtAgo(ts) {
  if (ts === null || ts === undefined) return "—";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 5) return "just now";
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const m = Math.floor(seconds / 60);
  return `${m} min ${Math.round(seconds - m * 60)} s`;
}

export function runTime(t) {
  if (!t.started_at) return null;
  return (t.finished_at || Date.now() / 1000) - t.started_at;
}

export function fmtRate(perSecond) {
  if (!perSecond) return "0/s";
  if (perSecond >= 100) return `${Math.round(perSecond)}/s`;
  if (perSecond >= 1) return `${perSecond.toFixed(1)}/s`;
  return `${(perSecond * 60).toFixed(1)}/min`;
}

export function fmtNumber(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString();
}

/** A JSON value, pretty-printed (strings keep their quotes: "null" differs from null). */
export function code(value, light = false) {
  const text = value === undefined ? "null" : JSON.stringify(value, null, 2);
  return h("pre", { class: light ? "code light" : "code" }, text);
}

export function shortId(id) {
  return id && id.length > 13 ? `${id.slice(0, 8)}…` : id;
}

export function toast(message, kind = "info") {
  const el = h("div", { class: `toast ${kind}` }, message);
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

/** A confirm dialog; resolves true when confirmed. */
export function confirmDialog(title, text, okLabel = "Confirm") {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    const form = document.getElementById("confirm-form");
    const cancel = document.getElementById("confirm-cancel");
    const done = (answer) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("close", onCancel);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const onSubmit = (e) => { e.preventDefault(); done(true); };
    const onCancel = () => done(false);
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("close", onCancel);
    dialog.showModal();
    cancel.focus();
  });
}

export function parseQuery(text) {
  return Object.fromEntries(new URLSearchParams(text || ""));
}

export function query(params) {
  const clean = Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined);
  return clean.length ? `?${new URLSearchParams(clean)}` : "";
}
