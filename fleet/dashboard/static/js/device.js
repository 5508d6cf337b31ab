// Device detail: state, charts over time (requests, latency, errors, CPU, memory, drift per feature) and
// install history. The charts read /api/v1/devices/ID/timeseries: one point per telemetry message.
import { api } from "./api.js";
import { LineChart } from "./charts.js";
import { badge, driftBadge, fmt, h, section, table } from "./dom.js";
import { startPage } from "./page.js";

const deviceId = decodeURIComponent(location.pathname.split("/").pop());
const WINDOWS = [[300, "5 min"], [900, "15 min"], [3600, "1 h"], [21600, "6 h"]];
const INSTALL_EVENTS = new Set(["install_started", "installed", "install_failed", "desired_rejected", "rolled_back"]);
document.title = `${deviceId} · edgeml fleet`;

const windowSelect = h("select", { id: "window" }, WINDOWS.map(([s, label]) => h("option", { value: s, selected: s === 900 }, label)));
windowSelect.addEventListener("change", () => refresh());
section("header", h("h2", {}, "Device ", h("span", { id: "device-id" }, deviceId)), h("div", { id: "summary" }));
const chartBox = section("charts", h("div", { class: "chart-head" }, h("h2", {}, "Telemetry"), h("label", {}, "window ", windowSelect)));
const grid = h("div", { class: "charts" });
chartBox.appendChild(grid);
const charts = {
  requests: new LineChart(grid, { title: "Requests per second", format: (v) => v.toFixed(1) }),
  latency: new LineChart(grid, { title: "Latency p50 / p99 (ms)", format: (v) => v.toFixed(2) }),
  errors: new LineChart(grid, { title: "Error rate (%)", format: (v) => v.toFixed(1) }),
  cpu: new LineChart(grid, { title: "CPU (%)", format: (v) => v.toFixed(0) }),
  memory: new LineChart(grid, { title: "Memory, RSS (MiB)", format: (v) => v.toFixed(0) }),
  drift: new LineChart(grid, {
    title: "Drift, PSI per feature (trailing minute)", format: (v) => v.toFixed(3),
    fixed: [{ label: "warn", value: 0.1, color: "#d97706" }, { label: "alert", value: 0.25, color: "#dc2626" }],
  }),
};

async function render() {
  const id = encodeURIComponent(deviceId);
  const [device, series] = await Promise.all([
    api(`/api/v1/devices/${id}`), api(`/api/v1/devices/${id}/timeseries?window_s=${windowSelect.value}`),
  ]);
  renderSummary(device, series.points.at(-1));
  renderCharts(series);
  const history = device.events.filter((e) => INSTALL_EVENTS.has(e.event));
  section("history", h("h2", {}, "Install history"), table([
    ["when", (e) => fmt.time(e.received_at)],
    ["event", (e) => badge(e.event, e.event)],
    ["version", (e) => (e.payload.version ? `${e.payload.model} ${e.payload.version}` : "")],
    ["seq", (e) => e.payload.seq ?? ""],
    ["reason", (e) => [e.payload.reason, e.payload.detail].filter(Boolean).join(": ")],
  ], history, { empty: "no installs yet" }));
}

function renderSummary(d, lastPoint) {
  const t = d.telemetry;
  const desired = d.desired_version && d.desired_version !== d.version ? `${d.desired_model} ${d.desired_version} (desired)` : null;
  const rows = [
    ["status", badge(d.online ? "online" : "offline")],
    ["state", badge(d.state || "unknown", d.error ? "alert" : d.state || "none")],
    ["version", fmt.version(d.model, d.version)],
    ["desired", desired || "same"],
    ["error", d.error || "none"],
    ["tags", fmt.tags(d.tags) || "none"],
    ["arch / backends", `${d.arch || "?"} / ${(d.backends || []).join(", ")}`],
    ["last 5 min", `${fmt.rate(t.request_rate)}, errors ${fmt.pct(t.error_rate)}, p50 ${fmt.ms(t.latency_p50_s)}, p99 ${fmt.ms(t.latency_p99_s)}`],
    ...(t.cache ? [["prediction cache", `${t.cache.hits} hits, ${t.cache.misses} misses (${fmt.pct(t.cache.hit_rate)}), ${t.cache.entries}/${t.cache.capacity} entries`]] : []),
    ...(t.capture ? [["data capture", `${t.capture.captured} captured, ${t.capture.uploaded} uploaded, ${t.capture.dropped} dropped`]] : []),
    ["drift", driftBadge(d.drift)],
    ["last telemetry", lastPoint ? fmt.ago(lastPoint.ts) : "none in this window"],
  ];
  document.getElementById("summary").replaceChildren(h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
}

function renderCharts({ points, features }) {
  const xs = points.map((p) => p.ts);
  const col = (f) => points.map((p) => { const v = f(p); return v === null || v === undefined ? null : v; });
  charts.requests.update(xs, { "req/s": col((p) => p.request_rate) });
  charts.latency.update(xs, {
    p50: col((p) => p.latency_p50_s && p.latency_p50_s * 1000), p99: col((p) => p.latency_p99_s && p.latency_p99_s * 1000),
  });
  charts.errors.update(xs, { "error rate": col((p) => 100 * p.error_rate) });
  charts.cpu.update(xs, { CPU: col((p) => p.cpu_percent) });
  charts.memory.update(xs, { RSS: col((p) => p.rss_bytes && p.rss_bytes / 2 ** 20) });
  const drift = Object.fromEntries(features.map((f) => [f, col((p) => p.drift[f])]));
  if (points.some((p) => p.prediction_psi !== null)) drift.prediction = col((p) => p.prediction_psi);
  charts.drift.update(xs, drift);
}

const refresh = startPage(render, 1500);
