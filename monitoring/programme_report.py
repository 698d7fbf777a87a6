"""The allocation report of a subsidy programme: JSON + HTML (zh/en, chart inlined) + the list of
subsidised applications, under `<data_dir>/programmes/<programme id>/<UTC stamp>/` unless told.

    allocation.json   the run: inputs counted, each rule's figures, the solver's status and bound,
                      the protected profile reads (written last, by atomic rename)
    report.html       the comparison table (integer program vs first come first served vs lowest PD
                      first), budget by county, reach by group, the chart, the reads
    allocation.png    households reached and budget used by rule; share of each group by rule
    subsidised.csv    the integer program's choice: application, member, period, subsidy, expected
                      loss (never a protected attribute)

Every run also appends its protected reads to `<data_dir>/programmes/profile_uses.jsonl`, the batch
side of the audit trail (the online side is the decision log's `programme_profile_uses` table).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from coopscore.files import private_dir
from monitoring.programme_allocation import AllocationRun, rule_summary
from monitoring.render import html_table, png_data_uri

REPORT_JSON: Final = "allocation.json"
REPORT_HTML: Final = "report.html"
CHART: Final = "allocation.png"
CHOSEN_CSV: Final = "subsidised.csv"
USES_LEDGER: Final = "profile_uses.jsonl"

# (key, 中文, English, kind) of the comparison table's rows.
COMPARISON_ROWS: Final = (
    ("households", "覆盖户数", "households reached", "int"),
    ("value", "目标值", "objective value", "num"),
    ("subsidy_cny", "贴息支出（元）", "budget used (CNY)", "cny"),
    ("budget_used_share", "预算使用率", "share of budget used", "pct"),
    ("expected_loss_cny", "预期损失（元）", "expected loss (CNY)", "cny"),
    ("loss_used_share", "损失上限使用率", "share of loss ceiling", "pct"),
    ("mean_pd", "平均违约概率", "mean PD of the subsidised", "pct"),
    ("mean_amount_cny", "平均贷款金额（元）", "mean loan of the subsidised (CNY)", "cny"),
    ("seconds", "用时（秒）", "time (s)", "num"),
)
SHARE_GROUPS: Final = (
    ("returning_youth", "true", "返乡青年", "returning youth"),
    ("left_behind_woman", "true", "留守妇女", "left-behind women"),
    ("gender", "female", "女性", "women"),
    ("first_loan", "true", "首次贷款", "first loan"),
)


def programmes_root(data_dir: Path) -> Path:
    """Folder of allocation runs and the batch reads ledger."""
    return data_dir / "programmes"


def report_payload(run: AllocationRun, created_at: datetime) -> dict[str, Any]:
    """The run as JSON: programme, inputs counted, each rule's figures, protected reads."""
    p = run.loaded.programme
    rules = [rule_summary(run, a) for a in run.allocations]
    return {
        "programme": {
            "id": p.id,
            "version": p.version,
            "name": p.name.model_dump(),
            "file": str(run.loaded.path),
            "sha256": run.loaded.sha256,
            "objective": p.objective.value,
            "share": p.subsidy.share,
            "reference_annual_rate": p.subsidy.reference_annual_rate,
            "lgd": p.loss_ceiling.lgd,
            "periods": [
                {"id": x.id, "start": x.start.isoformat(), "end": x.end.isoformat()} for x in p.periods
            ],
        },
        "created_at": created_at.isoformat(),
        "source": run.candidates.source,
        "applications": {
            "read": run.candidates.read,
            "eligible": len(run.eligible),
            "excluded": dict(sorted(run.candidates.excluded.items(), key=lambda kv: -kv[1])),
            "notes": run.candidates.notes,
        },
        "rules": rules,
        "solver": {
            "name": "HiGHS",
            "status": run.allocations[0].status,
            "bound": run.allocations[0].bound,
            "gap": run.allocations[0].gap,
            "seconds": run.allocations[0].seconds,
        },
        "profile_uses": run.profile_uses,
    }


