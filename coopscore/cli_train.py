"""`coopscore train / retrain / promote / models list`: the model lifecycle commands.

`register(app)` adds them to the main Typer app. Heavy modules (pandas, LightGBM, MLflow) are
imported inside the commands. Every command takes `--json` and then prints exactly one JSON object
on stdout; progress and tables go to stderr.

Exit codes (a scheduler can act on them):
    0   success: `train` registered a challenger; `retrain` / `promote` promoted it to champion
    10  kept: the challenger failed a gate and the champion stays
    11  no new data: `retrain` found this data, feature set and config already trained
    12  insufficient data: too few labelled applications or defaults to train honestly
    13  nothing to promote: no challenger
    1   error (message on stderr, and in the JSON object with --json)
    2   bad usage (Typer)
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from coopscore.names import MODEL_NAME

if TYPE_CHECKING:
    from training.config import TrainingConfig
    from training.job import JobSummary

console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON object on stdout.")]
ModelNameOption = Annotated[
    str | None, typer.Option("--model-name", help="Registered model name (default: settings.model_name).")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TrainingConfig as JSON (splits, booster, scale, policy, gates).", exists=True
    ),
]
TruthOption = Annotated[
    Path | None,
    typer.Option(
        "--truth",
        help="A simulated world's folder (or its truth/ folder): adds the oracle AUC of the true PD.",
        exists=True,
    ),
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of", help="Train as of this instant (ISO-8601, UTC if no offset); default: latest data."
    ),
]
OotOption = Annotated[
    int | None, typer.Option("--oot-months", min=1, help="Out-of-time test window (months).")
]
CalibrationOption = Annotated[
    int | None, typer.Option("--calibration-months", min=1, help="Calibration window (months).")
]
ValidationOption = Annotated[
    int | None, typer.Option("--validation-months", min=1, help="Early-stopping window (months).")
]
TrainMonthsOption = Annotated[
    int | None, typer.Option("--train-months", min=1, help="Training window (months; default: all earlier).")
]

FairnessOption = Annotated[
    bool,
    typer.Option(
        "--fairness/--no-fairness",
        help="Add the fairness gate (needs the member_profiles table; skipped without it).",
    ),
]


def _emit(payload: dict[str, Any]) -> None:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    sys.stdout.write(json.dumps(clean(payload), ensure_ascii=False, default=str) + "\n")


def _config(
    path: Path | None,
    oot: int | None = None,
    calibration: int | None = None,
    validation: int | None = None,
    train_months: int | None = None,
) -> TrainingConfig:
    from training.config import TrainingConfig

    config = TrainingConfig.model_validate_json(path.read_text()) if path else TrainingConfig()
    overrides = {
        k: v
        for k, v in {
            "oot_months": oot,
            "calibration_months": calibration,
            "validation_months": validation,
            "train_months": train_months,
        }.items()
        if v is not None
    }
    if overrides:
        from training.config import SplitConfig

        splits = SplitConfig.model_validate({**config.splits.model_dump(), **overrides})
        config = config.model_copy(update={"splits": splits})
    return config


def _as_of(text: str | None) -> Any:
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


@contextmanager
def _stdout_kept_for_json(enabled: bool) -> Iterator[None]:
    """With --json, send everything written to file descriptor 1 to stderr while the job runs.

    Native libraries print to fd 1 behind Python's back (DuckDB's progress bar on long queries,
    solver logs); the one JSON object must be the only thing on stdout.
    """
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _stages(enabled: bool) -> Any:
    """A rich status spinner whose text follows the job's stages."""
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(lambda _stage: None)

    class _Status:
        def __enter__(self) -> Any:
            self.status = console.status("starting", spinner="dots")
            self.status.__enter__()
            return self.update

        def update(self, stage: str) -> None:
            console.log(stage)
            self.status.update(f"[bold]{stage}")

        def __exit__(self, *exc: object) -> None:
            self.status.__exit__(None, None, None)

    return _Status()


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
        for column in ("", "AUC", "thin AUC", "thick AUC", "KS", "Brier", "ECE", "approve"):
            table.add_column(column, justify="right" if column else "left")
        for row in summary.comparison:
            table.add_row(
                CONTENDERS.get(row["contender"], row["contender"]),
                _number(row["auc"], 3),
                _number(row["thin_auc"], 3),
                _number(row["thick_auc"], 3),
                _number(row["ks"], 3),
                _number(row["brier"], 3),
                _number(row["ece"], 3),
                _number(row["approval_rate"], 2),
            )
        console.print(table)
    if summary.mitigation:
        _print_mitigation(summary.mitigation)
    if summary.promotion:
        _print_gates(summary.promotion)
    colour = {0: "green", 10: "yellow", 11: "cyan"}.get(summary.exit_code, "red")
    console.print(f"[{colour}]{summary.status}[/{colour}]: {summary.message}")


