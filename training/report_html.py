"""The model report: one self-contained HTML page of the analyst tables (`training.reports`).

Plots are PNGs inlined as data URIs and there is no script or stylesheet from anywhere: the page opens
offline, from an e-mail attachment or the MLflow artifact view. Headings are in English and Chinese.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from monitoring.render import html_table, png_data_uri
from training.plots import _pyplot
from training.plots import _save as save_figure
from training.reports import AnalystReport

REPORT_FILE: Final = "model_report.html"
TABLES_FILE: Final = "tables.json"

# (anchor, English, Chinese): every section the page holds, in order.
SECTIONS: Final = (
    (
        "discrimination",
        "Discrimination: KS, Gini, AUC with 95% interval",
        "区分能力：KS、基尼系数、AUC 及 95% 置信区间",
    ),
    (
        "contenders",
        "Contenders: approval at the target bad rate, with 95% intervals",
        "对比模型：目标坏账率下的可批准比例及 95% 置信区间",
    ),
    ("deciles", "Gains table (deciles, riskiest first)", "十分位收益表（风险由高到低）"),
    ("grades", "Bad rate by grade", "各等级坏账率"),
    ("calibration", "Calibration by grade", "各等级校准"),
    ("cutoffs", "Cutoff table", "分数线表"),
    ("decisions", "Decisions at the policy thresholds vs outcome", "政策阈值下的决策与实际结果"),
    ("woe", "WOE / IV binning of the scorecard baseline, with points", "评分卡基线的 WOE/IV 分箱及分值"),
    ("importance", "Importance: mean |points| per input", "变量重要性：平均绝对分值"),
    ("psi", "Stability: PSI of each input, training vs out-of-time", "稳定性：各变量训练期与样本外 PSI"),
    ("plots", "Run plots", "模型图表"),
)


def _pct(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * float(value):.{digits}f}%"


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def _formatted(rows: Sequence[Mapping[str, Any]], formats: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{k: formats[k](v) if k in formats else v for k, v in row.items()} for row in rows]


def _save(figure: Any, path: Path) -> Path:
    """The run's plot writer (training.plots), at the report's resolution."""
    return save_figure(figure, path, dpi=100)


def gains_plot(report: AnalystReport, path: Path) -> Path:
    """Bad rate per decile (bars) and the cumulative capture of bads (line)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    deciles = [row["decile"] for row in report.deciles]
    axis.bar(
        deciles, [row["bad_rate"] for row in report.deciles], color="#c0392b", alpha=0.7, label="bad rate"
    )
    axis.set(xlabel="decile (1 = riskiest)", ylabel="bad rate")
    twin = axis.twinx()
    twin.plot(deciles, [row["capture"] for row in report.deciles], marker="o", label="cumulative capture")
    twin.set(ylabel="cumulative share of bads", ylim=(0, 1.05))
    axis.set_title("Gains, out-of-time")
    return _save(figure, path)


def grade_plot(report: AnalystReport, path: Path) -> Path:
    """Observed bad rate (bars) and mean PD (markers) per grade."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    names = [row["grade"] for row in report.grades]
    observed = [0.0 if math.isnan(row["bad_rate"]) else row["bad_rate"] for row in report.grades]
    colours = ["#c0392b" if row["breaks_order"] else "#4c72b0" for row in report.grades]
    axis.bar(names, observed, color=colours, alpha=0.8, label="observed bad rate")
    axis.plot(names, [row["mean_pd"] for row in report.grades], "ko", label="mean PD")
    axis.set(xlabel="grade (red: breaks the order)", ylabel="rate")
    axis.set_title("Bad rate and mean PD by grade, out-of-time")
    axis.legend()
    return _save(figure, path)


def cutoff_plot(report: AnalystReport, path: Path) -> Path:
    """Approval rate against the expected and observed bad rate among the approved."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    approval = [row["approval_rate"] for row in report.cutoffs]
    axis.plot(
        approval, [row["expected_bad_rate"] for row in report.cutoffs], marker="o", label="expected (mean PD)"
    )
    axis.plot(approval, [row["observed_bad_rate"] for row in report.cutoffs], marker="s", label="observed")
    axis.set(xlabel="approval rate", ylabel="bad rate among approved")
    axis.set_title("Cutoffs, out-of-time")
    axis.legend()
    return _save(figure, path)


