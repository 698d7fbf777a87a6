"""`coopscore train / retrain / promote / models list / models sign`: the model lifecycle commands.

`training.job_setup` builds each job's config, data source and gates. Heavy modules (pandas,
LightGBM, MLflow) are imported inside the commands. Every command takes `--json` and then prints
exactly one JSON object on stdout; progress and tables go to stderr.

Exit codes (a scheduler can act on them):
    0   success: `train` registered a challenger; `retrain` / `promote` promoted it to champion
    10  kept: the challenger failed a gate and the champion stays
    11  no new data: `train` / `retrain` found this data, feature set and config already trained
        (nothing registered; the JSON names the existing version)
    12  insufficient data: too few labelled applications or defaults to train honestly
    13  nothing to promote: no challenger
    1   error (one line on stderr, and in the JSON object with --json; the traceback only with
        `coopscore --debug`)
    2   bad usage (e.g. a --model-name that is not registered), or a table that cannot be trained
        on as asked: a missing column (with the closest names), unparseable or ambiguous dates
        (with examples; use --time-format), a label that is not 0/1 without --bad-value, more
        than two label values without --good-value, a numeric protected column with many values
        and no --band, or a --band on a column not protected; a --config that does not validate
        (`bad_config`); a policy target no cutoff meets (`target_not_met`, with the best achievable
        value)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.table import Table

from coopscore.cli.output import (
    EXIT_BAD_INPUT,
    JsonOnStdoutOption,
    console,
    debug_enabled,
    emit,
    fail,
    internal_error,
    stages,
    stdout_kept_for_json,
)

if TYPE_CHECKING:
    import pandas as pd

    from coopscore.settings import Settings
    from training.config import TrainingConfig
    from training.job import JobSummary, TrainingSource

app = typer.Typer()
models_app = typer.Typer(help="Inspect the model registry; sign versions.", no_args_is_help=True)

ModelNameOption = Annotated[
    str | None,
    typer.Option(
        "--model-name",
        help="Registered model name (default: settings.model_name), e.g. --model-name lender-a.",
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TrainingConfig as JSON, or YAML for .yaml/.yml (splits, booster, scale, policy, "
        "calibration, gates); every field is in docs/config.md and --print-config. "
        "E.g. --config training.yaml.",
        exists=True,
    ),
]
TargetBadRateOption = Annotated[
    float | None,
    typer.Option(
        "--target-bad-rate",
        min=0.0001,
        max=0.9999,
        help="Approve up to the PD at which at most this share of approved loans go bad, chosen on "
        "held-out PDs; e.g. --target-bad-rate 0.08. Also the OOT approval-rate metric's target.",
    ),
]
TargetApprovalOption = Annotated[
    float | None,
    typer.Option(
        "--target-approval-rate",
        min=0.0001,
        max=1.0,
        help="Approve this share of applicants (lowest PD first), chosen on held-out PDs; e.g. "
        "--target-approval-rate 0.6. Not with --target-bad-rate.",
    ),
]
ReviewBandOption = Annotated[
    float | None,
    typer.Option(
        "--review-band",
        min=0.0,
        max=1.0,
        help="With a target: the share of applicants just above the approve cutoff sent to a loan "
        "officer, the rest declined; e.g. --review-band 0.15 (default 0.2).",
    ),
]
PrintConfigOption = Annotated[
    bool,
    typer.Option(
        "--print-config",
        help="Print the effective TrainingConfig (after --config and flags) as JSON on stdout and exit "
        "0 without training; field descriptions go to stderr (docs/config.md).",
    ),
]
MarkdownOption = Annotated[
    bool,
    typer.Option("--markdown", help="With --print-config: print the config reference (docs/config.md)."),
]
TruthOption = Annotated[
    Path | None,
    typer.Option(
        "--truth",
        help="A simulated world's folder (or its truth/ folder): adds the oracle AUC of the true PD, "
        "e.g. --truth world/.",
        exists=True,
    ),
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Train as of this instant (ISO-8601, UTC if no offset); default: latest data. "
        "E.g. --as-of 2024-07-01.",
    ),
]
OotOption = Annotated[
    int | None,
    typer.Option("--oot-months", min=1, help="Out-of-time test window (months), e.g. --oot-months 4."),
]
CalibrationOption = Annotated[
    int | None,
    typer.Option(
        "--calibration-months", min=1, help="Calibration window (months), e.g. --calibration-months 3."
    ),
]
ValidationOption = Annotated[
    int | None,
    typer.Option(
        "--validation-months", min=1, help="Early-stopping window (months), e.g. --validation-months 2."
    ),
]
TrainMonthsOption = Annotated[
    int | None,
    typer.Option(
        "--train-months",
        min=1,
        help="Training window (months; default: all earlier), e.g. --train-months 18.",
    ),
]

FairnessOption = Annotated[
    bool,
    typer.Option(
        "--fairness/--no-fairness",
        help="Add the fairness gate (groups: a table model's --protected columns, else the "
        "member_profiles table; reported as skipped when there are none).",
    ),
]


def _as_of(text: str | None) -> pd.Timestamp | None:
    if text is None:
        return None
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except ValueError as error:
        raise typer.BadParameter(f"not an ISO-8601 time: {text!r}", param_hint="--as-of") from error
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _monotone(items: list[str] | None) -> dict[str, int]:
    out = {}
    for item in items or []:
        name, _, sign = item.partition("=")
        if sign not in ("+1", "1", "-1", "0"):
            raise typer.BadParameter(f"expected COLUMN=+1|-1|0, got {item!r}", param_hint="--monotone")
        out[name] = int(sign)
    return out


def _bands(items: list[str] | None) -> dict[str, tuple[float, ...]]:
    """`--band age:25,40,60` (repeatable) as {"age": (25.0, 40.0, 60.0)}."""
    out: dict[str, tuple[float, ...]] = {}
    for item in items or []:
        name, colon, text = item.partition(":")
        try:
            cuts = tuple(float(c) for c in text.split(",") if c.strip())
        except ValueError:
            cuts = ()
        if not colon or not name or not cuts:
            raise typer.BadParameter(
                f"expected COLUMN:CUT,CUT,... e.g. age:25,40,60, got {item!r}", param_hint="--band"
            )
        if name in out:
            raise typer.BadParameter(f"{name} is banded twice", param_hint="--band")
        out[name] = cuts
    return out


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _print_summary(summary: JobSummary) -> None:
    from training.evaluation import CONTENDERS

    if summary.comparison:
        table = Table(
            title=f"out-of-time comparison ({summary.metrics.get('oot_rows', '?')} applications, "
            f"{summary.metrics.get('oot_defaults', '?')} defaults)"
        )
        target = summary.metrics.get("target_bad_rate")
        approve = f"approvable at {target:.0%} bad [95%]" if isinstance(target, float) else "approvable"
        for column in ("", "AUC [95%]", "thin AUC", "thick AUC", "KS", "Brier", "ECE", approve):
            table.add_column(column, justify="right" if column else "left")
        for row in summary.comparison:
            table.add_row(
                CONTENDERS.get(row["contender"], row["contender"]),
                _with_interval(row["auc"], row.get("auc_95")),
                _number(row["thin_auc"], 3),
                _number(row["thick_auc"], 3),
                _number(row["ks"], 3),
                _number(row["brier"], 3),
                _number(row["ece"], 3),
                _with_interval(row["approval_rate"], row.get("approval_rate_95")),
            )
        console.print(table)
    family = summary.metrics.get("model_family")
    if isinstance(family, dict):
        console.print(f"model family: {family['chosen']} ({family.get('why', '')})")
    _print_policy(summary.metrics)
    if summary.data.get("inputs"):
        _print_inputs(summary.data["inputs"])
    if summary.mitigation:
        _print_mitigation(summary.mitigation)
    if summary.promotion:
        _print_gates(summary.promotion)
    colour = {0: "green", 10: "yellow", 11: "cyan"}.get(summary.exit_code, "red")
    console.print(f"[{colour}]{summary.status}[/{colour}]: {summary.message}")
    if summary.report:
        console.print(f"model report: {summary.report['path'] or summary.report['mlflow_artifact']}")


def _with_interval(value: Any, interval: Any) -> str:
    """`0.802 [0.741, 0.861]`, or the value alone when the run has no interval."""
    if not interval or any(v is None or math.isnan(v) for v in interval):
        return _number(value, 3)
    return f"{_number(value, 3)} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _print_policy(metrics: dict[str, Any]) -> None:
    """How the decision cutoffs and the calibration were chosen."""
    from models.cutoffs import describe_selection

    selection = metrics.get("policy")
    if selection:
        console.print(
            f"decision cutoffs ({selection.get('why', '')}): {describe_selection(selection)}", soft_wrap=True
        )
    if selection and selection.get("warning"):
        console.print(f"[yellow]warning[/yellow]: {selection['warning']}", soft_wrap=True)
    calibration = metrics.get("calibration")
    if calibration:
        fitted = calibration.get("fitted_on", {})
        console.print(
            f"calibration: {calibration['method']} on {fitted.get('rows', '?')} rows, "
            f"{fitted.get('defaults', '?')} defaults ({fitted.get('why', '')})",
            soft_wrap=True,
        )


def _print_inputs(inputs: dict[str, Any]) -> None:
    """Every row and column the table lost, and why; missing values per input."""
    console.print(f"rows: {inputs['rows_used']:,} used of {inputs['rows_read']:,} read")
    for item in inputs["rows_excluded"]:
        detail = f": {item['detail']}" if item["detail"] else ""
        console.print(
            f"  [yellow]rows excluded[/yellow]: {item['count']:,} ({item['reason']}{detail})", soft_wrap=True
        )
    for item in inputs["columns_excluded"]:
        console.print(
            f"  [yellow]column excluded[/yellow]: {item['column']} ({item['reason']}: {item['detail']})",
            soft_wrap=True,
        )
    for name, missing in inputs["missing"].items():
        if missing["count"]:
            console.print(f"  missing values: {name} {missing['count']:,} ({missing['share']:.1%})")
    _print_protected(inputs)


def _print_protected(inputs: dict[str, Any]) -> None:
    """Protected columns: audit only or model input, their bands, and inputs that proxy them."""
    protected, as_inputs = inputs.get("protected", []), inputs.get("protected_inputs", [])
    audit_only = [c for c in protected if c not in as_inputs]
    if audit_only:
        console.print(f"  protected, audit only: {', '.join(audit_only)}")
    if as_inputs:
        console.print(
            f"  [bold yellow]warning[/bold yellow]: protected AND model inputs (--protected-input): "
            f"{', '.join(as_inputs)}; the model card and every audit flag them",
            soft_wrap=True,
        )
    for name, band in inputs.get("bands", {}).items():
        counts = ", ".join(f"{label} {n:,}" for label, n in band["counts"].items())
        console.print(f"  {name} banded for audits ({band['source']}): {counts}", soft_wrap=True)
    for item in inputs.get("proxy_warnings", []):
        console.print(
            f"  [bold yellow]warning[/bold yellow]: input {item['input']} alone predicts "
            f"{item['attribute']}={item['group']} (strength {item['strength']:.2f}: {item['describe']}); "
            "it encodes a protected attribute",
            soft_wrap=True,
        )


def _print_mitigation(report: dict[str, Any]) -> None:
    if report.get("first_promotion"):
        _print_gates(report["first_promotion"])
    table = Table(title=f"mitigation of v{report['of_version']}: proxy features dropped")
    for column in ("feature", "group", "alone AUC", "points gap"):
        table.add_column(column, justify="left" if column in ("feature", "group") else "right")
    for proxy in report["proxies"]:
        table.add_row(
            proxy["feature"],
            f"{proxy['attribute']}={proxy['group']}",
            _number(proxy["auc"], 3),
            _number(proxy["points_gap"], 1),
        )
    console.print(table)
    console.print(
        f"OOT AUC {_number(report['auc_before'], 3)} -> {_number(report['auc_after'], 3)} "
        f"(cost {_number(report['auc_cost'], 3)})"
    )
    for option in report.get("threshold_optimizer", [])[1:]:
        console.print(
            f"for comparison, {option['name']}: AUC {_number(option['auc'], 3)}, "
            f"{'passes' if option['passed'] else 'fails'} the fairness thresholds ({option['note']})"
        )


def _print_gates(promotion: dict[str, Any]) -> None:
    table = Table(
        title=f"promotion gates: v{promotion['challenger_version']} vs champion "
        f"{promotion['champion_before'] or '(none)'}"
    )
    for column in ("gate", "result", "reason"):
        table.add_column(column)
    for gate in promotion["gates"]:
        mark = (
            "[yellow]skipped" if gate.get("skipped") else ("[green]pass" if gate["passed"] else "[red]FAIL")
        )
        table.add_row(gate["gate"], mark, gate["reason"])
    console.print(table)


@app.command("train")
def train_command(
    table: Annotated[
        Path | None,
        typer.Option(
            "--table",
            help="Train on a lender's own table (CSV, Parquet or JSON Lines) instead of the event log, "
            "e.g. --table applications.csv.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            "--label", help="Table: the outcome column, e.g. --label outcome (0/1, or see --bad-value)."
        ),
    ] = None,
    label_desc: Annotated[
        str | None,
        typer.Option(
            "--label-desc",
            help="Table: what the label means, for the model card, e.g. --label-desc '60+ days past "
            "due within 12 months'.",
        ),
    ] = None,
    time_column: Annotated[
        str | None, typer.Option("--time", help="Table: the application-time column, e.g. --time applied_on.")
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id", help="Table: the application-id column, e.g. --id application_id.")
    ] = None,
    protected: Annotated[
        list[str] | None,
        typer.Option(
            "--protected",
            help="Table: a protected column, excluded from the model and kept for audits (numbers "
            "banded, see --band). Repeatable, e.g. --protected gender --protected age.",
        ),
    ] = None,
    protected_input: Annotated[
        list[str] | None,
        typer.Option(
            "--protected-input",
            help="Table: a protected column that is ALSO a model input (e.g. --protected-input age); "
            "the model card and every audit flag it. Repeatable.",
        ),
    ] = None,
    band: Annotated[
        list[str] | None,
        typer.Option(
            "--band",
            help="Table: audit bands of a numeric protected column, COLUMN:CUT,CUT,... left-closed, "
            "e.g. --band age:25,40,60 gives <25, 25-39, 40-59, 60+. Age-like columns default to "
            "25,40,60; other numeric protected columns with more than 12 values need one. Repeatable.",
        ),
    ] = None,
    monotone: Annotated[
        list[str] | None,
        typer.Option(
            "--monotone",
            help="Table: COLUMN=+1 (raises risk) or COLUMN=-1 (lowers it). Repeatable, "
            "e.g. --monotone late_payments=+1.",
        ),
    ] = None,
    time_format: Annotated[
        str | None,
        typer.Option(
            "--time-format",
            help="Table: strftime format of the time column, e.g. --time-format %d/%m/%Y; every value "
            "must match. "
            "Without it, ISO-like times are parsed and anything else (or day/month-ambiguous) is exit 2.",
        ),
    ] = None,
    bad_value: Annotated[
        str | None,
        typer.Option(
            "--bad-value",
            help="Table: the label value that means default, e.g. --bad-value default (or 1, yes). "
            "Needed unless the label is 0/1.",
        ),
    ] = None,
    good_value: Annotated[
        list[str] | None,
        typer.Option(
            "--good-value",
            help="Table: a label value that means repaid; needed when the label has more than two "
            "values (rows with other values are excluded and counted). Repeatable, e.g. --good-value repaid.",
        ),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option(
            "--keep",
            help="Table: use this column as an input even if it looks constant, id-like or leaky. "
            "Repeatable, e.g. --keep branch.",
        ),
    ] = None,
    truth: TruthOption = None,
    as_of: AsOfOption = None,
    config_path: ConfigOption = None,
    oot_months: OotOption = None,
    calibration_months: CalibrationOption = None,
    validation_months: ValidationOption = None,
    train_months: TrainMonthsOption = None,
    target_bad_rate: TargetBadRateOption = None,
    target_approval_rate: TargetApprovalOption = None,
    review_band: ReviewBandOption = None,
    print_config: PrintConfigOption = False,
    markdown: MarkdownOption = False,
    model_name: ModelNameOption = None,
    as_json: JsonOnStdoutOption = False,
) -> None:
    """Train, evaluate against the baselines, and register a challenger (no promotion).

    Decision cutoffs: fixed PDs on the event log unless a target is given; on a --table, the
    target bad rate (default 5%) unless --target-approval-rate or a fixed policy in --config.

    With --table, every row and column left out is listed with its reason (console, --json
    `data.inputs`, the model card and the MLflow run's `data/inputs.json`): rows without a label or
    time, constant columns, id-like text, and columns that alone separate the label (AUC >= 0.99).
    Protected columns (--protected, --protected-input) become audit groups (numbers in bands); an
    input that alone predicts a protected group (strength max(AUC, 1-AUC) >= 0.80) is warned about.
    Data already trained with this feature set and config (the same training key: the table's
    fingerprint covers its options) registers nothing: exit 11 `no_new_data`, naming that version.
    Exit codes: 0 registered, 11 no new data, 12 insufficient data, 2 bad usage or bad table input,
    1 error.
    """
    from training.job_setup import table_source
    from training.table_inputs import TableInputError

    if table is not None and (label is None or time_column is None):
        raise typer.BadParameter("--table needs --label and --time", param_hint="--table")
    table_only = (
        label,
        time_column,
        id_column,
        protected,
        monotone,
        time_format,
        bad_value,
        good_value,
        keep,
        protected_input,
        band,
        label_desc,
    )
    if table is None and any(table_only):
        raise typer.BadParameter(
            "--label/--time/--id/--protected/--protected-input/--band/--monotone/--time-format/"
            "--bad-value/--good-value/--keep/--label-desc need --table"
        )
    flags = _ConfigFlags(
        config_path,
        oot_months,
        calibration_months,
        validation_months,
        train_months,
        target_bad_rate,
        target_approval_rate,
        review_band,
    )
    if print_config or markdown:
        _print_config(
            flags, "table" if table is not None else "event_log", markdown=markdown, as_json=as_json
        )
    config = flags.config(as_json)
    if table is not None:
        assert label is not None and time_column is not None  # checked above
        table_input = table_source(
            table,
            label=label,
            time_column=time_column,
            id_column=id_column,
            protected=tuple(protected or ()),
            monotone=_monotone(monotone),
            time_format=time_format,
            bad_value=bad_value,
            good_values=tuple(good_value or ()),
            keep=tuple(keep or ()),
            protected_inputs=tuple(protected_input or ()),
            bands=_bands(band),
            label_description=label_desc,
        )
        try:
            table_input.load()  # check the table before anything is set up: bad input is exit 2, at once
        except TableInputError as error:
            _fail(as_json, EXIT_BAD_INPUT, "bad_input", str(error))
        source: TrainingSource = table_input
        settings = _settings()
    else:
        settings, source = _event_log_source(config, as_of, truth, as_json)
    from training.job import train  # imported after the table's checks: it loads the model libraries

    try:
        with stdout_kept_for_json(as_json), stages(not as_json) as progress:
            summary, _ = train(
                source,
                config=config,
                tracking_uri=settings.tracking_uri,
                artifact_root=settings.artifact_root,
                model_name=model_name or settings.model_name,
                progress=progress,
                skip_if_trained=True,
                data_dir=settings.data_dir,
            )
    except Exception as error:
        _handle(error, as_json)
    _finish(summary, as_json)


@app.command("retrain")
def retrain_command(
    truth: TruthOption = None,
    as_of: AsOfOption = None,
    config_path: ConfigOption = None,
    oot_months: OotOption = None,
    calibration_months: CalibrationOption = None,
    validation_months: ValidationOption = None,
    train_months: TrainMonthsOption = None,
    target_bad_rate: TargetBadRateOption = None,
    target_approval_rate: TargetApprovalOption = None,
    review_band: ReviewBandOption = None,
    print_config: PrintConfigOption = False,
    markdown: MarkdownOption = False,
    model_name: ModelNameOption = None,
    fairness: FairnessOption = True,
    mitigate: Annotated[
        str,
        typer.Option(
            "--mitigate",
            help="When the fairness gate fails: 'drop-proxies' refits without the proxy "
            "features behind the gap and judges that model too; 'none' keeps the champion. "
            "E.g. --mitigate drop-proxies.",
        ),
    ] = "none",
    as_json: JsonOnStdoutOption = False,
) -> None:
    """Scheduled job: train on new data, register a challenger, promote it if the gates pass.

    Exit codes: 0 promoted, 10 kept champion, 11 no new data, 12 insufficient data, 1 error.
    """
    flags = _ConfigFlags(
        config_path,
        oot_months,
        calibration_months,
        validation_months,
        train_months,
        target_bad_rate,
        target_approval_rate,
        review_band,
    )
    if print_config or markdown:
        _print_config(flags, "event_log", markdown=markdown, as_json=as_json)
    from training.job import retrain
    from training.job_setup import fairness_gates

    config = flags.config(as_json)
    settings, source = _event_log_source(config, as_of, truth, as_json)
    if mitigate not in ("none", "drop-proxies"):
        raise typer.BadParameter("expected none or drop-proxies", param_hint="--mitigate")
    gates = fairness_gates(settings, config) if fairness else None
    try:
        with stdout_kept_for_json(as_json), stages(not as_json) as progress:
            summary = retrain(
                source,
                config=config,
                tracking_uri=settings.tracking_uri,
                artifact_root=settings.artifact_root,
                model_name=model_name or settings.model_name,
                gates=gates,
                progress=progress,
                mitigation="drop-proxies" if mitigate == "drop-proxies" else "none",
                data_dir=settings.data_dir,
            )
    except Exception as error:
        _handle(error, as_json)
    _finish(summary, as_json)


@app.command("promote")
def promote_command(
    version: Annotated[
        str | None,
        typer.Option(
            "--version", help="Version to judge (default: the 'challenger' alias), e.g. --version 3."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if a gate fails (needs --by and --reason).")
    ] = False,
    by: Annotated[
        str | None,
        typer.Option(
            "--by", help="Who forces the promotion (recorded), e.g. --by 'Li Wei, credit committee'."
        ),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            help="Why it is forced (recorded), e.g. --reason 'ECE interval reaches the noise floor'.",
        ),
    ] = None,
    max_auc_drop: Annotated[
        float,
        typer.Option(
            "--max-auc-drop", min=0, help="Allowed OOT AUC drop vs the champion, e.g. --max-auc-drop 0.01."
        ),
    ] = 0.005,
    max_ece: Annotated[
        float,
        typer.Option(
            "--max-ece", min=0, help="Largest allowed OOT expected calibration error, e.g. --max-ece 0.05."
        ),
    ] = 0.02,
    fairness: FairnessOption = True,
    min_approval_ratio: Annotated[
        float,
        typer.Option(
            "--min-approval-ratio",
            min=0,
            max=1,
            help="Fairness: four-fifths screen, e.g. --min-approval-ratio 0.8.",
        ),
    ] = 0.8,
    max_eo_difference: Annotated[
        float,
        typer.Option(
            "--max-eo-difference",
            min=0,
            max=1,
            help="Fairness: equal-opportunity difference, e.g. --max-eo-difference 0.05.",
        ),
    ] = 0.05,
    max_calibration_gap: Annotated[
        float,
        typer.Option(
            "--max-calibration-gap",
            min=0,
            max=1,
            help="Fairness: per-group calibration gap, e.g. --max-calibration-gap 0.03.",
        ),
    ] = 0.02,
    min_group_size: Annotated[
        int,
        typer.Option(
            "--min-group-size",
            min=1,
            help="Fairness: smaller groups are not judged, e.g. --min-group-size 50.",
        ),
    ] = 100,
    scorecard_margin: Annotated[
        float,
        typer.Option(
            "--scorecard-margin",
            min=0,
            help="Scorecard gate: fail when the upper 95% bound of AUC(model) - AUC(WOE scorecard) "
            "is below minus this (0: only a significantly worse model fails), e.g. --scorecard-margin 0.01.",
        ),
    ] = 0.0,
    scorecard_replicates: Annotated[
        int,
        typer.Option(
            "--scorecard-replicates",
            min=100,
            help="Scorecard gate: bootstrap replicates, e.g. --scorecard-replicates 2000.",
        ),
    ] = 1000,
    model_name: ModelNameOption = None,
    as_json: JsonOnStdoutOption = False,
) -> None:
    """Run the promotion gates on the challenger; make it champion if they all pass.

    Gates: OOT AUC vs the champion, calibration, declared directions, not worse than the WOE
    scorecard (paired bootstrap of the AUC difference), and fairness (skipped, saying why, when the
    model has no protected columns).
    Exit codes: 0 promoted (or forced), 10 kept champion, 13 no challenger, 2 unknown --model-name,
    1 error.
    """
    from training.config import FairnessGateConfig, GateConfig, TrainingConfig
    from training.job import ExitCode
    from training.job_setup import fairness_gates
    from training.promotion import NothingToPromoteError, promote

    if force and not (by and reason):
        raise typer.BadParameter("--force needs --by NAME and --reason TEXT", param_hint="--force")
    settings = _settings()
    gate_config = GateConfig(
        max_auc_drop=max_auc_drop,
        max_ece=max_ece,
        scorecard_margin=scorecard_margin,
        scorecard_replicates=scorecard_replicates,
        fairness=FairnessGateConfig(
            min_approval_ratio=min_approval_ratio,
            max_equal_opportunity_difference=max_eo_difference,
            max_calibration_gap=max_calibration_gap,
            min_group_size=min_group_size,
        ),
    )
    _check_model_name(settings, model_name, as_json)
    gates = fairness_gates(settings, TrainingConfig(gates=gate_config)) if fairness else None
    try:
        with stdout_kept_for_json(as_json):
            result = promote(
                settings.tracking_uri,
                model_name=model_name or settings.model_name,
                version=version,
                gates=gates,
                gate_config=gate_config,
                force=force,
                forced_by=by,
                force_reason=reason,
            )
    except NothingToPromoteError as error:
        _fail(as_json, ExitCode.NOTHING_TO_PROMOTE, "nothing_to_promote", str(error))
    except Exception as error:
        _handle(error, as_json)
    code = ExitCode.PROMOTED if result.promoted or result.status == "already_champion" else ExitCode.KEPT
    if as_json:
        emit({**result.to_dict(), "exit_code": int(code)})
    else:
        if result.gates:
            _print_gates(result.to_dict())
        console.print(
            f"{result.status}: champion is now {result.champion_after or '(none)'}"
            + (f" (forced by {result.forced_by}: {result.force_reason})" if result.forced_by else "")
        )
        if result.kept_champion_cannot_serve:
            console.print(f"[yellow]warning[/yellow]: {result.kept_champion_cannot_serve}")
        if result.signature is not None:
            _print_signature(result.challenger_version, result.signature)
    raise typer.Exit(int(code))


def _print_signature(version: str | None, signature: dict[str, Any]) -> None:
    """One line: signed with which key, or unsigned and what that gives up."""
    if signature.get("signed"):
        console.print(
            f"signed v{version} with key {signature['key_id']} "
            f"(manifest sha256 {str(signature['manifest_sha256'])[:16]}...)",
            soft_wrap=True,
        )
    else:
        console.print(
            f"[yellow]warning[/yellow]: v{version} not signed: {signature.get('note')}", soft_wrap=True
        )


@models_app.command("sign")
def sign_command(
    version: Annotated[
        str,
        typer.Option("--version", help="Version to sign (re-sign after a key rotation), e.g. --version 3."),
    ],
    model_name: ModelNameOption = None,
    as_json: JsonOnStdoutOption = False,
) -> None:
    """Sign a registered version with the current key (COOPSCORE_MODEL_SIGNING_KEY or ..._KEY_FILE).

    Its checksum tags are checked against the artifacts' bytes first: an altered version is never
    signed. Exit codes: 0 signed, 2 no signing key / unknown version or --model-name, 1 an
    artifact that does not match its checksum, or another error.
    """
    from datetime import UTC, datetime

    from models.registry import ArtifactIntegrityError, sign_version
    from models.signing import Keyring

    settings = _settings()
    _check_model_name(settings, model_name, as_json)
    name = model_name or settings.model_name
    try:
        keyring = Keyring.from_settings(settings)
    except ValueError as error:
        _fail(as_json, EXIT_BAD_INPUT, "bad_key", str(error))
    if keyring.current is None:
        _fail(
            as_json,
            EXIT_BAD_INPUT,
            "no_key",
            "no signing key: set COOPSCORE_MODEL_SIGNING_KEY or COOPSCORE_MODEL_SIGNING_KEY_FILE",
        )
    signed_at = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        with stdout_kept_for_json(as_json):
            check = sign_version(settings.tracking_uri, name, version, keyring.current, signed_at=signed_at)
    except KeyError:
        _fail(as_json, EXIT_BAD_INPUT, "bad_input", f"{name}: no version {version!r}")
    except ArtifactIntegrityError as error:
        _fail(as_json, 1, "integrity_error", f"{name} v{version}: {error}")
    except Exception as error:
        _handle(error, as_json)
    if as_json:
        emit({"model_name": name, "version": version, "signed_at": signed_at, **check.to_dict()})
        return
    _print_signature(version, check.to_dict())


@models_app.command("list")
def list_command(model_name: ModelNameOption = None, as_json: JsonOnStdoutOption = False) -> None:
    """Registered versions with aliases, OOT metrics and promotion status."""
    from coopscore.names import CHALLENGER, CHAMPION
    from models import mlflow_io
    from training.job_setup import tag_float, version_summary

    settings = _settings()
    if model_name is not None:  # the default name may simply have nothing registered yet
        _check_model_name(settings, model_name, as_json)
    model_name = model_name or settings.model_name
    versions = mlflow_io.list_versions(settings.tracking_uri, model_name)
    if as_json:
        emit(
            {"model_name": model_name, "versions": [version_summary(v, settings.data_dir) for v in versions]}
        )
        return
    table = Table(title=f"{model_name}: {len(versions)} version(s)")
    for column in ("version", "aliases", "data as of", "OOT AUC", "thin AUC", "ECE", "promotion"):
        table.add_column(column)
    for v in versions:
        table.add_row(
            v.version,
            ", ".join(v.aliases),
            v.tags.get("coopscore.as_of", ""),
            _number(tag_float(v.tags.get("metric.oot_auc"))),
            _number(tag_float(v.tags.get("metric.oot_thin_auc"))),
            _number(tag_float(v.tags.get("metric.oot_ece"))),
            v.tags.get("promotion.status", ""),
        )
    console.print(table)
    for v in versions:
        if CHAMPION in v.aliases or CHALLENGER in v.aliases:
            report = version_summary(v, settings.data_dir)["report"]
            console.print(
                f"v{v.version} model report: {report['path'] or report['mlflow_artifact']}", soft_wrap=True
            )


@dataclass(frozen=True)
class _ConfigFlags:
    """--config and the flags that override it, as `train` and `retrain` take them."""

    path: Path | None
    oot_months: int | None
    calibration_months: int | None
    validation_months: int | None
    train_months: int | None
    target_bad_rate: float | None
    target_approval_rate: float | None
    review_band: float | None

    def config(self, as_json: bool, source: str | None = None) -> TrainingConfig:
        """The effective TrainingConfig; a bad file or flag combination is one line, exit 2."""
        from training.job_setup import training_config

        if self.target_bad_rate is not None and self.target_approval_rate is not None:
            raise typer.BadParameter(
                "--target-bad-rate and --target-approval-rate are mutually exclusive: give one",
                param_hint="--target-bad-rate",
            )
        try:
            return training_config(
                self.path,
                oot_months=self.oot_months,
                calibration_months=self.calibration_months,
                validation_months=self.validation_months,
                train_months=self.train_months,
                target_bad_rate=self.target_bad_rate,
                target_approval_rate=self.target_approval_rate,
                review_band=self.review_band,
                source=source,
            )
        except ValueError as error:  # pydantic's ValidationError, JSON or YAML syntax
            where = f"--config {self.path}" if self.path else "the flags"
            text = " ".join(str(error).split())
            _fail(as_json, EXIT_BAD_INPUT, "bad_config", f"{where}: {text} (fields: docs/config.md)")


def _print_config(flags: _ConfigFlags, source: str, *, markdown: bool, as_json: bool) -> NoReturn:
    """Print the effective config (JSON, stdout) and its field reference (stderr), then exit 0."""
    import json

    from training.config import config_reference, config_reference_markdown

    if markdown:
        typer.echo(config_reference_markdown(), nl=False)
        raise typer.Exit(0)
    config = flags.config(as_json, source=source)
    if as_json:
        emit(config.model_dump(mode="json"))
    else:
        typer.echo(json.dumps(config.model_dump(mode="json"), indent=2))
        table = Table(title="TrainingConfig fields (docs/config.md)")
        for column in ("field", "description"):
            table.add_column(column)
        for row in config_reference():
            table.add_row(row["field"], row["description"])
        console.print(table)
    raise typer.Exit(0)


def _settings() -> Settings:
    """The settings, with the MLflow store they name ready to use."""
    from coopscore.settings import get_settings
    from models import mlflow_io

    settings = get_settings()
    mlflow_io.prepare_store(settings.tracking_uri)
    return settings


def _check_model_name(settings: Settings, model_name: str | None, as_json: bool) -> None:
    """Exit 2 with one line when the model name is not registered."""
    from models.registry import UnknownModelError, check_model_name

    try:
        check_model_name(settings.tracking_uri, model_name or settings.model_name)
    except UnknownModelError as error:
        _fail(as_json, EXIT_BAD_INPUT, "bad_input", str(error))


def _event_log_source(
    config: TrainingConfig, as_of: str | None, truth: Path | None, as_json: bool = False
) -> tuple[Settings, TrainingSource]:
    """The settings and the event-log training source as of --as-of."""
    from features.offline_engines.base import OfflineEngineError
    from features.offline_engines.factory import offline_engine
    from training.job_setup import event_log_source

    settings = _settings()
    try:  # Spark without Java or pyspark fails here, in one line, before any work
        engine = offline_engine(settings)
    except OfflineEngineError as error:
        _fail(as_json, 1, "offline_engine", str(error))
    return settings, event_log_source(settings, config, as_of=_as_of(as_of), truth=truth, engine=engine)


def _fail(as_json: bool, code: int, status: str, message: str, **extra: Any) -> NoReturn:
    payload = {"status": status, "exit_code": code, "message": message, **extra} if as_json else None
    fail(message, code, label=status, payload=payload, soft_wrap=True)  # one line, however long


def _handle(error: Exception, as_json: bool) -> NoReturn:
    from features.offline_engines.base import OfflineEngineError
    from models.cutoffs import TargetNotMetError
    from training.datasets import InsufficientDataError
    from training.job import ExitCode
    from training.table_inputs import TableInputError

    if isinstance(error, typer.Exit):
        raise error
    if isinstance(error, InsufficientDataError):
        _fail(as_json, ExitCode.INSUFFICIENT_DATA, "insufficient_data", str(error))
    if isinstance(error, TableInputError):
        _fail(as_json, EXIT_BAD_INPUT, "bad_input", str(error))
    if isinstance(error, TargetNotMetError):
        _fail(as_json, EXIT_BAD_INPUT, "target_not_met", str(error))
    if isinstance(error, OfflineEngineError):
        _fail(as_json, ExitCode.ERROR, "offline_engine", str(error))
    if debug_enabled():
        console.print_exception(max_frames=8)  # stderr: the JSON on stdout stays one object
    _fail(as_json, ExitCode.ERROR, "error", internal_error(error))


def _finish(summary: JobSummary, as_json: bool) -> NoReturn:
    if as_json:
        emit(summary.to_dict())
    else:
        _print_summary(summary)
    raise typer.Exit(int(summary.exit_code))
