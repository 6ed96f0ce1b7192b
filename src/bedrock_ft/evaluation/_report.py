"""Report files: report.json, records.jsonl, report.md and report.html (metrics plotted with
matplotlib, the PNG saved beside it and embedded), each written atomically."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bedrock_ft._io import atomic_write_bytes, atomic_write_text
from bedrock_ft.evaluation._comparison import ComparisonReport
from bedrock_ft.evaluation._comparison import fmt as _fmt

__all__ = ["write_reports"]

_SHORT = {
    "exact_match_score": "exact match",
    "quasi_exact_match_score": "quasi-exact match",
    "f1_score": "F1",
    "precision_over_words": "precision",
    "recall_over_words": "recall",
    "bertscore": "BERTScore",
}


def _plot(comparison: ComparisonReport) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(comparison.reports)
    metrics = [m for m in _SHORT if any(m in r.scores for r in comparison.reports.values())]
    fig = Figure(figsize=(1.6 + 1.4 * len(metrics), 3.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        scores = comparison.reports[name].scores
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(metrics))]
        ys = [scores.get(m) for m in metrics]
        bars = ax.bar(xs, [y or 0.0 for y in ys], width, label=name)
        ax.bar_label(bars, labels=[_fmt(y) for y in ys], fontsize=7, padding=1)
    ax.set_xticks(range(len(metrics)), [_SHORT[m] for m in metrics])
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("score (mean over records)")
    ax.set_title(f"QA accuracy on {comparison.dataset}")
    ax.legend(loc="upper center", ncol=max(1, len(names)), fontsize=8, frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _worst(rows: Sequence[Mapping[str, Any]], n: int) -> list[Mapping[str, Any]]:
    """Failed records first, then the lowest F1 (ties: lowest exact match), in record order."""

    def key(row: Mapping[str, Any]) -> tuple[float, float, int]:
        s = row.get("scores")
        if s is None:
            return (-1.0, -1.0, int(row["index"]))
        return (s.get("f1_score", 0.0), s.get("exact_match_score", 0.0), int(row["index"]))

    return sorted(rows, key=key)[:n]


def _metric_table(comparison: ComparisonReport) -> tuple[list[str], list[list[str]]]:
    metrics = [m for m in _SHORT if any(m in r.scores for r in comparison.reports.values())]
    head = ["model", *[_SHORT[m] for m in metrics], "records", "errors"]
    body = [
        [name, *[_fmt(r.scores.get(m)) for m in metrics], str(r.record_count), str(r.error_count)]
        for name, r in comparison.reports.items()
    ]
    return head, body


def _delta_rows(comparison: ComparisonReport) -> list[list[str]]:
    pct = round(comparison.confidence * 100)
    out = []
    for name, metrics in comparison.deltas.items():
        for metric, d in metrics.items():
            out.append(
                [
                    f"{name} - {comparison.baseline}",
                    _SHORT.get(metric, metric),
                    f"{d['delta']:+.3f}",
                    f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] ({pct}%)",
                    "yes" if d["significant"] else "no",
                ]
            )
    return out


def _markdown(
    comparison: ComparisonReport, rows: Mapping[str, Sequence[Mapping[str, Any]]], worst: int
) -> str:
    def table(head: list[str], body: list[list[str]]) -> list[str]:
        cells = [head, ["---"] * len(head), *body]
        return [
            "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in cells
        ]

    lines = [f"# QA accuracy on {comparison.dataset}", "", f"Records: `{comparison.dataset_uri}`", ""]
    lines += table(*_metric_table(comparison))
    if comparison.deltas:
        lines += ["", "## Differences from the baseline", ""]
        lines += table(["comparison", "metric", "delta", "interval", "excludes 0"], _delta_rows(comparison))
    for name, report in comparison.reports.items():
        cats = {k.split("/", 1)[1]: v for k, v in report.metrics.items() if "/" in k}
        if cats:
            lines += ["", f"## {name}: per category", ""]
            lines += table(
                ["category", "exact match", "F1"],
                [[c, _fmt(v.get("exact_match_score")), _fmt(v.get("f1_score"))] for c, v in cats.items()],
            )
        if worst:
            lines += ["", f"## {name}: worst-scoring records", ""]
            lines += table(
                ["line", "question", "target", "output", "F1"],
                [
                    [
                        str(r["line"]),
                        str(r["question"])[:120],
                        str(r["target"])[:80],
                        str(r["output"])[:160] if r.get("error") is None else f"ERROR: {r['error']}"[:160],
                        _fmt((r.get("scores") or {}).get("f1_score")),
                    ]
                    for r in _worst(rows[name], worst)
                ],
            )
    return "\n".join(lines) + "\n"


def _html(
    comparison: ComparisonReport, rows: Mapping[str, Sequence[Mapping[str, Any]]], worst: int, png: bytes
) -> str:
    e = html.escape

    def table(head: list[str], body: list[list[str]]) -> str:
        th = "".join(f"<th>{e(h)}</th>" for h in head)
        trs = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in body)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>QA accuracy on {e(comparison.dataset)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;"
        "text-align:left;vertical-align:top}th{background:#f4f4f4}.err{color:#a00}</style></head><body>",
        f"<h1>QA accuracy on {e(comparison.dataset)}</h1>",
        f"<p>Records: <code>{e(comparison.dataset_uri)}</code></p>",
        f"<img alt='metrics per model' src='data:image/png;base64,{base64.b64encode(png).decode()}'>",
        table(*_metric_table(comparison)),
    ]
    if comparison.deltas:
        parts += ["<h2>Differences from the baseline</h2>"]
        parts += [table(["comparison", "metric", "delta", "interval", "excludes 0"], _delta_rows(comparison))]
    for name, report in comparison.reports.items():
        cats = {k.split("/", 1)[1]: v for k, v in report.metrics.items() if "/" in k}
        if cats:
            parts.append(f"<h2>{e(name)}: per category</h2>")
            parts.append(
                table(
                    ["category", "exact match", "F1"],
                    [[c, _fmt(v.get("exact_match_score")), _fmt(v.get("f1_score"))] for c, v in cats.items()],
                )
            )
        if not worst:
            continue
        parts.append(f"<h2>{e(name)}: worst-scoring records</h2>")
        body = []
        for r in _worst(rows[name], worst):
            output = f"ERROR: {r['error']}" if r.get("error") is not None else str(r["output"])
            body.append(
                [
                    str(r["line"]),
                    str(r["question"]),
                    str(r["target"]),
                    output,
                    _fmt((r.get("scores") or {}).get("f1_score")),
                ]
            )
        parts.append(table(["line", "question", "target", "output", "F1"], body))
    parts.append("</body></html>")
    return "\n".join(parts)


def _clean(value: Any) -> Any:
    """NaN (a metric with no scored record) as null: report.json stays strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_reports(
    directory: str | Path,
    comparison: ComparisonReport,
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    worst: int,
) -> dict[str, str]:
    """Write the four report files (and metrics.png) into ``directory``; returns their paths by kind."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "records": out / "records.jsonl",
        "json": out / "report.json",
        "markdown": out / "report.md",
        "html": out / "report.html",
        "plot": out / "metrics.png",
    }
    lines = [
        json.dumps(_clean({"model": name, **row}), default=str) for name, rs in rows.items() for row in rs
    ]
    atomic_write_text(files["records"], "\n".join(lines) + "\n")
    png = _plot(comparison)
    atomic_write_bytes(files["plot"], png)
    atomic_write_text(files["markdown"], _markdown(comparison, rows, worst))
    atomic_write_text(files["html"], _html(comparison, rows, worst, png))
    paths = {k: str(v) for k, v in files.items()}
    data = _clean(comparison.model_copy(update={"files": paths}).model_dump(mode="json"))
    atomic_write_text(files["json"], json.dumps(data, indent=2, default=str, allow_nan=False) + "\n")
    return paths
