// Devices list with filters by tag, version and state (kept in the URL, applied by the API).
import { api } from "./api.js";
import { badge, deviceLink, driftBadge, fmt, h, section, table } from "./dom.js";
import { startPage } from "./page.js";

const STATES = ["", "online", "offline", "active", "installing", "idle"];
const params = new URLSearchParams(location.search);

const tagInput = h("input", { id: "filter-tag", name: "tag", placeholder: "site=lyon, hw=pi5", value: params.getAll("tag").join(", ") });
const versionSelect = h("select", { id: "filter-version", name: "version" }, h("option", { value: "" }, "any version"));
const stateSelect = h("select", { id: "filter-state", name: "state" },
  STATES.map((s) => h("option", { value: s, selected: s === (params.get("state") || "") }, s || "any state")));
const count = h("span", { id: "device-count", class: "muted" });
const form = h("form", { id: "filters", class: "filters" },
  h("label", {}, "tags ", tagInput), h("label", {}, "version ", versionSelect), h("label", {}, "state ", stateSelect), count);
form.addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
form.addEventListener("change", () => refresh());
section("filter-bar", h("h2", {}, "Devices"), form);

let wantedVersion = params.get("version") || "";

function query() {
  const q = new URLSearchParams();
  for (const tag of tagInput.value.split(",").map((t) => t.trim()).filter((t) => t.includes("="))) q.append("tag", tag);
  if (versionSelect.value || wantedVersion) q.set("version", versionSelect.value || wantedVersion);
  if (stateSelect.value) q.set("state", stateSelect.value);
  return q;
}

async function render() {
  const q = query();
  history.replaceState(null, "", q.toString() ? `?${q}` : location.pathname);
  const [devices, models] = await Promise.all([api(`/api/v1/devices?${q}`), api("/api/v1/models")]);
  fillVersions(models);
  count.textContent = `${devices.length} device${devices.length === 1 ? "" : "s"}`;
  section("device-table", table([
    ["device", (d) => deviceLink(d.id)],
    ["status", (d) => badge(d.online ? "online" : "offline")],
    ["state", (d) => badge(d.state || "unknown", d.error ? "alert" : d.state || "none")],
    ["version", (d) => fmt.version(d.model, d.version)],
    ["tags", (d) => fmt.tags(d.tags)],
    ["requests", (d) => fmt.rate(d.telemetry.request_rate)],
    ["errors", (d) => fmt.pct(d.telemetry.error_rate)],
    ["p99", (d) => fmt.ms(d.telemetry.latency_p99_s)],
    ["CPU", (d) => (d.telemetry.cpu_percent === undefined ? "–" : `${fmt.num(d.telemetry.cpu_percent, 0)}%`)],
    ["memory", (d) => fmt.bytes(d.telemetry.rss_bytes)],
    ["drift", (d) => driftBadge(d.drift)],
    ["last seen", (d) => fmt.ago(d.last_seen)],
  ], devices, { empty: "no device matches these filters", key: (d) => d.id }));
}

function fillVersions(models) {
  const versions = [...new Set(models.map((m) => m.version))].sort();
  const have = [...versionSelect.options].map((o) => o.value).slice(1);
  if (have.join("\n") === versions.join("\n")) return;
  const selected = versionSelect.value || wantedVersion;
  versionSelect.replaceChildren(h("option", { value: "" }, "any version"),
    ...versions.map((v) => h("option", { value: v, selected: v === selected }, v)));
  wantedVersion = "";
}

const refresh = startPage(render, 2000);
