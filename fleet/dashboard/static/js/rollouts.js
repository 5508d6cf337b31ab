// Rollouts: the list, and the selected rollout's waves, cohort progress, gates against thresholds,
// decision log and the pause / resume / abort / roll back buttons (the server answers 409 on a stale state).
import { api, optional } from "./api.js";
import { badge, fmt, h, progress, section, table } from "./dom.js";
import { startPage } from "./page.js";
import { RolloutForm } from "./rollout_form.js";

const ACTIONS = [
  // action, label, states in which it makes sense, confirmation question
  ["pause", "Pause", ["running"], null],
  ["resume", "Resume", ["paused"], null],
  ["abort", "Abort", ["running", "paused"], "Abort this rollout? Devices keep the version they run now."],
  ["rollback", "Roll back", ["running", "paused", "completed", "aborted"], "Roll every touched device back to the previous version?"],
];

// The rollout shown below the list: the one picked (link or ?id=), else always the newest.
let selected = new URLSearchParams(location.search).get("id");
const flash = h("p", { id: "action-result", role: "status" });
const buttons = Object.fromEntries(ACTIONS.map(([action, label, , question]) => [action,
  h("button", { type: "button", id: `rollout-${action}`, class: action, onclick: () => act(action, question) }, label)]));

const form = new RolloutForm((rollout) => {
  selected = rollout.id;
  history.replaceState(null, "", `?id=${encodeURIComponent(rollout.id)}`);
  flash.textContent = `started rollout ${rollout.id}: ${rollout.model} ${rollout.version}`;
  flash.className = "ok";
  refresh();
});
section("start", h("h2", {}, "Rollouts"), form.element);

async function render() {
  const [rollouts, models] = await Promise.all([optional("/api/v1/rollouts", []), api("/api/v1/models")]);
  form.setModels(models);
  rollouts.sort((a, b) => b.created_at - a.created_at);
  section("rollout-list", table([
    ["rollout", (r) => h("a", { href: `?id=${encodeURIComponent(r.id)}`, onclick: (e) => select(e, r.id) }, `${r.model} ${r.version}`)],
    ["mode", (r) => r.mode],
    ["state", (r) => badge(r.state)],
    ["wave", (r) => waveText(r)],
    ["progress", (r) => progress(r.installed, r.targeted, r.failed)],
    ["created", (r) => fmt.time(r.created_at)],
  ], rollouts, { empty: "no rollouts yet: start one above, or edgeml fleet rollout start MODEL VERSION", key: (r) => r.id }));
  const current = rollouts.find((r) => String(r.id) === String(selected)) || rollouts[0];
  if (!current) {
    section("rollout-detail");
    return;
  }
  renderDetail(current);
  document.querySelector(`#rollout-list tr[data-key="${CSS.escape(String(current.id))}"]`)?.classList.add("selected");
}

function select(event, id) {
  event.preventDefault();
  selected = id;
  flash.textContent = "";
  history.replaceState(null, "", `?id=${encodeURIComponent(id)}`);
  refresh();
}

function waveText(r) {
  const n = r.waves.length;
  if (r.current_wave === null || r.current_wave === undefined) return `– of ${n}`;
  return `${Math.min(r.current_wave + 1, n)} of ${n}`;
}

function renderDetail(r) {
  for (const [action, , states] of ACTIONS) buttons[action].disabled = !states.includes(r.state);
  const detail = section("rollout-detail",
    h("div", { class: "rollout-head", dataset: { rollout: r.id, state: r.state } },
      h("h2", {}, `${r.model} ${r.version} `, h("span", { id: "rollout-state" }, badge(r.state))),
      h("div", { class: "actions" }, Object.values(buttons))),
    flash,
    h("dl", { class: "facts" },
      h("dt", {}, "mode"), h("dd", {}, r.mode),
      h("dt", {}, "selector"), h("dd", {}, fmt.tags(r.selector) || "every device"),
      h("dt", {}, "devices"), h("dd", { id: "rollout-progress" }, `${r.installed} of ${r.targeted} installed${r.failed ? `, ${r.failed} failed` : ""}`),
      h("dt", {}, "soak per wave"), h("dd", {}, r.soak_s === undefined ? "–" : `${r.soak_s} s`),
      h("dt", {}, "on failure"), h("dd", {}, r.on_failure),
      h("dt", {}, "updated"), h("dd", {}, fmt.ago(r.updated_at))),
    h("h3", {}, "Waves"), wavesTable(r),
    h("h3", {}, "Health gates"), gatesTable(r.gates || []),
    h("h3", {}, "Decisions"), decisionsTable(r.decisions || []));
  if (r.comparison && Object.keys(r.comparison).length) {
    detail.append(h("h3", {}, "Comparison"), h("pre", { class: "comparison" }, JSON.stringify(r.comparison, null, 2)));
  }
}