def _fairness_gates(settings: Any, config: Any) -> list[Any] | None:
    """The default gates plus the fairness gate, built from the restricted member-profile table
    (None without one). Protected attributes never enter training; only this gate reads them."""
    from features.event_log import EventLog
    from features.offline import read_applications
    from monitoring.fairness import FairnessThresholds
    from training.fairness_gates import FairnessGate
    from training.gates import default_gates

    log = EventLog(settings.events_dir, settings.tables_dir)
    if not log.table_files("member_profiles"):
        return None
    profiles = log.read_table("member_profiles").to_pandas()
    applications = read_applications(settings.tables_dir)
    fair = config.gates.fairness
    gate = FairnessGate.from_profiles(
        profiles,
        applications,
        thresholds=FairnessThresholds(
            fair.min_approval_ratio,
            fair.max_equal_opportunity_difference,
            fair.max_calibration_gap,
            require_ci=fair.require_ci,
        ),
        min_group_size=fair.min_group_size,
        n_boot=fair.n_boot,
    )
    return [*default_gates(config.gates), gate]


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
        mark = "[green]pass" if gate["passed"] else "[red]FAIL"
        table.add_row(gate["gate"], mark, gate["reason"])
    console.print(table)


def _fail(as_json: bool, code: int, status: str, message: str, **extra: Any) -> NoReturn:
    if as_json:
        _emit({"status": status, "exit_code": code, "message": message, **extra})
    console.print(f"[red]{status}[/red]: {message}")
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add `train`, `retrain`, `promote` and `models list` to the coopscore CLI."""
    models_app = typer.Typer(help="Inspect the model registry.", no_args_is_help=True)
    app.add_typer(models_app, name="models")

    @app.command("train")
    def train_command(
        table: Annotated[
            Path | None,
            typer.Option(
                "--table",
                help="Train on a lender's own table (CSV/Parquet) instead of the event log.",
                exists=True,
                dir_okay=False,
            ),
        ] = None,
        label: Annotated[str | None, typer.Option("--label", help="Table: the 0/1 default column.")] = None,
        time_column: Annotated[
            str | None, typer.Option("--time", help="Table: the application-time column.")
        ] = None,
        id_column: Annotated[
            str | None, typer.Option("--id", help="Table: the application-id column.")
        ] = None,
        protected: Annotated[
            list[str] | None,
            typer.Option(
                "--protected",
                help="Table: a protected column, excluded from the model and kept for audits. Repeatable.",
            ),
        ] = None,
        monotone: Annotated[
            list[str] | None,
            typer.Option("--monotone", help="Table: COLUMN=+1 (raises risk) or COLUMN=-1. Repeatable."),
        ] = None,
        truth: TruthOption = None,
        as_of: AsOfOption = None,
        config_path: ConfigOption = None,
        oot_months: OotOption = None,
        calibration_months: CalibrationOption = None,
        validation_months: ValidationOption = None,
        train_months: TrainMonthsOption = None,
        model_name: ModelNameOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Train, evaluate against the baselines, and register a challenger (no promotion)."""
        from training.job import train

        if table is not None and (label is None or time_column is None):
            raise typer.BadParameter("--table needs --label and --time", param_hint="--table")
        if table is None and (label or time_column or id_column or protected or monotone):
            raise typer.BadParameter("--label/--time/--id/--protected/--monotone need --table")
        config = _config(config_path, oot_months, calibration_months, validation_months, train_months)
        source = _source(
            table, label, time_column, id_column, protected, _monotone(monotone), truth, as_of, config
        )
        settings = _settings()
        try:
            with _stdout_kept_for_json(as_json), _stages(not as_json) as progress:
                summary, _ = train(
                    source,
                    config=config,
                    tracking_uri=settings.tracking_uri,
                    artifact_root=settings.artifact_root,
                    model_name=_model_name(settings, model_name),
                    progress=progress,
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
        model_name: ModelNameOption = None,
        fairness: FairnessOption = True,
        mitigate: Annotated[
            str,
            typer.Option(
                "--mitigate",
                help="When the fairness gate fails: 'drop-proxies' refits without the proxy "
                "features behind the gap and judges that model too; 'none' keeps the champion.",
            ),
        ] = "none",
        as_json: JsonOption = False,
    ) -> None:
        """Scheduled job: train on new data, register a challenger, promote it if the gates pass.

        Exit codes: 0 promoted, 10 kept champion, 11 no new data, 12 insufficient data, 1 error.
        """
        from training.job import retrain

        config = _config(config_path, oot_months, calibration_months, validation_months, train_months)
        source = _source(None, None, None, None, None, {}, truth, as_of, config)
        settings = _settings()
        if mitigate not in ("none", "drop-proxies"):
            raise typer.BadParameter("expected none or drop-proxies", param_hint="--mitigate")
        gates = _fairness_gates(settings, config) if fairness else None
        try:
            with _stdout_kept_for_json(as_json), _stages(not as_json) as progress:
                summary = retrain(
                    source,
                    config=config,
                    tracking_uri=settings.tracking_uri,
                    artifact_root=settings.artifact_root,
                    model_name=_model_name(settings, model_name),
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
            str | None, typer.Option("--version", help="Version to judge (default: the 'challenger' alias).")
        ] = None,
        force: Annotated[
            bool, typer.Option("--force", help="Promote even if a gate fails (needs --by and --reason).")
        ] = False,
        by: Annotated[str | None, typer.Option("--by", help="Who forces the promotion (recorded).")] = None,
        reason: Annotated[str | None, typer.Option("--reason", help="Why it is forced (recorded).")] = None,
        max_auc_drop: Annotated[
            float, typer.Option("--max-auc-drop", min=0, help="Allowed OOT AUC drop vs the champion.")
        ] = 0.005,
        max_ece: Annotated[
            float, typer.Option("--max-ece", min=0, help="Largest allowed OOT expected calibration error.")
        ] = 0.02,
        fairness: FairnessOption = True,
        min_approval_ratio: Annotated[
            float, typer.Option("--min-approval-ratio", min=0, max=1, help="Fairness: four-fifths screen.")
        ] = 0.8,
        max_eo_difference: Annotated[
            float,
            typer.Option("--max-eo-difference", min=0, max=1, help="Fairness: equal-opportunity difference."),
        ] = 0.05,
        max_calibration_gap: Annotated[
            float,
            typer.Option("--max-calibration-gap", min=0, max=1, help="Fairness: per-group calibration gap."),
        ] = 0.02,
        min_group_size: Annotated[
            int, typer.Option("--min-group-size", min=1, help="Fairness: smaller groups are not judged.")
        ] = 100,
        model_name: ModelNameOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Run the promotion gates on the challenger; make it champion if they all pass.

        Exit codes: 0 promoted (or forced), 10 kept champion, 13 no challenger, 1 error.
        """
        from training.config import FairnessGateConfig, GateConfig, TrainingConfig
        from training.job import ExitCode
        from training.promotion import NothingToPromoteError, promote

        if force and not (by and reason):
            raise typer.BadParameter("--force needs --by NAME and --reason TEXT", param_hint="--force")
        settings = _settings()
        gate_config = GateConfig(
            max_auc_drop=max_auc_drop,
            max_ece=max_ece,
            fairness=FairnessGateConfig(
                min_approval_ratio=min_approval_ratio,
                max_equal_opportunity_difference=max_eo_difference,
                max_calibration_gap=max_calibration_gap,
                min_group_size=min_group_size,
            ),
        )
        gates = _fairness_gates(settings, TrainingConfig(gates=gate_config)) if fairness else None
        try:
            with _stdout_kept_for_json(as_json):
                result = promote(
                    settings.tracking_uri,
                    model_name=_model_name(settings, model_name),
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
            _emit({**result.to_dict(), "exit_code": int(code)})
        else:
            if result.gates:
                _print_gates(result.to_dict())
            console.print(
                f"{result.status}: champion is now {result.champion_after or '(none)'}"
                + (f" (forced by {result.forced_by}: {result.force_reason})" if result.forced_by else "")
            )
        raise typer.Exit(int(code))

    @models_app.command("list")
    def list_command(model_name: ModelNameOption = None, as_json: JsonOption = False) -> None:
        """Registered versions with aliases, OOT metrics and promotion status."""
        from models import mlflow_io

        settings = _settings()
        model_name = _model_name(settings, model_name)
        versions = mlflow_io.list_versions(settings.tracking_uri, model_name)
        if as_json:
            _emit(
                {
                    "model_name": model_name,
                    "versions": [
                        {
                            "version": v.version,
                            "aliases": list(v.aliases),
                            "run_id": v.run_id,
                            "created_ms": v.created_ms,
                            "as_of": v.tags.get("coopscore.as_of"),
                            "oot_auc": _float(v.tags.get("metric.oot_auc")),
                            "oot_ece": _float(v.tags.get("metric.oot_ece")),
                            "oot_thin_auc": _float(v.tags.get("metric.oot_thin_auc")),
                            "promotion": v.tags.get("promotion.status"),
                        }
                        for v in versions
                    ],
                }
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
                _number(_float(v.tags.get("metric.oot_auc"))),
                _number(_float(v.tags.get("metric.oot_thin_auc"))),
                _number(_float(v.tags.get("metric.oot_ece"))),
                v.tags.get("promotion.status", ""),
            )
        console.print(table)


def _model_name(settings: Any, given: str | None) -> str:
    """--model-name, else the settings' registered model name, else MODEL_NAME."""
    return given or str(getattr(settings, "model_name", MODEL_NAME))


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _settings() -> Any:
    from coopscore.settings import get_settings
    from models import mlflow_io

    settings = get_settings()
    mlflow_io.prepare_store(settings.tracking_uri)
    return settings