def write_report(run: AllocationRun, data_dir: Path, out: Path | None = None) -> tuple[dict[str, Any], Path]:
    """Write the run's JSON, HTML, chart and chosen list; append its reads to the ledger."""
    created_at = datetime.now(UTC)
    payload = report_payload(run, created_at)
    folder = out or programmes_root(data_dir) / run.loaded.programme.id / created_at.strftime(
        "%Y%m%dT%H%M%S%fZ"
    )
    private_dir(folder)
    chart = render_chart(payload, folder / CHART)
    chosen = run.allocations[0].chosen
    subsidised = run.eligible.loc[
        chosen,
        ["application_id", "member_id", "period", "applied_at", "pd", "subsidy_cny", "expected_loss_cny"],
    ]
    subsidised.to_csv(folder / CHOSEN_CSV, index=False)
    render_html(payload, folder / REPORT_HTML, chart)
    payload["files"] = {
        "json": str(folder / REPORT_JSON),
        "html": str(folder / REPORT_HTML),
        "chart": str(chart),
        "subsidised": str(folder / CHOSEN_CSV),
    }
    _append_uses(programmes_root(data_dir) / USES_LEDGER, payload, folder)
    tmp = folder / f".{REPORT_JSON}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(folder / REPORT_JSON)
    return payload, folder


def _append_uses(ledger: Path, payload: Mapping[str, Any], folder: Path) -> None:
    """One JSON line per rule and field read in this run (append-only)."""
    private_dir(ledger.parent)
    programme = payload["programme"]
    with ledger.open("a", encoding="utf-8") as handle:
        for use in payload["profile_uses"]:
            line = {
                "used_at": payload["created_at"],
                "programme_id": programme["id"],
                "programme_version": programme["version"],
                "rule": use["rule"],
                "field": use["field"],
                "count": use["count"],
                "run": str(folder),
            }
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")


def _share(rule: Mapping[str, Any], attribute: str, group: str) -> float:
    for row in rule["by_group"]:
        if row["attribute"] == attribute and row["group"] == group:
            return float(row["share"] or 0.0)
    return 0.0