function wavesTable(r) {
  return table([
    ["wave", (w) => `${w.index + 1}`],
    ["percent", (w) => `${w.percent}%`],
    ["state", (w) => badge(w.state)],
    ["cohort", (w) => progress(w.installed, w.devices.length, w.failed)],
    ["installed", (w) => `${w.installed}/${w.devices.length}${w.failed ? `, ${w.failed} failed` : ""}`],
    ["soak", (w) => soak(w)],
    ["started", (w) => (w.started_at ? fmt.time(w.started_at) : "–")],
  ], r.waves, { key: (w) => String(w.index), id: "waves" });
}

function soak(w) {
  if (w.state !== "soaking" || !w.soak_until) return w.state === "passed" ? "done" : "–";
  const left = Math.max(0, w.soak_until - Date.now() / 1000);
  return `${Math.ceil(left)} s left`;
}

function gatesTable(gates) {
  return table([
    ["gate", (g) => g.name],
    ["value", (g) => fmt.value(g.value)],
    ["threshold", (g) => fmt.value(g.threshold)],
    ["against threshold", (g) => gauge(g)],
    ["result", (g) => gateResult(g)],
  ], gates, { empty: "no gate evaluated yet", key: (g) => g.name, id: "gates" });
}

// value / threshold as a bar (the threshold is the full width), red when the gate failed
function gauge(g) {
  if (g.value === null || g.value === undefined || !g.threshold) return "";
  const pct = Math.min(100, (100 * g.value) / g.threshold);
  return h("div", { class: `gauge ${g.passed ? "ok" : "alert"}`, title: `${fmt.value(g.value)} of ${fmt.value(g.threshold)}` },
    h("div", { style: `width:${pct}%` }));
}

function gateResult(g) {
  if (g.passed) return badge("passed", "ok");
  if (g.value === null || g.value === undefined) return badge("waiting for data", "none");
  return badge("failed", "alert");
}

function decisionsTable(decisions) {
  const rows = [...decisions].sort((a, b) => b.ts - a.ts);
  return table([
    ["when", (d) => fmt.time(d.ts)],
    ["action", (d) => badge(d.action, d.action)],
    ["reason", (d) => d.reason],
    ["numbers", (d) => numbers(d.numbers || {})],
  ], rows, { empty: "no decisions yet", id: "decisions" });
}

// Flat numbers on one line; nested groups (e.g. new vs old version) on a line each.
function numbers(obj) {
  const flat = (o) => Object.entries(o).filter(([, v]) => v !== null && typeof v !== "object")
    .map(([k, v]) => `${k}=${typeof v === "number" ? fmt.value(v) : v}`).join(", ");
  const lists = Object.entries(obj).filter(([, v]) => Array.isArray(v)).map(([k, v]) => `${k}=[${v.join(", ")}]`);
  const groups = Object.entries(obj).filter(([, v]) => v && typeof v === "object" && !Array.isArray(v));
  return h("div", { class: "numbers" }, h("div", {}, [flat(obj), ...lists].filter(Boolean).join(", ")),
    groups.map(([k, v]) => h("div", {}, h("span", { class: "muted" }, `${k}: `), flat(v))));
}

async function act(action, question) {
  if (question && !confirm(question)) return;
  Object.values(buttons).forEach((b) => { b.disabled = true; });
  try {
    const id = document.querySelector(".rollout-head").dataset.rollout;
    const r = await api(`/api/v1/rollouts/${encodeURIComponent(id)}/${action}`, { method: "POST" });
    flash.textContent = `${action}: rollout is now ${r.state}`;
    flash.className = "ok";
  } catch (err) {
    flash.textContent = `${action} refused: ${err.message}`;
    flash.className = "error";
  }
  await refresh();
}

const refresh = startPage(render, 1500);
