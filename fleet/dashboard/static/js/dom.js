// Building DOM from data without innerHTML (device ids, tags and reasons come from devices), and the
// formatting every page uses.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else if (child !== null && child !== undefined && child !== false) el.appendChild(document.createTextNode(String(child)));
  }
}

// Replace the content of the element with this id (created inside #app on first use).
export function section(id, ...children) {
  let el = document.getElementById(id);
  if (!el) {
    el = h("section", { id });
    document.getElementById("app").appendChild(el);
  }
  el.replaceChildren();
  append(el, children);
  return el;
}

// A table: columns are [label, row => cell content] pairs; `key` gives each row a data-key.
export function table(columns, rows, { empty = "nothing yet", key, id } = {}) {
  const head = h("thead", {}, h("tr", {}, columns.map(([label]) => h("th", {}, label))));
  const body = h("tbody", {}, rows.length
    ? rows.map((row) => h("tr", { dataset: key ? { key: key(row) } : {} }, columns.map(([, cell]) => h("td", {}, cell(row)))))
    : h("tr", { class: "empty" }, h("td", { colspan: columns.length }, empty)));
  return h("table", { id, class: "grid" }, head, body);
}

export function badge(text, kind = text) {
  return h("span", { class: `badge ${kind}` }, text);
}

export function stat(label, value, { id, kind = "" } = {}) {
  return h("div", { class: `stat ${kind}` }, h("div", { class: "value", id }, value), h("div", { class: "label" }, label));
}

export function link(href, text) {
  return h("a", { href }, text);
}

export function deviceLink(id) {
  return link(`/dashboard/devices/${encodeURIComponent(id)}`, id);
}

export function progress(done, total, failed = 0) {
  const pct = total ? Math.min(100, (100 * done) / total) : 0;
  const bad = total ? Math.min(100 - pct, (100 * failed) / total) : 0;
  return h("div", { class: "progress", title: `${done}/${total}${failed ? `, ${failed} failed` : ""}` },
    h("div", { class: "done", style: `width:${pct}%` }), h("div", { class: "failed", style: `width:${bad}%` }));
}

const isNum = (v) => typeof v === "number" && Number.isFinite(v);

export const fmt = {
  num: (v, digits = 2) => (isNum(v) ? v.toFixed(digits) : "–"),
  // integers as they are, others with 4 significant digits
  value: (v) => (isNum(v) ? (Number.isInteger(v) ? String(v) : String(+v.toPrecision(4))) : "–"),
  sci: (v) => (isNum(v) ? (v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toFixed(4)) : "–"),
  rate: (v) => (isNum(v) ? `${v.toFixed(v < 10 ? 2 : 1)}/s` : "–"),
  pct: (v) => (isNum(v) ? `${(100 * v).toFixed(v < 0.01 && v > 0 ? 2 : 1)}%` : "–"),
  ms: (seconds) => (isNum(seconds) ? `${(seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1)} ms` : "–"),
  bytes: (v) => {
    if (!isNum(v)) return "–";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
  },
  time: (ts) => (isNum(ts) ? new Date(ts * 1000).toLocaleString() : "–"),
  ago: (ts) => {
    if (!isNum(ts)) return "–";
    const s = Math.max(0, Date.now() / 1000 - ts);
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    return `${(s / 3600).toFixed(1)} h ago`;
  },
  tags: (tags) => Object.entries(tags || {}).map(([k, v]) => `${k}=${v}`).join(", "),
  version: (model, version) => (model ? `${model} ${version}` : "none"),
};

export function driftBadge(drift) {
  if (!drift || !drift.level) return badge("–", "none");
  return badge(`${drift.level} ${fmt.num(drift.max_psi, 3)}`, drift.level);
}
