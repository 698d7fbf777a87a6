"""Rendering of a drift check: the PNG of the most shifted features and the HTML report page.

The HTML report is one file: our summary (status, reasons, top features chart, score/PD PSI,
segments, performance by cohort) on top, then Evidently's full data-drift report when there is one.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monitoring.psi import PSI_SHIFT, PSI_WATCH

_BAND_COLOURS = {"stable": "#4c9a2a", "watch": "#e0a100", "shift": "#c0392b"}
_STATUS_COLOURS = {"stable": "#4c9a2a", "watch": "#e0a100", "drift": "#c0392b"}


def render_top_features_png(top_features: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Horizontal bar chart of the top features' PSI with the 0.1 / 0.25 band lines (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [str(f["name"]) for f in top_features][::-1]
    values = [float(f["psi"]) for f in top_features][::-1]
    colours = [_BAND_COLOURS.get(str(f.get("band")), "#777777") for f in top_features][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.4 * max(len(names), 3) + 1.2), dpi=100)
    try:
        ax.barh(names, values, color=colours)
        ax.axvline(PSI_WATCH, color=_BAND_COLOURS["watch"], linestyle="--", linewidth=1, label="watch 0.1")
        ax.axvline(PSI_SHIFT, color=_BAND_COLOURS["shift"], linestyle="--", linewidth=1, label="shift 0.25")
        ax.set_xlabel("PSI (current window vs reference sample)")
        ax.set_title("Most shifted features")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def html_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None
) -> str:
    """An HTML table of `rows` (one cell per column; `headers` relabel the columns)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in (headers or columns))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def png_data_uri(path: Path) -> str:
    """A PNG as a `data:` URI, so a page shows it with no file beside it and no network."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def summary_section(summary: Mapping[str, Any], chart_png: Path | None = None) -> str:
    """Our part of the report as an HTML fragment (self-contained: the chart is inlined)."""
    status = str(summary.get("status", "stable"))
    colour = _STATUS_COLOURS.get(status, "#777777")
    parts = [
        '<section id="coopscore-drift" style="font-family:sans-serif;margin:16px">',
        "<h1>coopscore drift monitoring</h1>",
        f'<p>Status: <b style="color:{colour}">{html.escape(status.upper())}</b> · '
        f"{summary.get('n_current')} current rows vs {summary.get('n_reference')} reference rows · "
        f"{html.escape(str(summary.get('created_at', '')))}</p>",
    ]
    window = summary.get("window")
    if window:
        parts.append(f"<p>Window: {html.escape(str(window))}</p>")
    reasons = list(summary.get("reasons", []))
    if reasons:
        items = "".join(f"<li>{html.escape(str(r))}</li>" for r in reasons[:50])
        parts.append(f"<h2>Why</h2><ul>{items}</ul>")
    if chart_png is not None and chart_png.exists():
        parts.append(f'<img alt="top shifted features" src="{png_data_uri(chart_png)}"/>')
    parts.append("<h2>Top shifted features</h2>")
    parts.append(html_table(summary.get("top_features", []), ["name", "psi", "band", "alarm"]))
    scores = list(summary.get("scores", {}).values())
    if scores:
        parts.append("<h2>Score and PD</h2>")
        parts.append(html_table(scores, ["name", "psi", "band", "supported", "alarm"]))
    segments = [s for s in summary.get("segments", []) if s.get("status") != "stable" or s.get("new")]
    if segments:
        rows = [
            {**s, "top": ", ".join(f"{f['name']} {f['psi']:.3f}" for f in s.get("top_features", [])[:3])}
            for s in segments
        ]
        parts.append("<h2>Segments</h2>")
        parts.append(
            html_table(rows, ["column", "value", "n_reference", "n_current", "status", "new", "top"])
        )
    performance = summary.get("performance") or []
    if performance:
        parts.append("<h2>Performance by monthly application cohort</h2>")
        parts.append(
            html_table(
                performance,
                [
                    "cohort",
                    "applications",
                    "outcomes",
                    "defaults",
                    "observed_default_rate",
                    "mean_pd",
                    "mean_pd_labelled",
                    "auc",
                ],
            )
        )
    parts.append("</section><hr/>")
    return "\n".join(parts)


def write_report_html(
    summary: Mapping[str, Any], path: Path, *, chart_png: Path | None, evidently_html: Path | None
) -> Path:
    """One HTML file: our summary section, then Evidently's report body (if it was produced)."""
    section = summary_section(summary, chart_png)
    if evidently_html is not None and evidently_html.exists():
        page = evidently_html.read_text(encoding="utf-8")
        # Its script bundle may contain the text "<body": anchor on the report's root element.
        anchor = page.find('<div id="root_metric')
        at = page.rfind("<body", 0, anchor) if anchor >= 0 else page.find("<body")
        end = page.find(">", at) if at >= 0 else -1
        page = page[: end + 1] + section + page[end + 1 :] if end >= 0 else section + page
    else:
        page = (
            '<!DOCTYPE html><html><head><meta charset="utf-8"><title>coopscore drift</title>'
            f"<style>td,th{{padding:2px 8px;text-align:left}}</style></head><body>{section}</body></html>"
        )
    path.write_text(page, encoding="utf-8")
    return path
