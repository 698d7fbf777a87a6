"""`coopscore audit ...`: fairness audits from the command line.

`coopscore audit fairness --model champion|VERSION [--model-name NAME] --data oot|decision-log|FILE`:
- `--data oot`: the model's own out-of-time rows, stored with its training run (the split it was
  judged on, whatever config it was trained with), scored by the model; groups from its protected
  columns for a model trained on a table (`train --table ... --protected COL`), else from the
  member-profile table.
- `--data decision-log`: the served decisions as logged (PD and decision of the model that made
  them; `--model VERSION` keeps that version's rows) with outcomes posted to /v1/outcomes; groups
  from the member-profile table. The model explains gaps by its reason-group points.
- `--data FILE --model ...`: a table of feature rows with a `defaulted` column, scored by the model.

Without `--model`, `--data FILE --protected COL ...` audits a table of decisions (CSV or Parquet:
one row per application with a PD column, a decision (approve/review/decline) or approved column, a
nullable `defaulted` column and the protected group columns). With `--profiles FILE` (the
`member_profiles` table) the group columns are built from the profile instead (the data then needs
`member_id` and `applied_at`); `--protected` picks among them (default: all protected groups and the
thin/thick file split). A `birth_year` column given as `--protected` becomes `age_band` when the data
has `applied_at`. When gaps are flagged, the other columns of the file are scanned as proxies.

Outputs go to `<data_dir>/audits/<UTC stamp>/` (JSON, HTML, PNG). Exit code 0 when no judged group
breaks a threshold, 3 when some do, 2 for bad input (including an unknown --model-name, or a table
model trained without --protected for `--data oot`). `monitoring.audit_job` does the work; heavy
imports happen inside the command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from coopscore.cli.output import EXIT_BAD_INPUT, AuditJsonOption, emit, fail

EXIT_FLAGGED = 3

app = typer.Typer(help="Fairness audits.", no_args_is_help=True)


def _split(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated names as one list."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _print_audit(payload: dict[str, Any]) -> None:
    from monitoring.fairness_report import proxy_text

    out = Console(width=None if sys.stdout.isatty() else 150)
    verdict = "[bold green]PASS[/bold green]" if payload["passed"] else "[bold red]FLAGGED[/bold red]"
    out.print(
        f"{verdict}: {payload['n']:,} applications, {payload['n_labelled']:,} with outcomes; "
        f"min group size {payload['min_group_size']}"
    )
    table = Table(title="approval and outcomes by group")
    for column in (
        "attribute",
        "group",
        "n",
        "approval",
        "ratio",
        "approve|repaid",
        "approve|default",
        "AUC",
        "cal gap",
        "status",
    ):
        table.add_column(column, justify="left" if column in ("attribute", "group", "status") else "right")

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for attribute in payload["attributes"].values():
        for g in attribute["groups"]:
            v = g["values"]
            table.add_row(
                attribute["attribute"],
                g["group"],
                f"{g['n']:,}",
                pct(v["approval_rate"]),
                num(v["approval_ratio"]),
                pct(v["approval_if_repaid"]),
                pct(v["approval_if_defaulted"]),
                num(v["auc"]),
                pct(v["calibration_gap"]),
                g["status"],
            )
    out.print(table)
    if payload.get("offers"):
        out.print(_offers_table(payload["offers"]))
        for note in payload["offers"]["notes"]:
            out.print(f"  {note}", soft_wrap=True)
    for flag in payload["flags"][:20]:
        out.print(f"  • {flag['message']}")
    for warning in payload.get("warnings", []):
        out.print(f"  [bold yellow]warning[/bold yellow]: {warning}", soft_wrap=True)
    for attribute, entry in payload.get("explanations", {}).items():
        top = "; ".join(proxy_text(p) for p in entry.get("proxies", [])[:5])
        if top:
            out.print(f"  proxies for {attribute}: {top}", soft_wrap=True)
    out.print(f"report: {payload['outputs']['report']}")


def _offers_table(offers: dict[str, Any]) -> Table:
    """Offers by group: rate and limit given PD band, subsidy against eligibility, recourse."""
    table = Table(title=f"offers by group (PD bands {', '.join(offers['pd_bands'])})")
    heads = ("attribute", "group", "offers", "rate", "gap|PD", "limit", "ratio|PD", "eligible",
             "subsidised", "subsidy/elig.", "declined", "plan", "median cost", "months")  # fmt: skip
    for column in heads:
        table.add_column(column, justify="left" if column in ("attribute", "group") else "right")

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for attribute, groups in offers["attributes"].items():
        for g in groups:
            v = g["values"]
            table.add_row(
                attribute,
                g["group"] + ("" if g["status"] == "judged" else " (small)"),
                f"{g['n_offers']:,}",
                fmt(v["mean_rate"], ".2%"),
                fmt(None if v["rate_gap_given_pd"] is None else v["rate_gap_given_pd"] * 1e4, "+.0f") + "bp",
                fmt(v["mean_limit_cny"], ",.0f"),
                fmt(v["limit_ratio_given_pd"], ".2f"),
                fmt(v["eligible_share"], ".1%"),
                fmt(v["subsidised_share"], ".1%"),
                fmt(v["subsidy_ratio"], ".2f"),
                f"{g['n_declined']:,}",
                fmt(v["recourse_found_share"], ".0%"),
                fmt(v["recourse_median_cost_cny"], ",.0f"),
                fmt(v["recourse_median_months"], ".0f"),
            )
    return table


@app.command("fairness")
def fairness(
    data: Annotated[
        str,
        typer.Option(
            "--data", help="oot | decision-log | a table FILE (CSV / Parquet / JSON), e.g. --data oot"
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="registered model: champion, challenger or a VERSION number, e.g. --model challenger",
        ),
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option(
            "--model-name",
            help="registered model name of --model (default: settings.model_name), "
            "e.g. --model-name lender-a",
        ),
    ] = None,
    protected: Annotated[
        list[str] | None,
        typer.Option(
            "--protected", help="group column(s); repeat or comma-separate, e.g. --protected gender,age"
        ),
    ] = None,
    profiles: Annotated[
        Path | None,
        typer.Option(
            "--profiles",
            help="FILE: member_profiles table to build groups from, e.g. --profiles profiles.parquet",
        ),
    ] = None,
    pd_col: Annotated[
        str, typer.Option("--pd-col", help="decision table: the PD column, e.g. --pd-col prob_default")
    ] = "pd",
    decision_col: Annotated[
        str,
        typer.Option(
            "--decision-col",
            help="decision table: approve/review/decline column, e.g. --decision-col outcome",
        ),
    ] = "decision",
    approved_col: Annotated[
        str | None,
        typer.Option(
            "--approved-col",
            help="boolean approved column (instead of decisions), e.g. --approved-col granted",
        ),
    ] = None,
    label_col: Annotated[
        str, typer.Option("--label-col", help="the 0/1 default column (may be empty), e.g. --label-col bad")
    ] = "defaulted",
    score_col: Annotated[
        str | None, typer.Option("--score-col", help="decision table: a score column, e.g. --score-col score")
    ] = None,
    min_group_size: Annotated[
        int,
        typer.Option(
            "--min-group-size", min=1, help="smaller groups are shown, not judged, e.g. --min-group-size 50"
        ),
    ] = 100,
    n_boot: Annotated[
        int,
        typer.Option(
            "--n-boot", min=0, help="bootstrap replicates of the intervals (0: none), e.g. --n-boot 500"
        ),
    ] = 200,
    seed: Annotated[int, typer.Option("--seed", help="bootstrap seed, e.g. --seed 1")] = 0,
    min_approval_ratio: Annotated[
        float, typer.Option("--min-approval-ratio", help="four-fifths screen, e.g. --min-approval-ratio 0.8")
    ] = 0.8,
    max_eo_difference: Annotated[
        float,
        typer.Option(
            "--max-eo-difference",
            help="approval among repaid: best group minus this one, e.g. --max-eo-difference 0.05",
        ),
    ] = 0.05,
    max_calibration_gap: Annotated[
        float,
        typer.Option(
            "--max-calibration-gap",
            help="|mean PD - default rate| per group, e.g. --max-calibration-gap 0.02",
        ),
    ] = 0.02,
    require_ci: Annotated[
        bool, typer.Option("--require-ci", help="flag only when the 95% CI is wholly beyond a limit")
    ] = False,
    max_rate_gap: Annotated[
        float,
        typer.Option(
            "--max-rate-gap",
            help="offers: a group's rate above others' in the same PD bands, e.g. --max-rate-gap 0.005",
        ),
    ] = 0.005,
    min_limit_ratio: Annotated[
        float,
        typer.Option(
            "--min-limit-ratio",
            help="offers: a group's limit over others' in the same PD bands, e.g. --min-limit-ratio 0.8",
        ),
    ] = 0.8,
    min_subsidy_ratio: Annotated[
        float,
        typer.Option(
            "--min-subsidy-ratio",
            help="subsidy share over eligible share, e.g. --min-subsidy-ratio 0.8",
        ),
    ] = 0.8,
    recourse_sample: Annotated[
        int,
        typer.Option(
            "--recourse-sample",
            min=0,
            help="declines without logged recourse that the model plans for (seeded sample), "
            "e.g. --recourse-sample 2000",
        ),
    ] = 2000,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="where audits/ goes (default: settings), e.g. --data-dir data/"),
    ] = None,
    as_json: AuditJsonOption = False,
) -> None:
    """Audit decisions by protected group: approval ratio, equal opportunity, calibration."""
    from coopscore.settings import get_settings
    from monitoring.audit_inputs import AuditInputError, DecisionColumns
    from monitoring.audit_job import run_fairness_audit
    from monitoring.fairness import FairnessThresholds
    from monitoring.offer_fairness import OfferThresholds
    from training.audit_oot import oot_inputs

    try:
        run = run_fairness_audit(
            get_settings(),
            data=data,
            model_ref=model,
            protected=_split(protected),
            profiles=profiles,
            columns=DecisionColumns(pd_col, decision_col, approved_col, label_col, score_col),
            thresholds=FairnessThresholds(
                min_approval_ratio, max_eo_difference, max_calibration_gap, require_ci=require_ci
            ),
            min_group_size=min_group_size,
            n_boot=n_boot,
            seed=seed,
            oot=oot_inputs,
            data_dir=data_dir,
            model_name=model_name,
            offer_thresholds=OfferThresholds(max_rate_gap, min_limit_ratio, min_subsidy_ratio),
            recourse_limit=recourse_sample,
        )
    except AuditInputError as error:
        fail(str(error), EXIT_BAD_INPUT, soft_wrap=True)  # one line, however long
    if as_json:
        emit(run.stored.payload)
    else:
        _print_audit(run.stored.payload)
    raise typer.Exit(0 if run.passed else EXIT_FLAGGED)