def _source(
    table: Path | None,
    label: str | None,
    time_column: str | None,
    id_column: str | None,
    protected: list[str] | None,
    monotone: dict[str, int],
    truth: Path | None,
    as_of: str | None,
    config: TrainingConfig,
) -> Any:
    from training.job import EventLogSource, TableSource

    if table is not None:
        assert label is not None and time_column is not None
        return TableSource(
            table,
            label=label,
            time=time_column,
            id_column=id_column,
            protected=tuple(protected or ()),
            monotone=monotone,
        )
    settings = _settings()
    return EventLogSource(
        events_dir=settings.events_dir,
        tables_dir=settings.tables_dir,
        ledger_path=settings.ledger_path,
        as_of=_as_of(as_of),
        window_days=config.splits.label_window_days,
        truth_dir=truth,  # a world folder or its truth folder (training reads it, for the oracle only)
    )


def _handle(error: Exception, as_json: bool) -> NoReturn:
    from training.datasets import InsufficientDataError
    from training.job import ExitCode

    if isinstance(error, typer.Exit):
        raise error
    if isinstance(error, InsufficientDataError):
        _fail(as_json, ExitCode.INSUFFICIENT_DATA, "insufficient_data", str(error))
    console.print_exception(max_frames=8)  # stderr: the JSON on stdout stays one object
    _fail(as_json, ExitCode.ERROR, "error", f"{type(error).__name__}: {error}")


def _finish(summary: JobSummary, as_json: bool) -> NoReturn:
    if as_json:
        _emit(summary.to_dict())
    else:
        _print_summary(summary)
    raise typer.Exit(int(summary.exit_code))
