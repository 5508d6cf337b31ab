// Fleet overview: devices online/offline, versions in use, active rollouts, drift alerts, recent events.
import { api, optional } from "./api.js";
import { badge, deviceLink, driftBadge, fmt, h, link, progress, section, stat, table } from "./dom.js";
import { startPage } from "./page.js";

const ACTIVE = new Set(["running", "paused"]);
const MAX_DRIFT_ROWS = 10;

async function render() {
  const [devices, versions, rollouts, events] = await Promise.all([
    api("/api/v1/devices"), api("/api/v1/versions"), optional("/api/v1/rollouts", []), api("/api/v1/events?limit=12"),
  ]);
  const online = devices.filter((d) => d.online);
  const drifting = devices.filter((d) => d.drift && d.drift.level !== "ok").sort((a, b) => b.drift.max_psi - a.drift.max_psi);
  const alerts = drifting.filter((d) => d.drift.level === "alert");
  const active = rollouts.filter((r) => ACTIVE.has(r.state));
  section("stats", h("div", { class: "stats" },
    stat("devices online", online.length, { id: "online-count", kind: "ok" }),
    stat("offline", devices.length - online.length, { id: "offline-count", kind: devices.length > online.length ? "warn" : "" }),
    stat("installing", devices.filter((d) => d.state === "installing").length, { id: "installing-count" }),
    stat("with errors", devices.filter((d) => d.error).length, { id: "error-count", kind: devices.some((d) => d.error) ? "alert" : "" }),
    stat("active rollouts", active.length, { id: "rollout-count" }),
    stat(`drift alerts (${drifting.length - alerts.length} warn)`, alerts.length,
      { id: "drift-count", kind: alerts.length ? "alert" : drifting.length ? "warn" : "" })));
  section("versions", h("h2", {}, "Versions in use"), versionsTable(devices, versions));
  section("rollouts", h("h2", {}, "Active rollouts"), table([
    ["rollout", (r) => link(`/dashboard/rollouts?id=${encodeURIComponent(r.id)}`, `${r.model} ${r.version}`)],
    ["state", (r) => badge(r.state)],
    ["wave", (r) => `${(r.current_wave ?? 0) + 1} of ${r.waves.length}`],
    ["progress", (r) => progress(r.installed, r.targeted, r.failed)],
    ["installed", (r) => `${r.installed}/${r.targeted}${r.failed ? `, ${r.failed} failed` : ""}`],
  ], active, { empty: "no active rollouts", key: (r) => r.id }));
  const shown = drifting.slice(0, MAX_DRIFT_ROWS);
  section("drift", h("h2", {}, "Drift alerts and warnings"), table([
    ["device", (d) => deviceLink(d.id)],
    ["version", (d) => fmt.version(d.model, d.version)],
    ["drift", (d) => driftBadge(d.drift)],
    ["worst feature", (d) => worstFeature(d.drift)],
  ], shown, { empty: "no drift: every device is within the reference (PSI < 0.1)", key: (d) => d.id }),
  drifting.length > shown.length ? h("p", { class: "muted" }, `and ${drifting.length - shown.length} more: see `,
    link("/dashboard/devices", "Devices")) : null);
  section("events", h("h2", {}, "Recent events"), table([
    ["when", (e) => fmt.ago(e.received_at)],
    ["device", (e) => deviceLink(e.device_id)],
    ["event", (e) => badge(e.event, e.event)],
    ["version", (e) => (e.payload.version ? `${e.payload.model} ${e.payload.version}` : "")],
    ["reason", (e) => e.payload.reason || ""],
  ], events, { empty: "no events yet" }));
}

function versionsTable(devices, stats) {
  const groups = new Map();
  for (const d of devices) {
    const key = fmt.version(d.model, d.version);
    const g = groups.get(key) || { key, model: d.model, version: d.version, devices: 0, online: 0 };
    g.devices += 1;
    g.online += d.online ? 1 : 0;
    groups.set(key, g);
  }
  const byVersion = new Map(stats.map((s) => [fmt.version(s.model, s.version), s]));
  const rows = [...groups.values()].sort((a, b) => b.devices - a.devices);
  return table([
    ["version", (g) => (g.model ? link(`/dashboard/devices?version=${encodeURIComponent(g.version)}`, g.key) : g.key)],
    ["devices", (g) => `${g.devices} (${g.online} online)`],
    ["requests", (g) => fmt.rate(byVersion.get(g.key)?.request_rate)],
    ["error rate", (g) => fmt.pct(byVersion.get(g.key)?.error_rate)],
    ["p99", (g) => fmt.ms(byVersion.get(g.key)?.latency_p99_s)],
    ["drift", (g) => driftBadge(byVersion.get(g.key)?.drift)],
  ], rows, { empty: "no devices yet", key: (g) => g.key });
}

function worstFeature(drift) {
  const worst = [...(drift.features || [])].sort((a, b) => b.psi - a.psi)[0];
  return worst ? `${worst.feature} (PSI ${fmt.num(worst.psi, 3)})` : "prediction";
}

startPage(render, 2000);
