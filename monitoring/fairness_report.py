"""Stored fairness audits: JSON + HTML + PNG under `<data_dir>/audits/<UTC stamp>/`.

    audit.json   the audit (`FairnessAudit.to_dict()` + context), written last by atomic rename:
                 its presence marks a complete audit
    report.html  flags, tables by attribute and group, the chart, explanations
    rates.png    approval rate and approval-if-repaid by group, 95% bootstrap intervals as error bars

`latest_fairness_audit(data_dir)` returns the newest complete audit's JSON (None before the first).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from monitoring.fairness import FairnessAudit
from monitoring.monitor import latest_complete_dir

AUDITS_DIR: Final = "audits"
AUDIT_FILE: Final = "audit.json"
REPORT_FILE: Final = "report.html"
CHART_FILE: Final = "rates.png"


@dataclass(frozen=True)
class StoredAudit:
    """Where one stored audit's outputs are."""

    directory: Path
    json_path: Path
    report_path: Path
    chart_path: Path
    payload: dict[str, Any]


def audits_root(data_dir: Path) -> Path:
    """Folder holding one sub-folder per audit."""
    return data_dir / AUDITS_DIR


def _write_json_atomic(payload: Mapping[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def render_rates_png(payload: Mapping[str, Any], path: Path) -> Path:
    """Approval rate and approval-if-repaid by group with 95% CI error bars, one panel per attribute."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attributes = list(payload["attributes"].values())
    panels = max(len(attributes), 1)
    fig, axes = plt.subplots(
        panels, 1, figsize=(8, 1.2 + 0.45 * sum(len(a["groups"]) + 1 for a in attributes))
    )
    axes_list = list(axes) if panels > 1 else [axes]
    for ax, attribute in zip(axes_list, attributes, strict=False):
        groups = attribute["groups"]
        names = [f"{g['group']} (n={g['n']})" for g in groups]
        ys = list(range(len(groups)))
        for offset, metric, colour in (
            (-0.18, "approval_rate", "tab:blue"),
            (0.18, "approval_if_repaid", "tab:green"),
        ):
            values, low, high, colours = [], [], [], []
            for g in groups:
                v = g["values"].get(metric)
                lo, hi = g["ci"].get(metric, [None, None])
                v = math.nan if v is None else v
                values.append(v)
                low.append(0.0 if lo is None or math.isnan(v) else max(v - lo, 0.0))
                high.append(0.0 if hi is None or math.isnan(v) else max(hi - v, 0.0))
                colours.append(colour if g["status"] == "judged" else "lightgrey")
            ax.barh(
                [y + offset for y in ys],
                [0.0 if math.isnan(v) else v for v in values],
                height=0.34,
                xerr=[low, high],
                color=colours,
                capsize=2,
                label=metric.replace("_", " "),
            )
        ax.set_yticks(ys)
        ax.set_yticklabels(names, fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_title(attribute["attribute"], fontsize=9, loc="left")
        ax.invert_yaxis()
    axes_list[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Approval by group (grey: too small to judge; bars: 95% bootstrap CI)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(value: Any, pct: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if pct else f"{value:.3f}"


def proxy_text(proxy: Mapping[str, Any]) -> str:
    """One proxy as text: 'land_mu: lower values → female (strength 0.91, AUC 0.09)'."""
    strength = proxy.get("strength")
    if strength is None:
        strength = max(proxy["auc"], 1.0 - proxy["auc"])
    direction = proxy.get("describe") or f"→ {proxy['group']}"
    return f"{proxy['feature']}: {direction} (strength {strength:.2f}, AUC {proxy['auc']:.2f})"


def render_html(payload: Mapping[str, Any], path: Path, chart: Path | None) -> Path:
    """A self-contained HTML report (chart embedded as base64 PNG)."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Fairness audit</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}"
        "td:first-child{text-align:left}.small{color:#999}.fail{color:#b00;font-weight:bold}</style>",
        "</head><body>",
        f"<h1>Fairness audit — {'PASS' if payload['passed'] else 'FLAGGED'}</h1>",
        f"<p>{payload['n']} applications, {payload['n_labelled']} with observed outcomes; groups under "
        f"{payload['min_group_size']} are too small to judge; {payload['n_boot']} bootstrap replicates. "
        f"Created {esc(str(payload.get('created_at', '')))}.</p>",
    ]
    if payload.get("warnings"):
        parts.append("<h2>Protected attributes used as model inputs</h2><ul>")
        parts += [f"<li class='fail'>⚠ {esc(w)}</li>" for w in payload["warnings"]]
        parts.append("</ul>")
    if payload["flags"]:
        parts.append("<h2>Flags</h2><ul>")
        parts += [f"<li class='fail'>{esc(f['message'])}</li>" for f in payload["flags"]]
        parts.append("</ul>")
    if chart is not None:
        encoded = base64.b64encode(chart.read_bytes()).decode("ascii")
        parts.append(f"<img alt='approval by group' src='data:image/png;base64,{encoded}'>")
    columns = (
        ("approval_rate", True),
        ("approval_ratio", False),
        ("approval_if_repaid", True),
        ("approval_if_defaulted", True),
        ("auc", False),
        ("mean_pd", True),
        ("default_rate", True),
        ("calibration_gap", True),
        ("mean_score", False),
    )
    for attribute in payload["attributes"].values():
        parts.append(
            f"<h2>{esc(attribute['attribute'])}</h2><p>most-favoured group: "
            f"{esc(str(attribute['reference_group']))}</p><table><tr><th>group</th><th>n</th>"
            "<th>labelled</th><th>status</th>" + "".join(f"<th>{c}</th>" for c, _ in columns) + "</tr>"
        )
        for g in attribute["groups"]:
            cls = "" if g["status"] == "judged" else " class='small'"
            cells = []
            for metric, pct in columns:
                value = g["values"].get(metric)
                lo, hi = g["ci"].get(metric, [None, None])
                text = _fmt(value, pct) if metric != "mean_score" or value is None else f"{value:.1f}"
                if lo is not None and hi is not None and metric != "mean_score":
                    text += f" <span class='small'>[{_fmt(lo, pct)}, {_fmt(hi, pct)}]</span>"
                cells.append(f"<td>{text}</td>")
            parts.append(
                f"<tr{cls}><td>{esc(g['group'])}</td><td>{g['n']}</td><td>{g['n_labelled']}</td>"
                f"<td>{esc(g['status'])}</td>{''.join(cells)}</tr>"
            )
        parts.append("</table>")
    if payload.get("offers"):
        parts += _offers_html(payload["offers"])
    if payload.get("explanations"):
        parts.append("<h2>Explaining the gaps</h2>")
        for attribute, entry in payload["explanations"].items():
            parts.append(
                f"<h3>{esc(attribute)}</h3><p>Top single-feature proxies (strength = max(AUC, 1 − AUC): "
                "0.5 no information, 1.0 a perfect proxy either way):</p><ul>"
            )
            parts += [f"<li>{esc(proxy_text(p))}</li>" for p in entry.get("proxies", [])]
            parts.append("</ul>")
            points = entry.get("reason_group_points")
            if points:
                reasons = list(next(iter(points.values())).keys())
                parts.append(
                    "<table><tr><th>group</th>" + "".join(f"<th>{esc(r)}</th>" for r in reasons) + "</tr>"
                )
                for group, row in points.items():
                    row_cells = "".join(f"<td>{row[r]:.1f}</td>" for r in reasons)
                    parts.append(f"<tr><td>{esc(group)}</td>{row_cells}</tr>")
                parts.append("</table>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


# The offers' columns in the report: (metric, zh, en, format).
OFFER_METRICS: Final = (
    ("mean_rate", "平均年利率", "mean rate", "{:.2%}"),
    ("rate_gap_given_pd", "同风险段利率差", "rate gap given PD band", "{:+.2%}"),
    ("mean_limit_cny", "平均额度（元）", "mean limit (CNY)", "{:,.0f}"),
    ("limit_ratio_given_pd", "同风险段额度比", "limit ratio given PD band", "{:.2f}"),
    ("eligible_share", "符合贴息条件占比", "share of the eligible", "{:.1%}"),
    ("subsidised_share", "获得贴息占比", "share of the subsidised", "{:.1%}"),
    ("subsidy_ratio", "贴息占比/条件占比", "subsidy share / eligible share", "{:.2f}"),
    ("recourse_found_share", "拒绝者有改进方案的比例", "declined with a plan", "{:.0%}"),
    ("recourse_median_cost_cny", "改进方案成本中位数（元）", "median plan cost (CNY)", "{:,.0f}"),
    ("recourse_median_months", "改进方案所需月数中位数", "median plan months", "{:.0f}"),
)


def _offers_html(offers: Mapping[str, Any]) -> list[str]:
    """The offers' section: by group, rate and limit given PD band, subsidies, recourse (zh/en)."""
    esc = html.escape
    counts = offers["counts"]
    parts = [
        "<h2>分组贷款条件、贴息与改进方案 · Offers by group, subsidies and recourse</h2>",
        f"<p>{counts['offers']:,} offers, {counts['subsidy_eligible']:,} applications eligible for a "
        f"subsidy, {counts['subsidised']:,} subsidised, {counts['declined']:,} declined "
        f"({counts['declined_with_plan']:,} with a plan). Rates and limits are compared with other groups "
        f"within PD bands {esc(', '.join(offers['pd_bands']))}. "
        "利率与额度在同一违约概率段内与其他群体比较。</p>",
    ]
    parts += [f"<p class='small'>{esc(note)}</p>" for note in offers["notes"]]

    def cell(group: Mapping[str, Any], metric: str, spec: str) -> str:
        value = group["values"].get(metric)
        if value is None:
            return "<td>-</td>"
        text = spec.format(value)
        lo, hi = group["ci"].get(metric, [None, None])
        if lo is not None and hi is not None:
            text += f" <span class='small'>[{spec.format(lo)}, {spec.format(hi)}]</span>"
        return f"<td>{text}</td>"

    heads = "".join(f"<th>{zh}<br>{en}</th>" for _, zh, en, _ in OFFER_METRICS)
    for attribute, groups in offers["attributes"].items():
        parts.append(
            f"<h3>{esc(attribute)}</h3><table><tr><th>group</th><th>n</th><th>offers</th>"
            f"<th>eligible</th><th>subsidised</th><th>declined</th>{heads}</tr>"
        )
        for g in groups:
            cls = "" if g["status"] == "judged" else " class='small'"
            cells = "".join(cell(g, metric, spec) for metric, _, _, spec in OFFER_METRICS)
            parts.append(
                f"<tr{cls}><td>{esc(g['group'])}</td><td>{g['n']}</td><td>{g['n_offers']}</td>"
                f"<td>{g['n_eligible']}</td><td>{g['n_subsidised']}</td><td>{g['n_declined']}</td>{cells}</tr>"
            )
        parts.append("</table>")
    return parts


def write_fairness_audit(
    audit: FairnessAudit,
    data_dir: Path,
    *,
    context: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    chart: bool = True,
) -> StoredAudit:
    """Store `audit` under `<data_dir>/audits/<UTC stamp>/` (see the module doc)."""
    now = now or datetime.now(UTC)
    directory = audits_root(data_dir) / now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    directory.mkdir(parents=True, exist_ok=False)
    payload = audit.to_dict()
    payload["created_at"] = now.isoformat()
    payload.update(dict(context or {}))
    chart_path = directory / CHART_FILE
    rendered = render_rates_png(payload, chart_path) if chart and payload["attributes"] else None
    report = render_html(payload, directory / REPORT_FILE, rendered)
    payload["outputs"] = {
        "directory": str(directory),
        "report": str(report),
        "chart": None if rendered is None else str(rendered),
    }
    json_path = directory / AUDIT_FILE
    _write_json_atomic(payload, json_path)
    return StoredAudit(directory, json_path, report, chart_path, payload)


def latest_fairness_audit(data_dir: Path) -> dict[str, Any] | None:
    """The newest complete audit's JSON, or None before the first audit."""
    latest = latest_complete_dir(audits_root(data_dir), AUDIT_FILE)
    if latest is None:
        return None
    loaded: dict[str, Any] = json.loads((latest / AUDIT_FILE).read_text(encoding="utf-8"))
    return loaded
