// Dead letters, schedules and workers.
import { get, post, del, ApiError } from "./api.js";
import { h, code, badge, fmtTime, fmtAgo, fmtNumber, toast, confirmDialog, query } from "./util.js";

function table(columns, rows, empty) {
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label ?? c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { class: "empty", colspan: columns.length }, empty)))));
}

function scopeHint(exc) {
  return exc instanceof ApiError && exc.status === 403 ? `${exc.message} (ask for a key with that scope).` : exc.message;
}

// -- dead letters ----------------------------------------------------------------------------

const KEPT = {
  resolved: "their task has succeeded since (purge the resolved ones)",
  worker_gone: "the worker process they failed in no longer runs",
};

function keptNote(out) {
  const kept = {};
  for (const byReason of Object.values(out.kept || {})) for (const [why, n] of Object.entries(byReason)) kept[why] = (kept[why] || 0) + n;
  return Object.entries(kept).map(([why, n]) => ` Kept ${n}: ${KEPT[why] || why}.`).join("");
}

async function copyText(text, target) {
  try {
    await navigator.clipboard.writeText(text);
    toast("Copied.");
  } catch {
    // No clipboard (a page not served over HTTPS or from localhost): select the id instead.
    const range = document.createRange();
    range.selectNodeContents(target);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    toast("Selected: press Ctrl+C (⌘C) to copy.");
  }
}

function errorCell(d) {
  if (!d.error) return "—";
  const text = `${d.error.type}: ${d.error.message}`;
  const history = (d.history || []).map((run) => h("li", {},
    h("span", { class: "muted" }, `run ${run.attempt ?? "?"}`), ` ${run.type || "Error"}: ${run.message || ""}`));
  return h("details", { class: "error-details" },
    h("summary", { title: "Show the whole error" }, h("span", { class: "line" }, text.split("\n")[0])),
    h("pre", { class: "code light" }, text),
    history.length ? h("div", {}, h("div", { class: "small muted" }, "Failed runs"), h("ol", { class: "small runs" }, history)) : null);
}

function statusCell(d) {
  if (!d.status) return h("span", { class: "muted small", title: "The task's record has expired (or it never had one)." }, "no record");
  return h("span", {}, badge(d.status), d.resolved ? h("span", { class: "flag resolved", title: "The task has succeeded since it was dead-lettered." }, "resolved") : null);
}

