// The dashboard shell: routing (#/...), the API key dialog, and the live stream that feeds
// the current page.
import { auth, get, openStream, onUnauthorized, ApiError } from "./api.js";
import { h, parseQuery } from "./util.js";
import { overview } from "./overview.js";
import { taskList, taskPage } from "./tasks.js";
import { deadLetters, schedules, workers } from "./ops.js";

const HISTORY = 150;
const live = { stats: null, history: [] };
const main = document.getElementById("main");
let view = {};
let renderId = 0;

const ROUTES = [
  [/^\/?$/, "overview", () => overview(main, live)],
  [/^\/tasks\/([^/?]+)$/, "tasks", (m) => taskPage(main, decodeURIComponent(m[1]))],
  [/^\/tasks$/, "tasks", (_m, q) => taskList(main, q)],
  [/^\/dead-letters$/, "dead-letters", (_m, q) => deadLetters(main, q)],
  [/^\/schedules$/, "schedules", () => schedules(main)],
  [/^\/workers$/, "workers", () => workers(main)],
];

async function render({ keepScroll = false } = {}) {
  const id = ++renderId;
  const [path, search] = location.hash.replace(/^#/, "").split("?");
  const found = ROUTES.map(([re, nav, fn]) => [path.match(re), nav, fn]).find(([m]) => m);
  view.dispose?.();
  view = {};
  const scroll = window.scrollY;
  document.querySelectorAll("[data-nav]").forEach((a) => {
    if (found && a.dataset.nav === found[1]) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  if (!found) {
    main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the overview")));
    return;
  }
  if (!keepScroll) main.replaceChildren(h("div", { class: "spinner" }, "Loading…"));
  try {
    const next = (await found[2](found[0], parseQuery(search))) || {};
    if (id !== renderId) { next.dispose?.(); return; }
    view = next;
    document.title = `${document.querySelector("h1")?.textContent?.split("\n")[0] || "burrow"} · burrow`;
    if (keepScroll) window.scrollTo(0, scroll);
  } catch (exc) {
    if (id !== renderId) return;
    const text = exc instanceof ApiError && exc.status === 401
      ? "This API needs a key. Enter one to continue."
      : exc instanceof ApiError && exc.status === 403 ? `${exc.message}.` : `Could not load this page: ${exc.message}`;
    main.replaceChildren(h("div", { class: "banner error", role: "alert" }, text),
      exc.status === 401 ? h("button", { type: "button", class: "primary", onclick: () => askKey() }, "Enter API key") : null);
  }
}

// -- the key ---------------------------------------------------------------------------------

const dialog = document.getElementById("key-dialog");
const keyInput = document.getElementById("key-input");
const keyError = document.getElementById("key-error");
const keyButton = document.getElementById("key-button");

function askKey(message = "") {
  keyError.textContent = message;
  keyButton.hidden = false;
  if (!dialog.open) {
    keyInput.value = "";
    dialog.showModal();
    keyInput.focus();
  }
}

document.getElementById("key-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const key = keyInput.value.trim();
  if (!key) { keyError.textContent = "Enter a key."; return; }
  const previous = auth.key;
  auth.set(key, document.getElementById("key-remember").checked);
  try {
    await get("/queues");
  } catch (exc) {
    if (exc instanceof ApiError && (exc.status === 401 || exc.status === 403)) {
      if (previous) auth.set(previous, false); else auth.clear();
      keyError.textContent = exc.status === 401 ? "The API does not know this key." : "This key lacks the read scope.";
      keyInput.select();
      return;
    }
  }
  dialog.close();
  keyButton.hidden = false;
  startStream();
  render();
});
document.getElementById("key-forget").addEventListener("click", () => {
  auth.clear();
  keyInput.value = "";
  keyError.textContent = "Key forgotten.";
});
keyButton.addEventListener("click", () => askKey());
onUnauthorized(() => askKey(auth.key ? "The API refused the stored key; enter another." : ""));

// -- live updates ----------------------------------------------------------------------------

const liveBadge = document.getElementById("live");
const LABELS = { live: "Live", reconnecting: "Reconnecting…", unauthorized: "Key needed", connecting: "Connecting…" };
let stopStream = null;

function startStream() {
  stopStream?.();
  stopStream = openStream({
    hello: (d) => {
      live.history = d.history || [];
      if (d.stats) { live.stats = d.stats; view.stats?.(d.stats); }
    },
    stats: (d) => {
      live.stats = d;
      live.history.push(d.rates);
      if (live.history.length > HISTORY) live.history.splice(0, live.history.length - HISTORY);
      view.stats?.(d);
    },
    task: (t) => view.task?.(t),
    resync: () => render({ keepScroll: true }),
  }, (state) => {
    liveBadge.dataset.state = state;
    liveBadge.textContent = LABELS[state] || state;
  });
}

window.addEventListener("hashchange", () => render());
window.addEventListener("burrow:refresh", () => render({ keepScroll: true }));
if (auth.key) keyButton.hidden = false;
startStream();
render();