def _contenders_table(report: AnalystReport) -> str:
    """Every contender on the same OOT rows: what a committee trades off (issue 15)."""
    if not report.contenders:
        return "<p>No contenders in this run · 本次无对比模型</p>"

    def bracket(row: Mapping[str, Any], key: str, fmt: Any) -> str:
        interval = row.get(f"{key}_95")
        low_high = f" [{fmt(interval[0])}, {fmt(interval[1])}]" if interval else ""
        return f"{fmt(row[key])}{low_high}"

    rows = [
        {
            "contender": row["label"],
            "auc": bracket(row, "auc", _num),
            "thin_auc": _num(row["thin_auc"]),
            "thick_auc": _num(row["thick_auc"]),
            "approval_rate": bracket(row, "approval_rate", _pct),
        }
        for row in report.contenders
    ]
    target = f"{report.target_bad_rate:.0%}"
    note = (
        f"<p>Approval rate: the largest share of OOT applicants, lowest PD first, whose observed bad "
        f"rate stays at or below {target}; intervals are percentile bootstraps over the same "
        f"resampled applications for every contender · 可批准比例：按违约概率从低到高，在样本外观测坏账率"
        f"不超过 {target} 的前提下可批准的最大申请比例；区间为对同一组重抽样申请的百分位自助法区间。</p>"
    )
    return note + html_table(
        rows,
        ["contender", "auc", "thin_auc", "thick_auc", "approval_rate"],
        [
            "contender · 模型",
            "AUC [95%]",
            "thin-file AUC · 薄档案",
            "thick-file AUC · 厚档案",
            f"approval at {target} bad [95%] · 可批准比例",
        ],
    )


def _heading(anchor: str) -> str:
    _, english, chinese = next(s for s in SECTIONS if s[0] == anchor)
    return f'<h2 id="{anchor}">{html.escape(english)} · {html.escape(chinese)}</h2>'


def _image(path: Path | None, alt: str) -> str:
    if path is None or not path.exists():
        return ""
    return f'<img alt="{html.escape(alt)}" src="{png_data_uri(path)}" style="max-width:100%"/>'