export async function deadLetters(main, params) {
  const queue = params.queue || "";
  // One after the other: reading dead letters holds them unacked for a moment, and the
  // broker leaves unacked messages out of a queue's count.
  const queues = (await get("/queues")).filter((q) => q.kind !== "rpc");
  const letters = await get(`/dead-letters${query({ queue, limit: 200 })}`);
  const total = queues.filter((q) => !queue || q.name === queue).reduce((n, q) => n + (q.dead_letters || 0), 0);
  const resolved = letters.filter((d) => d.resolved).length;
  const refresh = () => window.dispatchEvent(new CustomEvent("burrow:refresh"));
  const select = h("select", { id: "dl-queue", onchange: () => { location.hash = `#/dead-letters${query({ queue: select.value })}`; } },
    h("option", { value: "" }, "All queues"), queues.map((q) => h("option", { value: q.name, selected: q.name === queue }, `${q.name} · ${q.kind} (${q.dead_letters ?? 0})`)));
  const where = queue ? `queue ${queue}` : "all queues";
  const replay = h("button", { type: "button", class: "primary", disabled: !total, onclick: async () => {
    replay.disabled = true;
    try {
      const out = await post("/dead-letters/replay", queue ? { queue } : {});
      toast(`Replayed ${out.total} dead letter(s); they run again.${keptNote(out)}`);
    } catch (exc) { toast(scopeHint(exc), "error"); }
    refresh();
  } }, "Replay");
  const purgeResolved = h("button", { type: "button", hidden: !resolved, onclick: async () => {
    const sure = await confirmDialog("Purge resolved dead letters?",
      `This deletes the dead letters of ${where} whose task has succeeded since. The others stay.`, "Purge resolved");
    if (!sure) return;
    try {
      const out = await del(`/dead-letters${query({ queue, resolved: true })}`);
      toast(`Purged ${out.total} resolved dead letter(s).`);
    } catch (exc) { toast(scopeHint(exc), "error"); }
    refresh();
  } }, `Purge resolved (${resolved})…`);
  const purge = h("button", { type: "button", class: "danger", disabled: !total, onclick: async () => {
    const sure = await confirmDialog("Purge dead letters?",
      `This deletes ${fmtNumber(total)} dead letter(s) of ${where} for good. Their tasks stay failed. This cannot be undone.`, "Purge");
    if (!sure) return;
    try {
      const out = await del(`/dead-letters${query({ queue })}`);
      toast(`Purged ${out.total} dead letter(s).`);
    } catch (exc) { toast(scopeHint(exc), "error"); }
    refresh();
  } }, "Purge…");

  const replayOne = async (d, button) => {
    button.disabled = true;
    try {
      const out = await post("/dead-letters/replay", { queue: d.queue, ids: [d.task_id] });
      toast(out.total ? `Replayed dead letter ${d.task_id}; it runs again.` : `Not replayed:${keptNote(out)}`, out.total ? "info" : "error");
    } catch (exc) { toast(scopeHint(exc), "error"); }
    refresh();
  };
  const deleteOne = async (d) => {
    const sure = await confirmDialog("Delete this dead letter?",
      `The dead letter of task ${d.task_id} in queue ${d.queue} is deleted for good${d.resolved ? "" : "; the task stays failed"}. This cannot be undone.`, "Delete");
    if (!sure) return;
    try {
      await del(`/dead-letters${query({ queue: d.queue, id: d.task_id })}`);
      toast(`Deleted dead letter ${d.task_id}.`);
    } catch (exc) { toast(scopeHint(exc), "error"); }
    refresh();
  };
  // The whole id (it wraps, never shortened), then what can be done with this one.
  const taskCell = (d) => {
    if (!d.task_id) return h("span", { class: "muted small", title: "A message without an id: use Replay or Purge for the whole queue." }, "— (no id)");
    const id = h("a", { class: "id full", href: `#/tasks/${encodeURIComponent(d.task_id)}` }, d.task_id);
    const again = h("button", { type: "button", class: "small", "aria-label": `Replay dead letter ${d.task_id}`,
      disabled: d.resolved, title: d.resolved ? "The task has succeeded since: nothing to replay." : "Send it back to its queue as a fresh run.",
      onclick: () => replayOne(d, again) }, "Replay");
    return h("div", {}, id, h("div", { class: "row-actions" },
      h("button", { type: "button", class: "small", title: "Copy the task id", "aria-label": `Copy task id ${d.task_id}`, onclick: () => copyText(d.task_id, id) }, "Copy"),
      again,
      h("button", { type: "button", class: "small", "aria-label": `Delete dead letter ${d.task_id}`, onclick: () => deleteOne(d) }, "Delete")));
  };

  const rows = letters.map((d) => h("tr", { dataset: { id: d.task_id || "", resolved: d.resolved ? "true" : null } },
    h("td", { class: "id-col" }, taskCell(d)),
    h("td", {}, h("div", {}, d.name || "—"), h("div", { class: "muted small", "data-field": "queue" }, d.queue)),
    h("td", {}, statusCell(d)),
    h("td", {}, h("span", { class: "badge failed" }, d.reason), h("div", { class: "muted small", title: "When it was dead-lettered" }, fmtTime(d.dead_at))),
    h("td", { class: "error-col" }, errorCell(d)),
    h("td", { class: "num" }, d.runs ?? "—"),
    h("td", {}, h("details", {}, h("summary", { class: "small" }, "payload"), code(d.payload, true))),
  ));
  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Dead letters", h("span", { class: "sub" }, "Tasks and events that failed for good: replay them once the cause is fixed, or purge them.")),
      h("div", { class: "toolbar" }, replay, purgeResolved, purge)),
    h("section", { class: "panel" },
      h("div", { class: "filters" }, h("div", { class: "field" }, h("label", { for: "dl-queue" }, "Queue"), select),
        h("span", { class: "muted small" }, `${fmtNumber(total)} dead letter(s) in ${where}${letters.length < total ? `; showing the first ${letters.length}` : ""}${resolved ? `; ${resolved} resolved (their task has succeeded since)` : ""}.`)),
      table(["Task", "Name · queue", "Task now", "Reason · died", "Error", { label: "Runs", num: true }, "Payload"], rows, "No dead letters. All good.")),
  );
  let last = total;
  return {
    stats: (st) => {
      const now = (st.queues || []).filter((q) => !queue || q.name === queue).reduce((n, q) => n + (q.dead_letters || 0), 0);
      if (now !== last) { last = now; refresh(); }
    },
  };
}

// -- schedules -------------------------------------------------------------------------------

