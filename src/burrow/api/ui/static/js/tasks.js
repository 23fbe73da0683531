// Task views: the overview's recent list and the task list share rows; the task page.
import { get, post, ApiError } from "./api.js";
import {
  h, badge, fmtAgo, fmtTime, fmtDuration, runTime, code, shortId, toast, parseQuery, query,
  STATUSES, TERMINAL,
} from "./util.js";

export const COLUMNS = ["Task", "Name", "Queue", "Status", "Attempts", "Created", "Run time", "Worker"];

function cells(t) {
  return [
    h("td", {}, h("a", { class: "id", href: `#/tasks/${encodeURIComponent(t.id)}`, title: t.id }, shortId(t.id))),
    h("td", {}, t.name),
    h("td", {}, t.queue),
    h("td", {}, badge(t.status)),
    h("td", { class: "num" }, t.attempts ?? 0),
    h("td", { title: fmtTime(t.created_at) }, fmtAgo(t.created_at)),
    h("td", { class: "num" }, fmtDuration(runTime(t))),
    h("td", { class: "muted small" }, t.worker || "—"),
  ];
}

export function taskRow(t) {
  return h("tr", { dataset: { id: t.id, status: t.status } }, cells(t));
}

export function updateRow(tr, t) {
  tr.replaceChildren(...cells(t));
  tr.dataset.status = t.status;
  tr.classList.remove("flash");
  void tr.offsetWidth; // restart the animation
  tr.classList.add("flash");
}

export function taskTable(items, empty = "No tasks yet.") {
  const body = h("tbody", {}, items.length ? items.map(taskRow) : emptyRow(empty));
  const table = h("table", { class: "tasks" },
    h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col", class: ["Attempts", "Run time"].includes(c) ? "num" : null }, c)))),
    body);
  return { table: h("div", { class: "table-wrap" }, table), body };
}

function emptyRow(text) {
  return h("tr", { class: "empty-row" }, h("td", { class: "empty", colspan: COLUMNS.length }, text));
}

/** Apply a live change to a table body: update its row, or add it on top when `accept(t)`. */
export function applyChange(body, t, accept, limit) {
  const tr = body.querySelector(`tr[data-id="${CSS.escape(t.id)}"]`);
  if (tr) { updateRow(tr, t); return; }
  if (!accept(t)) return;
  body.querySelector("tr.empty-row")?.remove();
  const row = taskRow(t);
  row.classList.add("flash");
  body.prepend(row);
  while (body.children.length > limit) body.lastElementChild.remove();
}

// -- the task list -------------------------------------------------------------------------

const PAGE = 25;
let paging = { key: null, cursors: [null], index: 0 };

export async function taskList(main, params) {
  const filters = { status: params.status || "", name: params.name || "", queue: params.queue || "" };
  const key = JSON.stringify(filters);
  if (paging.key !== key) paging = { key, cursors: [null], index: 0 };
  const cursor = paging.cursors[paging.index];
  const [page, queues] = await Promise.all([
    get(`/tasks${query({ ...filters, limit: PAGE, cursor })}`),
    get("/queues").catch(() => []),
  ]);
  const { table, body } = taskTable(page.items, paging.index ? "No more tasks." : "No tasks match these filters.");

  const status = h("select", { id: "f-status", name: "status" },
    h("option", { value: "" }, "Any status"), STATUSES.map((st) => h("option", { value: st, selected: st === filters.status }, st)));
  const name = h("input", { id: "f-name", name: "name", value: filters.name, placeholder: "e.g. send_email", autocomplete: "off" });
  const queue = h("select", { id: "f-queue", name: "queue" },
    h("option", { value: "" }, "Any queue"), queues.map((q) => h("option", { value: q.name, selected: q.name === filters.queue }, q.name)));
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter tasks", onsubmit: (e) => {
    e.preventDefault();
    location.hash = `#/tasks${query({ status: status.value, name: name.value.trim(), queue: queue.value })}`;
  } },
    h("div", { class: "field" }, h("label", { for: "f-status" }, "Status"), status),
    h("div", { class: "field" }, h("label", { for: "f-name" }, "Task name"), name),
    h("div", { class: "field" }, h("label", { for: "f-queue" }, "Queue"), queue),
    h("button", { type: "submit", class: "primary" }, "Apply"),
    filters.status || filters.name || filters.queue ? h("a", { href: "#/tasks", class: "small" }, "Clear filters") : null);

  const idInput = h("input", { id: "f-id", name: "id", placeholder: "Task id", autocomplete: "off", spellcheck: "false" });
  const search = h("form", { class: "filters", role: "search", "aria-label": "Find a task by id", onsubmit: (e) => {
    e.preventDefault();
    const id = idInput.value.trim();
    if (id) location.hash = `#/tasks/${encodeURIComponent(id)}`;
  } },
    h("div", { class: "field" }, h("label", { for: "f-id" }, "Find by id"), idInput),
    h("button", { type: "submit" }, "Open"));

  const older = h("button", { type: "button", disabled: !page.next_cursor, onclick: () => {
    paging.cursors[paging.index + 1] = page.next_cursor; paging.index += 1; window.dispatchEvent(new Event("hashchange"));
  } }, "Older →");
  const newer = h("button", { type: "button", disabled: paging.index === 0, onclick: () => {
    paging.index -= 1; window.dispatchEvent(new Event("hashchange"));
  } }, "← Newer");

  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Tasks", h("span", { class: "sub" }, "Newest first; new tasks and status changes appear live.")), search),
    h("section", { class: "panel" }, form, table,
      h("div", { class: "pager" }, newer, h("span", { class: "muted small" }, `Page ${paging.index + 1}`), older)),
  );
  const matches = (t) => paging.index === 0
    && (!filters.status || t.status === filters.status)
    && (!filters.name || t.name === filters.name)
    && (!filters.queue || t.queue === filters.queue);
  return { task: (t) => applyChange(body, t, matches, PAGE) };
}