def render_report(
    report: AnalystReport,
    directory: Path,
    *,
    title: str,
    context: Mapping[str, Any],
    run_plots: Mapping[str, Path] | None = None,
) -> Path:
    """Write `model_report.html` into `directory` (its PNGs beside it, also inlined) and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    gains = gains_plot(report, directory / "gains.png") if report.deciles else None
    grades = grade_plot(report, directory / "grades.png") if report.grades else None
    cutoffs = cutoff_plot(report, directory / "cutoffs.png") if report.cutoffs else None
    pct, num = _pct, _num
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:16px;max-width:1100px}"
        "td,th{padding:2px 8px;text-align:right}th{background:#eee}table{border-collapse:collapse;"
        "margin-bottom:12px}.flag{color:#c0392b;font-weight:bold}</style></head><body>",
        f"<h1>{html.escape(title)} · 模型报告</h1>",
        "<p>"
        + " · ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in context.items())
        + "</p>",
        "<ul>"
        + "".join(f'<li><a href="#{a}">{html.escape(e)} · {html.escape(z)}</a></li>' for a, e, z in SECTIONS)
        + "</ul>",
        _heading("discrimination"),
    ]
    rows = [{"slice": "out-of-time", **report.auc}]
    if report.validation_auc is not None:
        rows.append({"slice": "validation", **report.validation_auc})
    parts.append(
        f"<p>{report.rows:,} applications, {report.bads:,} bads · KS {num(report.ks)} · "
        f"Gini {num(report.gini)}</p>"
    )
    parts.append(
        html_table(
            _formatted(rows, {"auc": num, "low": num, "high": num}),
            ["slice", "auc", "low", "high", "resamples_used", "seed"],
            ["slice", "AUC", "95% low", "95% high", "bootstrap resamples", "seed"],
        )
    )
    parts += [_heading("contenders"), _contenders_table(report)]
    parts += [_heading("deciles"), _image(gains, "gains")]
    parts.append(
        html_table(
            _formatted(
                report.deciles,
                {
                    "score_min": lambda v: num(v, 0),
                    "score_max": lambda v: num(v, 0),
                    "mean_pd": pct,
                    "bad_rate": pct,
                    "capture": pct,
                    "lift": lambda v: num(v, 2),
                    "cumulative_lift": lambda v: num(v, 2),
                },
            ),
            [
                "decile",
                "n",
                "score_min",
                "score_max",
                "mean_pd",
                "bads",
                "bad_rate",
                "capture",
                "lift",
                "cumulative_lift",
            ],
            [
                "decile",
                "count",
                "min score",
                "max score",
                "mean PD",
                "bads",
                "bad rate",
                "cum. capture of bads",
                "lift",
                "cum. lift",
            ],
        )
    )
    breaks = report.grade_order_breaks
    verdict = (
        f'<p class="flag">Grades breaking the order (bad rate below the better grade\'s): '
        f"{', '.join(breaks)} · 等级坏账率未单调上升</p>"
        if breaks
        else "<p>The bad rate rises grade by grade · 坏账率随等级单调上升</p>"
    )
    grade_formats = {"share": pct, "bad_rate": pct, "mean_pd": pct, "calibration_gap": pct}
    parts += [_heading("grades"), verdict, _image(grades, "grades")]
    parts.append(
        html_table(
            _formatted(report.grades, {**grade_formats, "breaks_order": lambda v: "BREAKS" if v else ""}),
            ["grade", "n", "share", "bads", "bad_rate", "breaks_order"],
            ["grade", "count", "share", "bads", "bad rate", "order"],
        )
    )
    parts.append(_heading("calibration"))
    parts.append(
        html_table(
            _formatted(report.grades, grade_formats),
            ["grade", "n", "mean_pd", "bad_rate", "calibration_gap"],
            ["grade", "count", "mean PD", "observed bad rate", "mean PD − observed"],
        )
    )
    parts += [
        _heading("cutoffs"),
        "<p>Approve at score ≥ cutoff · 分数不低于分数线即批准</p>",
        _image(cutoffs, "cutoffs"),
    ]
    parts.append(
        html_table(
            _formatted(
                report.cutoffs,
                {
                    "cutoff": lambda v: num(v, 0),
                    "approval_rate": pct,
                    "expected_bad_rate": lambda v: pct(v, 2),
                    "observed_bad_rate": lambda v: pct(v, 2),
                    "bads_declined_share": pct,
                },
            ),
            [
                "cutoff",
                "approved",
                "approval_rate",
                "expected_bad_rate",
                "observed_bad_rate",
                "bads_declined_share",
            ],
            [
                "cutoff score",
                "approved",
                "approval rate",
                "expected bad rate",
                "observed bad rate",
                "bads turned away",
            ],
        )
    )
    policy = report.policy
    parts += [
        _heading("decisions"),
        f"<p>Approve at PD ≤ {pct(policy.get('approve_max_pd'))}, decline at PD ≥ "
        f"{pct(policy.get('decline_min_pd'))}, otherwise review; thin files go to review.</p>",
        html_table(
            _formatted(report.decisions, {"share": pct, "bad_rate": pct, "share_of_bads": pct}),
            ["decision", "goods", "bads", "n", "share", "bad_rate", "share_of_bads"],
            ["decision", "good", "bad", "total", "share", "bad rate", "share of all bads"],
        ),
        _heading("woe"),
    ]
    if report.woe is None:
        parts.append("<p>No scorecard baseline in this run · 本次未训练评分卡基线</p>")
    else:
        parts.append(f"<p>Base points {num(report.woe['base_points'], 1)} (the model's score scale)</p>")
        parts.append(
            html_table(
                _formatted(report.woe["iv"], {"iv": lambda v: num(v, 4), "coefficient": lambda v: num(v, 3)}),
                ["feature", "iv", "bins", "coefficient"],
                ["input", "IV", "bins", "coefficient"],
            )
        )
        parts.append(
            html_table(
                _formatted(
                    report.woe["bins"],
                    {
                        "share": pct,
                        "bad_rate": pct,
                        "woe": lambda v: num(v, 3),
                        "iv": lambda v: num(v, 4),
                        "points": lambda v: num(v, 1),
                    },
                ),
                ["feature", "bin", "count", "share", "goods", "bads", "bad_rate", "woe", "iv", "points"],
                ["input", "bin", "count", "share", "good", "bad", "bad rate", "WOE", "IV", "points"],
            )
        )
    parts += [
        _heading("importance"),
        html_table(
            _formatted(
                report.importance,
                {"mean_abs_points": lambda v: num(v, 2), "mean_points": lambda v: num(v, 2)},
            ),
            ["feature", "mean_abs_points", "mean_points"],
            ["input", "mean |points|", "mean points"],
        ),
        _heading("psi"),
        "<p>Bands: &lt; 0.1 stable, 0.1–0.25 watch, &gt; 0.25 shift</p>",
        html_table(
            _formatted(report.psi, {"psi": lambda v: num(v, 4), "noise_floor": lambda v: num(v, 4)}),
            ["feature", "psi", "band", "noise_floor"],
            ["input", "PSI", "band", "noise floor"],
        ),
        _heading("plots"),
    ]
    for name, path in (run_plots or {}).items():
        parts.append(_image(path, name))
    parts.append("</body></html>")
    path = directory / REPORT_FILE
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
