// The "start a rollout" form of the rollouts page: POST /api/v1/rollouts with the operator's waves, soak
// time, gates and failure action. The server validates everything; its error is shown as it is.
import { api } from "./api.js";
import { h } from "./dom.js";

const GATES = [
  // field, label, default (the engine's defaults), step
  ["max_error_rate", "max error rate", 0.01, "0.001"],
  ["max_p99_ratio", "max p99 ratio (new / previous)", 1.5, "0.1"],
  ["max_install_failures", "max install failures", 1, "1"],
  ["max_drift_psi", "max drift PSI", 0.25, "0.01"],
  ["min_reporting", "min reporting devices", 3, "1"],
];

const input = (id, attrs = {}) => h("input", { id, name: id, ...attrs });
const field = (label, control) => h("label", { class: "field" }, h("span", {}, label), control);

export class RolloutForm {
  constructor(onStarted) {
    this.onStarted = onStarted;
    this.models = [];
    this.model = h("select", { id: "new-model", onchange: () => this.fillVersions() });
    this.version = h("select", { id: "new-version" });
    this.baseline = h("select", { id: "new-baseline" });
    this.mode = h("select", { id: "new-mode", onchange: () => this.showMode() },
      ["staged", "ab", "shadow"].map((m) => h("option", { value: m }, m)));
    this.abPercent = input("new-ab-percent", { type: "number", min: "1", max: "99", value: "50" });
    this.error = h("p", { id: "new-error", class: "error", role: "alert", hidden: true });
    this.gates = Object.fromEntries(GATES.map(([name, , value, step]) => [name, input(`gate-${name}`, { type: "number", step, min: "0", value })]));
    this.abFields = h("div", { class: "form-row", hidden: true },
      field("baseline version (A/B)", this.baseline), field("share on the new version (%)", this.abPercent));
    this.form = h("form", { id: "new-rollout", class: "card rollout-form" },
      h("div", { class: "form-row" },
        field("model", this.model), field("version", this.version), field("mode", this.mode),
        field("selector", input("new-selector", { placeholder: "site=lyon, hw=pi5 (empty: every device)" })),
        field("waves (%)", input("new-waves", { value: "5, 25, 100" })),
        field("soak per wave (s)", input("new-soak", { type: "number", min: "0", value: "60" })),
        field("on a failed gate", h("select", { id: "new-on-failure" },
          h("option", { value: "rollback" }, "roll back"), h("option", { value: "pause" }, "pause")))),
      this.abFields,
      h("div", { class: "form-row" }, GATES.map(([name, label]) => field(label, this.gates[name]))),
      h("button", { type: "submit", id: "new-submit" }, "Start rollout"), this.error);
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    this.element = h("details", { id: "start-rollout" }, h("summary", {}, "Start a rollout"), this.form);
  }

  // Called on every refresh with /api/v1/models; the selects change only when the registry did.
  setModels(models) {
    const sig = models.map((m) => `${m.name} ${m.version}`).join("\n");
    if (sig === this.models.sig) return;
    this.models = Object.assign(models, { sig });
    const names = [...new Set(models.map((m) => m.name))];
    const chosen = this.model.value;
    this.model.replaceChildren(...names.map((n) => h("option", { value: n, selected: n === chosen }, n)));
    this.fillVersions();
  }

  fillVersions() {
    const versions = this.models.filter((m) => m.name === this.model.value).map((m) => m.version).reverse();
    for (const select of [this.version, this.baseline]) {
      const chosen = select.value;
      select.replaceChildren(...versions.map((v) => h("option", { value: v, selected: v === chosen }, v)));
    }
  }

  showMode() {
    this.abFields.hidden = this.mode.value !== "ab";
  }

  body() {
    const value = (id) => this.form.querySelector(`#${id}`).value.trim();
    const selector = Object.fromEntries(value("new-selector").split(",").map((t) => t.trim()).filter(Boolean)
      .map((t) => [t.split("=")[0].trim(), t.split("=").slice(1).join("=").trim()]));
    const body = {
      model: this.model.value, version: this.version.value, mode: this.mode.value, selector,
      waves: value("new-waves").split(",").map((w) => Number(w.trim())),
      soak_s: Number(value("new-soak")), on_failure: value("new-on-failure"),
      gates: Object.fromEntries(GATES.map(([name]) => [name, Number(this.gates[name].value)])),
    };
    if (body.mode === "ab") Object.assign(body, { baseline_version: this.baseline.value, ab_percent: Number(this.abPercent.value) });
    return body;
  }

  async submit() {
    this.error.hidden = true;
    try {
      const rollout = await api("/api/v1/rollouts", { method: "POST", body: this.body() });
      this.element.open = false;
      this.onStarted(rollout);
    } catch (err) {
      this.error.textContent = `not started: ${err.message}`;
      this.error.hidden = false;
    }
  }
}
