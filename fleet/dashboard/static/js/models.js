// Models and versions: formats, sizes and validation results per artifact (from each version's manifest),
// inputs and outputs, training metrics, and how many devices run each version.
import { api } from "./api.js";
import { badge, fmt, h, link, section, table } from "./dom.js";
import { startPage } from "./page.js";

const manifests = new Map(); // "name version" -> manifest (a registered version never changes)

async function render() {
  const [models, devices] = await Promise.all([api("/api/v1/models"), api("/api/v1/devices")]);
  await Promise.all(models.filter((m) => !manifests.has(key(m))).map(async (m) => {
    const detail = await api(`/api/v1/models/${encodeURIComponent(m.name)}/${encodeURIComponent(m.version)}`);
    manifests.set(key(m), detail.manifest);
  }));
  const running = new Map();
  for (const d of devices) running.set(key(d, d.model), (running.get(key(d, d.model)) || 0) + 1);
  const names = [...new Set(models.map((m) => m.name))];
  if (!names.length) {
    section("models", h("h2", {}, "Models"), h("p", { class: "muted" }, "no model registered yet: edgeml fleet push BUNDLE"));
    return;
  }
  section("models", h("h2", {}, "Models"), names.map((name) => h("div", { class: "model", dataset: { model: name } },
    h("h3", {}, name),
    models.filter((m) => m.name === name).reverse()  // newest first
      .map((m) => version(m, manifests.get(key(m)), running.get(key(m)) || 0)))));
}

const key = (m, name = m.name) => `${name} ${m.version}`;

function version(m, manifest, devices) {
  const inputs = (manifest.inputs || []).map(tensor).join("; ");
  const outputs = (manifest.outputs || []).map(tensor).join("; ");
  const metrics = Object.entries(manifest.metrics || {}).filter(([, v]) => typeof v === "number").map(([k, v]) => `${k} ${fmt.num(v, 4)}`).join(", ");
  return h("div", { class: "card version", dataset: { version: m.version } },
    h("div", { class: "version-head" },
      h("strong", {}, `${m.name} ${m.version}`), " ",
      m.signed ? badge("signed", "ok") : badge("unsigned", "warn"), " ",
      badge(m.task || "task?", "none"), " ",
      link(`/dashboard/devices?version=${encodeURIComponent(m.version)}`, `${devices} device${devices === 1 ? "" : "s"}`),
      h("span", { class: "muted" }, ` · registered ${fmt.time(m.created_at)}`)),
    h("dl", { class: "facts" },
      h("dt", {}, "inputs"), h("dd", {}, inputs || "–"),
      h("dt", {}, "outputs"), h("dd", {}, outputs || "–"),
      h("dt", {}, "source"), h("dd", {}, [manifest.source?.framework, manifest.source?.framework_version].filter(Boolean).join(" ") || "–"),
      h("dt", {}, "metrics"), h("dd", {}, metrics || "–")),
    table([
      ["format", (a) => a.format],
      ["precision", (a) => a.precision],
      ["backend", (a) => a.backend],
      ["size", (a) => fmt.bytes(a.size)],
      ["validation", (a) => validationBadge(a.validation)],
      ["max abs error", (a) => fmt.sci(a.validation?.max_abs_error)],
      ["top-1 agreement", (a) => fmt.pct(a.validation?.top1_agreement)],
      ["task metric", (a) => metricDelta(a.validation)],
      ["samples", (a) => a.validation?.samples ?? "–"],
      ["latency (median)", (a) => (a.latency?.median_ms === undefined ? "–" : `${fmt.num(a.latency.median_ms, 3)} ms`)],
    ], manifest.artifacts || [], { empty: "no artifacts", key: (a) => `${a.format}/${a.precision}` }));
}

function tensor(t) {
  const shape = (t.shape || []).map((d) => (d === null ? "?" : d)).join("×");
  return `${t.name} ${t.dtype} [${shape}]`;
}

function validationBadge(v) {
  if (!v || v.passed === undefined) return badge("not validated", "warn");
  const failures = (v.failures || []).join("; ");
  return v.passed ? badge("passed", "ok") : h("span", { title: failures }, badge("failed", "alert"));
}

function metricDelta(v) {
  if (!v || typeof v.metric_delta !== "number") return "–";
  return `${v.metric || "metric"} ${fmt.num(v.metric_source, 4)} → ${fmt.num(v.metric_artifact, 4)} (Δ ${fmt.num(v.metric_delta, 4)})`;
}

startPage(render, 5000);