def render_chart(payload: Mapping[str, Any], path: Path) -> Path:
    """Two panels: households reached and budget used by rule; share of each group by rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = payload["rules"]
    names = [r["rule"] for r in rules]
    colours = ["#2e7d32", "#1565c0", "#ef6c00"][: len(rules)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100)
    try:
        bars = left.bar(range(len(rules)), [r["households"] for r in rules], color=colours)
        for bar, rule in zip(bars, rules, strict=True):
            used = rule["budget_used_share"] or 0.0
            left.annotate(
                f"{rule['households']:,}\n{used:.0%} of budget",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        left.set_xticks(range(len(rules)), [n.replace(" (HiGHS)", "\n(HiGHS)") for n in names], fontsize=8)
        left.set_ylabel("households reached")
        left.set_title("Households reached by rule", fontsize=10)
        left.margins(y=0.25)
        width = 0.8 / max(len(rules), 1)
        for i, (rule, colour) in enumerate(zip(rules, colours, strict=True)):
            xs = [j + (i - (len(rules) - 1) / 2) * width for j in range(len(SHARE_GROUPS))]
            right.bar(
                xs,
                [_share(rule, a, g) for a, g, _, _ in SHARE_GROUPS],
                width,
                color=colour,
                label=rule["rule"],
            )
        right.set_xticks(range(len(SHARE_GROUPS)), [en for _, _, _, en in SHARE_GROUPS], fontsize=8)
        right.set_ylabel("share of subsidised households")
        right.set_title("Who is reached, by rule", fontsize=10)
        right.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pct":
        return f"{float(value):.1%}"
    if kind == "cny":
        return f"{float(value):,.2f}"
    return f"{float(value):,.3f}" if isinstance(value, float) else str(value)


def comparison_rows(payload: Mapping[str, Any]) -> list[dict[str, str]]:
    """The comparison table: one row per figure, one column per rule (as the console prints it)."""
    rows = []
    for key, zh, en, kind in COMPARISON_ROWS:
        row = {"figure": f"{en} · {zh}"}
        for rule in payload["rules"]:
            row[rule["rule"]] = _fmt(rule[key], kind)
        rows.append(row)
    for attribute, group, zh, en in SHARE_GROUPS:
        row = {"figure": f"share: {en} · 占比：{zh}"}
        for rule in payload["rules"]:
            row[rule["rule"]] = _fmt(_share(rule, attribute, group), "pct")
        rows.append(row)
    return rows


def _by_rule_table(
    rules: Sequence[Mapping[str, Any]],
    key: str,
    headers: Mapping[str, str],
    fixed: Callable[[Mapping[str, Any]], dict[str, Any]],
    cell: Callable[[Mapping[str, Any]], str],
    unit: str,
) -> str:
    """One row per line of each rule's `key` list (same order in every rule): the `fixed` columns,
    then one `cell` per rule."""
    rows = []
    for i, line in enumerate(rules[0][key]):
        row = fixed(line)
        for rule in rules:
            row[rule["rule"]] = cell(rule[key][i])
        rows.append(row)
    names = [r["rule"] for r in rules]
    return html_table(rows, [*headers, *names], [*headers.values(), *(f"{n} {unit}" for n in names)])


def render_html(payload: Mapping[str, Any], path: Path, chart: Path | None) -> Path:
    """One self-contained page (no CDN, the chart inlined), in Chinese and English."""
    esc = html.escape
    programme = payload["programme"]
    rules: Sequence[Mapping[str, Any]] = payload["rules"]
    names = [r["rule"] for r in rules]
    solver = payload["solver"]
    apps = payload["applications"]
    parts = [
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>",
        f"<title>{esc(programme['id'])} allocation</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
        "margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:13px}</style></head><body>",
        f"<h1>贴息分配 · Interest-subsidy allocation: {esc(programme['name']['zh'])} · "
        f"{esc(programme['name']['en'])}</h1>",
        f"<p class='note'>项目 programme <b>{esc(programme['id'])}</b> v{programme['version']} "
        f"(sha256 {esc(programme['sha256'][:12])}…) · 目标 objective: {esc(programme['objective'])} · "
        f"贴息比例 share {programme['share']:.0%} · "
        f"参考利率 reference rate {programme['reference_annual_rate']:.2%} · "
        f"LGD {programme['lgd']:.0%} · {esc(payload['created_at'])}</p>",
        f"<p>来源 source: {esc(payload['source'])} · 读取 read {apps['read']:,} · "
        f"符合条件 eligible {apps['eligible']:,}</p>",
        "<h2>方法对比 · Rules compared</h2>",
        html_table(comparison_rows(payload), ["figure", *names], ["figure · 指标", *names]),
        f"<p class='note'>整数规划 integer program: HiGHS, status <b>{esc(str(solver['status']))}</b>, "
        f"bound {_fmt(solver['bound'], 'num')}, gap {_fmt(solver['gap'], 'pct')} (no allocation within "
        "these budgets and this loss ceiling is worth more than the bound). 先到先得 first come first "
        "served: by application time, what online reservations do. 低违约概率优先 lowest PD first.</p>",
    ]
    if chart is not None and chart.exists():
        parts.append(f"<img alt='households reached and group shares by rule' src='{png_data_uri(chart)}'/>")
    parts.append("<h2>各县预算 · Budget by county and period</h2>")
    parts.append(
        _by_rule_table(
            rules,
            "by_county",
            {
                "county_id": "县 county",
                "period": "期 period",
                "budget_cny": "预算 budget (CNY)",
                "eligible": "符合条件 eligible",
            },
            lambda line: {k: line[k] for k in ("county_id", "period", "budget_cny", "eligible")},
            lambda mine: f"{mine['households']:,} · {_fmt(mine['subsidy_cny'], 'cny')}",
            "户 · 元 households · CNY",
        )
    )
    parts.append("<h2>各群体覆盖 · Reach by group</h2>")
    parts.append(
        _by_rule_table(
            rules,
            "by_group",
            {"attribute": "属性 attribute", "group": "群体 group", "eligible": "符合条件 eligible (share)"},
            lambda line: {
                "attribute": line["attribute"],
                "group": line["group"],
                "eligible": f"{line['eligible']:,} ({_fmt(line['eligible_share'], 'pct')})",
            },
            lambda mine: f"{mine['households']:,} ({_fmt(mine['share'], 'pct')})",
            "(share)",
        )
    )
    parts.append("<h2>排除的申请 · Applications left out</h2>")
    parts.append(
        html_table([{"reason": k, "count": v} for k, v in apps["excluded"].items()], ["reason", "count"])
        if apps["excluded"]
        else "<p>none</p>"
    )
    parts += [f"<p class='note'>{esc(n)}</p>" for n in apps["notes"]]
    parts.append(
        "<h2>受保护信息的使用 · Protected profile reads (targeting, not scoring)</h2>"
        "<p class='note'>资格规则读取成员档案中的受保护字段仅用于项目定向，从不进入评分模型；"
        "每次读取均按规则计数并记录。"
        " Eligibility reads these protected profile fields to target the programme's groups; the model "
        "never sees them. Each read is counted by rule and logged.</p>"
    )
    parts.append(html_table(payload["profile_uses"], ["rule", "field", "count"]))
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
