// Time-series line charts drawn by uPlot (vendored in static/vendor/uplot: no CDN, the fleet may run
// offline). A chart is created once and updated in place with new data on every refresh.
/* global uPlot */
import { h } from "./dom.js";

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

// x ticks: wall-clock time; y ticks: as many decimals as the tick spacing needs
const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

function tick(value, ticks) {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : Math.abs(value) || 1;
  const digits = Math.min(6, Math.max(0, -Math.floor(Math.log10(step || 1))));
  return value.toFixed(digits);
}

export class LineChart {
  // title: shown above the chart; format: y value -> text; fixed: [{label, value, color}] reference lines
  constructor(parent, { title, format = (v) => String(v), fixed = [], height = 180 }) {
    this.format = format;
    this.fixed = fixed;
    this.height = height;
    this.labels = null;
    this.plot = null;
    this.box = h("div", { class: "chart", dataset: { chart: title, points: "0" } }, h("h3", {}, title));
    parent.appendChild(this.box);
    new ResizeObserver(() => this.plot?.setSize(this.size())).observe(this.box);
  }

  size() {
    return { width: Math.max(200, this.box.clientWidth - 16), height: this.height };
  }

  // xs: unix seconds; series: {label: [y or null per x]}
  update(xs, series) {
    const labels = [...Object.keys(series), ...this.fixed.map((f) => f.label)];
    const data = [xs, ...Object.values(series), ...this.fixed.map((f) => xs.map(() => f.value))];
    if (!this.plot || labels.join("\n") !== this.labels) {
      this.plot?.destroy();
      this.labels = labels.join("\n");
      this.plot = new uPlot(this.options(Object.keys(series)), data, this.box);
    } else {
      this.plot.setData(data);
    }
    this.box.dataset.points = String(xs.length);
  }

  options(names) {
    const value = (u, v) => (v === null || v === undefined ? "–" : this.format(v));
    const series = names.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 1.5, value, spanGaps: false }));
    const fixed = this.fixed.map((f) => ({ label: f.label, stroke: f.color || "#9ca3af", width: 1, dash: [4, 4], value }));
    return {
      ...this.size(),
      padding: [8, 28, 0, 0],
      series: [{}, ...series, ...fixed],
      axes: [{ space: 90, values: (u, ticks) => ticks.map(clock) }, { size: 56, values: (u, ticks) => ticks.map((t) => tick(t, ticks)) }],
      scales: { x: { time: true } },
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
  }
}