export async function schedules(main) {
  let list;
  try {
    list = await get("/schedules");
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 404) {
      main.replaceChildren(h("h1", {}, "Schedules"), h("p", { class: "muted" }, "This API has no schedules endpoint."));
      return {};
    }
    throw exc;
  }
  const remove = async (sch) => {
    if (!(await confirmDialog("Delete schedule?", `Schedule ${sch.id} (${sch.task}, ${sch.cron}) stops firing.`, "Delete"))) return;
    try { await del(`/schedules/${encodeURIComponent(sch.id)}`); toast("Schedule deleted."); } catch (exc) { toast(scopeHint(exc), "error"); }
    window.dispatchEvent(new CustomEvent("burrow:refresh"));
  };
  const rows = list.map((sch) => h("tr", { dataset: { id: sch.id } },
    h("td", { class: "id" }, sch.id),
    h("td", {}, sch.task),
    h("td", {}, h("code", {}, sch.cron), h("span", { class: "muted small" }, ` ${sch.timezone}`)),
    h("td", {}, h("code", { class: "truncate", title: JSON.stringify(sch.payload) }, JSON.stringify(sch.payload))),
    h("td", {}, sch.source),
    h("td", {}, fmtTime(sch.last_fired)),
    h("td", {}, fmtTime(sch.next_fire)),
    h("td", {}, sch.source === "api" ? h("button", { type: "button", class: "small", onclick: () => remove(sch), "aria-label": `Delete schedule ${sch.id}` }, "Delete")
      : h("span", { class: "muted small", title: "Defined with @app.periodic: remove it from the code." }, "in code")),
  ));

  const error = h("p", { class: "form-error", role: "alert" });
  const field = (id, label, input) => h("div", { class: "field" }, h("label", { for: id }, label), input);
  const task = h("input", { id: "s-task", required: true, placeholder: "task name", autocomplete: "off" });
  const cron = h("input", { id: "s-cron", required: true, placeholder: "*/5 * * * *", autocomplete: "off" });
  const tz = h("input", { id: "s-tz", value: "UTC", autocomplete: "off" });
  const payload = h("textarea", { id: "s-payload", rows: 2, placeholder: '{"key": "value"}' });
  const form = h("form", { class: "filters", onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = "";
    let body;
    try { body = { task: task.value.trim(), cron: cron.value.trim(), timezone: tz.value.trim() || "UTC", payload: payload.value.trim() ? JSON.parse(payload.value) : null }; } catch { error.textContent = "The payload is not valid JSON."; return; }
    try { await post("/schedules", body); toast("Schedule created."); window.dispatchEvent(new CustomEvent("burrow:refresh")); } catch (exc) { error.textContent = scopeHint(exc); }
  } }, field("s-task", "Task", task), field("s-cron", "Cron", cron), field("s-tz", "Time zone", tz), field("s-payload", "Payload (JSON)", payload),
  h("button", { type: "submit", class: "primary" }, "Add schedule"));

  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Schedules", h("span", { class: "sub" }, "Cron schedules fired by burrow scheduler."))),
    h("section", { class: "panel" }, table(["Id", "Task", "Cron", "Payload", "Source", "Last fired", "Next fire", ""], rows, "No schedules.")),
    h("section", { class: "panel" }, h("h2", {}, "Add a schedule"), form, error),
  );
  return {};
}

// -- workers ---------------------------------------------------------------------------------

function consumed(w) {
  const lines = [...(w.queues || []), ...(w.subscriber_queues || []).map((q) => `${q} (subscriber)`), ...(w.rpc_queues || []).map((q) => `${q} (rpc)`)];
  return lines.length ? h("span", { class: "queue-list" }, lines.join(", ")) : "—";
}

export async function workers(main) {
  const body = h("div");
  const render = (list) => body.replaceChildren(table(
    ["Worker", "Host", { label: "PID", num: true }, "Queues", { label: "Concurrency", num: true }, { label: "In flight", num: true }, { label: "Processed", num: true }, "Started", "Last seen"],
    list.map((w) => h("tr", { dataset: { id: w.id } },
      h("td", { class: "id" }, w.id), h("td", {}, w.host), h("td", { class: "num" }, w.pid),
      h("td", {}, consumed(w)), h("td", { class: "num" }, w.concurrency),
      h("td", { class: "num" }, w.in_flight), h("td", { class: "num" }, fmtNumber(w.processed)),
      h("td", {}, fmtTime(w.started_at)), h("td", {}, fmtAgo(w.last_seen)))),
    "No live workers. Start one with burrow worker APP."));
  render(await get("/workers"));
  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Workers", h("span", { class: "sub" }, "Live workers from their heartbeats; a worker that stops beating drops out."))),
    h("section", { class: "panel" }, body));
  const timer = setInterval(() => get("/workers").then(render).catch(() => {}), 3000);
  return { dispose: () => clearInterval(timer) };
}