// -- one task ------------------------------------------------------------------------------

function timeline(events) {
  if (!events.length) return h("p", { class: "muted" }, "No events recorded.");
  return h("ol", { class: "timeline" }, events.map((e) => h("li", {},
    h("span", { class: `dot ${e.status}` }),
    h("div", {}, badge(e.status), " ", h("span", { class: "when" }, fmtTime(e.at)),
      e.attempt ? h("span", { class: "muted small" }, ` · attempt ${e.attempt}`) : null),
    e.worker ? h("div", { class: "note" }, `on ${e.worker}`) : null,
    e.note ? h("div", { class: "note" }, e.note) : null,
    e.error ? h("div", { class: "err" }, `${e.error.type}: ${e.error.message}`) : null,
    e.eta ? h("div", { class: "note" }, `next run at ${fmtTime(e.eta)}`) : null,
  )));
}

function details(t) {
  const rows = [
    ["Id", h("span", { class: "id" }, t.id)],
    ["Queue", t.queue],
    ["Attempts", `${t.attempts}${t.max_retries !== null && t.max_retries !== undefined ? ` of ${t.max_retries + 1}` : ""}`],
    ["Created", fmtTime(t.created_at)],
    ["Started", fmtTime(t.started_at)],
    ["Finished", fmtTime(t.finished_at)],
    ["Run time", fmtDuration(runTime(t))],
    ["Worker", t.worker || "—"],
    ["Trace id", t.trace_id ? h("span", { class: "id", "data-field": "trace-id" }, t.trace_id) : "—"],
  ];
  if (t.eta) rows.push(["ETA", fmtTime(t.eta)]);
  if (t.webhook) rows.push(["Webhook", `${t.webhook.status}${t.webhook.last_error ? ` (${t.webhook.last_error})` : ""}, ${t.webhook.attempts} attempt(s)`]);
  return h("dl", { class: "kv" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function errorBox(error) {
  return h("div", { class: "error-box", "data-field": "error" },
    h("div", { class: "title" }, `${error.type}: ${error.message}`),
    error.reason ? h("div", { class: "muted small" }, `reason: ${error.reason}`) : null,
    error.traceback ? h("pre", { class: "code" }, error.traceback) : null);
}

export async function taskPage(main, id) {
  let record, events;
  try {
    [record, events] = await Promise.all([get(`/tasks/${encodeURIComponent(id)}`), get(`/tasks/${encodeURIComponent(id)}/history`)]);
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 404) {
      main.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Task not found")),
        h("div", { class: "banner warn" }, `No task with id ${id}. Records expire after the result TTL.`),
        h("a", { href: "#/tasks" }, "← All tasks"));
      return {};
    }
    throw exc;
  }
  const act = async (what) => {
    try {
      await post(`/tasks/${encodeURIComponent(id)}/${what}`);
      toast(what === "cancel" ? "Task cancelled." : "Task queued to run again.");
      refresh();
    } catch (exc) { toast(exc.message, "error"); }
  };
  const actions = h("div", { class: "toolbar" },
    !TERMINAL.has(record.status) ? h("button", { type: "button", onclick: () => act("cancel") }, "Cancel task") : null,
    ["failed", "cancelled"].includes(record.status) ? h("button", { type: "button", class: "primary", onclick: () => act("retry") }, "Run again") : null);

  main.replaceChildren(
    h("p", { class: "small" }, h("a", { href: "#/tasks" }, "← All tasks")),
    h("div", { class: "page-head" },
      h("h1", {}, record.name, " ", badge(record.status), h("span", { class: "sub id" }, record.id)), actions),
    h("div", { class: "grid two" },
      h("div", {},
        h("section", { class: "panel" }, h("h2", {}, "Details"), details(record)),
        record.error ? h("section", { class: "panel" }, h("h2", {}, "Error"), errorBox(record.error)) : null,
        h("section", { class: "panel" }, h("h2", {}, "Payload"), code(record.payload)),
        h("section", { class: "panel", "data-field": "result" }, h("h2", {}, "Result"),
          TERMINAL.has(record.status) || record.result !== null ? code(record.result) : h("p", { class: "muted" }, "Not finished yet."))),
      h("section", { class: "panel" }, h("h2", {}, "Timeline"), timeline(events))),
  );
  let pending = null;
  const refresh = () => {
    clearTimeout(pending);
    pending = setTimeout(() => window.dispatchEvent(new CustomEvent("burrow:refresh")), 150);
  };
  return { task: (t) => { if (t.id === id) refresh(); } };
}

export { parseQuery };
