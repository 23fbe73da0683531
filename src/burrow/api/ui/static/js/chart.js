// A small inline SVG line chart of the rates (no library needed for three lines).
import { s, fmtTime } from "./util.js";

const SERIES = ["submitted", "succeeded", "failed"];
const H = 220, PAD = { l: 44, r: 12, t: 10, b: 24 };

function niceMax(value) {
  if (value <= 1) return 1;
  const pow = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * pow >= value) return step * pow;
  return 10 * pow;
}

function label(v) {
  return v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)}k` : String(+v.toFixed(2));
}

/** Render points [{t, submitted, succeeded, failed}] (per second) into the <svg> element. */
export function drawChart(svg, points, maxSeconds = 300) {
  svg.replaceChildren();
  // Drawn at the element's own width: a stretched drawing would squeeze the labels on a
  // narrow screen. Each redraw (every stats event) follows a resize.
  const W = Math.max(240, Math.round(svg.clientWidth || 720));
  const xTicks = W < 560 ? 3 : 5;
  // The window grows with the history, from one minute up to `maxSeconds`.
  const span = points.length ? points[points.length - 1].t - points[0].t : 0;
  const windowSeconds = Math.min(maxSeconds, Math.max(60, Math.ceil(span / 60) * 60));
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const now = points.length ? points[points.length - 1].t : Date.now() / 1000;
  const start = now - windowSeconds;
  const shown = points.filter((p) => p.t >= start);
  const max = niceMax(Math.max(0, ...shown.flatMap((p) => SERIES.map((k) => p[k] || 0))));
  const x = (t) => PAD.l + ((t - start) / windowSeconds) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - (v / max) * (H - PAD.t - PAD.b);
  const ticks = max % 4 === 0 ? 4 : 5;
  for (let i = 0; i <= ticks; i++) {
    const v = (max * i) / ticks;
    svg.append(s("line", { class: "grid-line", x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v) }));
    svg.append(s("text", { class: "axis", x: PAD.l - 6, y: y(v) + 4, "text-anchor": "end" }, label(v)));
  }
  for (let i = 0; i <= xTicks; i++) {
    const t = start + (windowSeconds * i) / xTicks;
    svg.append(s("text", { class: "axis", x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === xTicks ? "end" : "middle" },
      i === xTicks ? "now" : fmtTime(t)));
  }
  for (const key of SERIES) {
    if (shown.length < 2) continue;
    const d = shown.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p[key] || 0).toFixed(1)}`).join("");
    svg.append(s("path", { class: key, d }));
  }
}
