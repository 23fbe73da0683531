// The overview: status counts, the throughput chart, queues, workers and the newest tasks.
import { get } from "./api.js";
import { h, s, fmtRate, fmtNumber, fmtAgo, STATUSES } from "./util.js";
import { drawChart } from "./chart.js";
import { taskTable, applyChange } from "./tasks.js";

const RECENT = 10;

export async function overview(main, live) {
  const [queues, workers, recent] = await Promise.all([
    get("/queues"), get("/workers").catch(() => []), get(`/tasks?limit=${RECENT}`),
  ]);
  const banner = h("div", { role: "alert" });
  const counts = Object.fromEntries(STATUSES.map((st) => [st, h("div", { class: "value", "data-count": st }, "—")]));
  const cards = h("div", { class: "grid cards" }, STATUSES.map((st) =>
    h("div", { class: "panel stat" }, h("div", { class: "label" }, h("span", { class: `dot ${st}` }), st), counts[st])));
  const sampleNote = h("p", { class: "muted small" }, "Statuses of the newest tasks.");

  const svg = s("svg", { class: "chart", role: "img", "aria-label": "Tasks per second over the last five minutes" });
  const legendValues = { submitted: h("b", {}, "—"), succeeded: h("b", {}, "—"), failed: h("b", {}, "—") };
  const legend = h("div", { class: "legend" }, Object.entries(legendValues).map(([k, b]) =>
    h("span", {}, h("i", { class: k }), k, " ", b)));

  const queueBody = h("tbody");
  const queueTable = h("div", { class: "table-wrap" }, h("table", { class: "queues" },
    h("thead", {}, h("tr", {}, ["Queue", "Kind", "Ready", "Consumers", "In", "Done", "Failed", "Dead letters"].map((c, i) =>
      h("th", { scope: "col", class: i > 1 ? "num" : null }, c)))), queueBody));
  // The stream's queue figures carry no kind: it comes from GET /queues (fixed per app).
  const kinds = Object.fromEntries(queues.map((q) => [q.name, q.kind]));

  const workerList = h("div");
  const { table: recentTable, body: recentBody } = taskTable(recent.items, "No tasks yet. Submit one: POST /api/v1/tasks/{name}.");

  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Overview", h("span", { class: "sub" }, "Queues, workers and tasks, updated live."))),
    banner,
    cards, sampleNote,
    h("div", { class: "grid two" },
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Throughput"), legend), svg),
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Workers"), h("a", { href: "#/workers", class: "small" }, "All workers")), workerList)),
    h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Queues"),
      h("span", { class: "muted small" }, "In, done and failed are per second (or per minute) over the last 2 s.")), queueTable),
    h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Newest tasks"), h("a", { href: "#/tasks", class: "small" }, "All tasks")), recentTable),
  );

  function renderQueues(list) {
    queueBody.replaceChildren(...(list.length ? list.map((q) => h("tr", { dataset: { queue: q.name } },
      h("td", {}, h("strong", {}, q.name)),
      h("td", { "data-field": "kind" }, h("span", { class: "kind" }, q.kind || kinds[q.name] || "—")),
      h("td", { class: "num", "data-field": "depth" }, fmtNumber(q.depth)),
      h("td", { class: "num" }, fmtNumber(q.consumers)),
      h("td", { class: "num" }, q.in_rate === undefined ? "—" : fmtRate(q.in_rate)),
      h("td", { class: "num" }, q.done_rate === undefined ? "—" : fmtRate(q.done_rate)),
      h("td", { class: "num" }, q.failed_rate === undefined ? "—" : fmtRate(q.failed_rate)),
      h("td", { class: "num" }, q.dead_letters ? h("a", { href: `#/dead-letters?queue=${encodeURIComponent(q.name)}` }, fmtNumber(q.dead_letters)) : fmtNumber(q.dead_letters)),
    )) : [h("tr", {}, h("td", { class: "empty", colspan: 8 }, "This app has no queues."))]));
  }

  function renderWorkers(list) {
    if (!list.length) {
      workerList.replaceChildren(h("p", { class: "muted" }, "No live workers. Start one with ", h("code", {}, "burrow worker APP"), "."));
      return;
    }
    const inFlight = list.reduce((n, w) => n + (w.in_flight || 0), 0);
    workerList.replaceChildren(
      h("div", { class: "stat" }, h("div", { class: "value" }, list.length), h("div", { class: "muted small" }, `live worker(s), ${inFlight} task(s) in flight`)),
      h("ul", { class: "small" }, list.slice(0, 6).map((w) => h("li", {}, h("span", { class: "mono" }, w.id), h("span", { class: "muted" }, ` · ${(w.queues || []).join(", ")} · seen ${fmtAgo(w.last_seen)}`)))));
  }

  function renderStats(stats) {
    if (!stats) return;
    const total = Object.values(stats.counts || {}).reduce((a, b) => a + b, 0);
    for (const st of STATUSES) counts[st].textContent = fmtNumber(stats.counts?.[st] || 0);
    sampleNote.textContent = total >= stats.sample
      ? `Statuses of the newest ${fmtNumber(stats.sample)} tasks.` : `Statuses of all ${fmtNumber(total)} tasks kept.`;
    const down = [!stats.broker && "RabbitMQ", !stats.redis && "Redis"].filter(Boolean);
    banner.replaceChildren(...(down.length ? [h("div", { class: "banner error" }, `${down.join(" and ")} did not answer; figures may be stale.`)] : []));
    if (stats.queues?.length) renderQueues(stats.queues);
    const r = stats.rates || {};
    for (const k of Object.keys(legendValues)) legendValues[k].textContent = fmtRate(r[k] || 0);
  }

  renderQueues(queues);
  renderWorkers(workers);
  renderStats(live.stats);
  drawChart(svg, live.history);
  const timer = setInterval(() => get("/workers").then(renderWorkers).catch(() => {}), 5000);
  return {
    stats: (st) => { renderStats(st); drawChart(svg, live.history); },
    task: (t) => applyChange(recentBody, t, () => true, RECENT),
    dispose: () => clearInterval(timer),
  };
}
