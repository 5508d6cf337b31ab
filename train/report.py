"""report.html: one self-contained page (plots embedded as base64 PNG) a person can open anywhere."""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any, Callable

PLOT_IDS = ("confusion-matrix", "roc-curve", "feature-importance", "group-metrics")
MAX_IMPORTANCE_BARS = 20


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(w: float = 5.0, h: float = 4.0) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def confusion_plot(summary: dict[str, Any]) -> str | None:
    conf = summary["evaluation"].get("confusion")
    if not conf:
        return None
    labels, matrix = conf["labels"], conf["matrix"]
    fig, ax = _figure(1.5 + 0.45 * len(labels), 1.2 + 0.45 * len(labels))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), [str(l) for l in labels], rotation=45)
    ax.set_yticks(range(len(labels)), [str(l) for l in labels])
    top = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if v > top / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test split)")
    return _png(fig)


def roc_plot(summary: dict[str, Any]) -> str | None:
    curves = summary["evaluation"].get("roc") or []
    if not curves:
        return None
    fig, ax = _figure()
    for c in curves:
        ax.plot(c["fpr"], c["tpr"], label=f"{c['label']} (AUC {c['auc']:.3f})")
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve (test split, one-vs-rest)" if len(curves) > 1 else "ROC curve (test split)")
    ax.legend(fontsize=7)
    return _png(fig)


def importance_plot(summary: dict[str, Any]) -> str | None:
    rows = [r for r in summary["evaluation"].get("importance") or [] if r["mean"] is not None][:MAX_IMPORTANCE_BARS]
    if not rows:
        return None
    fig, ax = _figure(6, 0.6 + 0.3 * len(rows))
    ax.barh([r["feature"] for r in rows][::-1], [r["mean"] for r in rows][::-1],
            xerr=[r["std"] or 0 for r in rows][::-1])
    ax.set_title(f"Feature importance ({summary['evaluation']['importance_method']})")
    return _png(fig)


def group_plot(summary: dict[str, Any]) -> str | None:
    bias = summary.get("bias")
    if not bias:
        return None
    metrics = [k for k in bias["gaps"]]
    groups = bias["groups"]
    fig, ax = _figure(6, 4)
    width = 0.8 / max(1, len(groups))
    for i, g in enumerate(groups):
        ax.bar([m + i * width for m in range(len(metrics))], [g[k] or 0 for k in metrics], width, label=f"{g['group']} (n={g['n']})")
    ax.set_xticks([m + 0.4 - width / 2 for m in range(len(metrics))], metrics)
    ax.set_title(f"Per-group metrics by {bias['column']}")
    ax.legend(fontsize=7)
    return _png(fig)


PLOTS: dict[str, tuple[str, Callable[[dict[str, Any]], str | None]]] = {
    "confusion-matrix": ("Confusion matrix", confusion_plot),
    "roc-curve": ("ROC curve", roc_plot),
    "feature-importance": ("Feature importance", importance_plot),
    "group-metrics": ("Per-group metrics", group_plot),
}


def render(summary: dict[str, Any]) -> str:
    """The report page for a run summary (the metrics.json content)."""
    parts = [f"<h1>edgeml train: {_e(summary['name'])}</h1>",
             f"<p>{_e(summary['task'])} with <b>{_e(summary['model'])}</b>; created {_e(summary['created_at'])}</p>",
             "<h2>Test metrics</h2>", _table(["metric", "value"], [[k, v] for k, v in summary["evaluation"]["metrics"].items()]),
             "<h2>Search</h2>", _table(["", ""], [["kind", summary["search"]["kind"]], ["scoring", summary["search"]["scoring"]],
                                                 ["cv score", summary["search"]["cv_score"]], ["cv std", summary["search"]["cv_std"]],
                                                 ["candidates", summary["search"]["candidates"]],
                                                 ["best parameters", json.dumps(summary["search"]["best_params"])]]),
             "<h2>Data</h2>", _table(["", ""], [[k, json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in summary["data"].items()])]
    bias = summary.get("bias")
    if bias:
        cols = ["group", "n", *bias["gaps"]]
        parts += [f"<h2>Bias: {_e(bias['column'])}</h2>",
                  _table(cols, [[g.get(c) for c in cols] for g in bias["groups"]] + [["gap", "", *bias["gaps"].values()]]),
                  f"<p class='{'flag' if bias['flagged'] else 'ok'}'>"
                  + (f"FLAGGED: gap above {bias['threshold']} in {', '.join(bias['flagged'])}" if bias["flagged"]
                     else f"no gap above {bias['threshold']}") + "</p>"]
    parts += robustness_section(summary.get("robustness"))
    for plot_id, (title, fn) in PLOTS.items():
        image = fn(summary)
        if image:
            parts.append(f"<h2>{title}</h2><img id='{plot_id}' alt='{title}' src='data:image/png;base64,{image}'>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px}.flag{color:#b00;font-weight:bold}.ok{color:#070}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>edgeml train {_e(summary['name'])}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"


def robustness_section(rob: dict[str, Any] | None) -> list[str]:
    """The metric under perturbations (train.robustness), right after the bias section."""
    if not rob:
        return []
    rows = [["none (clean)", "", rob["baseline"], ""]]
    rows += [["Gaussian noise", f"{r['strength']} σ", r["value"], r["drop"]] for r in rob["noise"]]
    rows += [["FGSM", f"ε = {r['epsilon']} σ", r["value"], r["drop"]] for r in rob.get("fgsm") or []]
    return [f"<h2 id='robustness'>Robustness: {_e(rob['metric'])} under input perturbations</h2>",
            _table(["perturbation", "strength", rob["metric"], "drop"], rows),
            f"<p>{rob['rows']} test rows; strengths in {_e(rob['units'])}; noise on {rob['perturbed_features']} numeric feature(s).</p>"]


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    head = "" if not any(columns) else "<tr>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{_e(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table>{head}{body}</table>"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _e(v: Any) -> str:
    return html.escape(str(v))
