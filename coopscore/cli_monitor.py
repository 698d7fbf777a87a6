"""`coopscore monitor ...`: drift checks from the command line (registered by `coopscore.cli`).

`coopscore monitor drift` compares a current window (the decision log over `--window` / `--last`,
or `--current FILE`) with a reference sample (the one stored with a registered model version,
`--model champion` by default, or `--reference FILE`). Heavy imports happen inside the command.

Exit codes: 0 stable or watch, 3 drift found, 5 the window is empty or too small to judge
(nothing is written), 2 bad input (a missing file, no decision log, no such model), 1 an internal
error (the traceback only with --debug).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from coopscore.names import CHAMPION

if TYPE_CHECKING:
    import pandas as pd

    from coopscore.settings import Settings
    from monitoring.sources import Reference

EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_DRIFT = 3
EXIT_TOO_FEW_ROWS = 5
RETRAIN_COMMAND = ("-m", "coopscore", "retrain")

console = Console(stderr=True)


class OnDrift(StrEnum):
    """What to do when drift is found."""

    nothing = "nothing"
    retrain = "retrain"


class MonitorInputError(Exception):
    """A problem with the command's input that the user can fix; carries its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT, **details: Any) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.details = details


def _emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False, default=str) + "\n")


def start_retraining() -> int:
    """Start `coopscore retrain` in its own process (not waited for); returns its pid."""
    process = subprocess.Popen(
        [sys.executable, *RETRAIN_COMMAND],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return process.pid


def _stop(error: MonitorInputError, as_json: bool) -> NoReturn:
    """One line on stderr (and one JSON object on stdout with --json), then the error's exit code."""
    status = "insufficient_data" if error.exit_code == EXIT_TOO_FEW_ROWS else "error"
    console.print(f"[red]{error}[/red]", soft_wrap=True)
    if as_json:
        _emit_json({"status": status, "exit_code": error.exit_code, "message": str(error), **error.details})
    raise typer.Exit(error.exit_code)


def _load_current(
    settings: Settings, window: str | None, last: int | None, current: Path | None
) -> tuple[pd.DataFrame, str, dict[str, int]]:
    """(current rows, window label, application_id -> observed default for the window's decisions)."""
    from monitoring.sources import current_from_decision_log, parse_window, read_feature_rows

    if sum(x is not None for x in (window, last, current)) > 1:
        raise MonitorInputError("give one of --window, --last, --current")
    if current is not None:
        return read_feature_rows(current), f"file {current}", {}
    log_path = settings.decision_log_path
    if not log_path.exists():
        raise MonitorInputError(
            f"no decision log at {log_path}: score applications first, or pass --current FILE"
        )
    from decisions.factory import decision_log_reader

    decision_log = decision_log_reader(settings)
    try:
        if last is not None:
            frame = current_from_decision_log(decision_log.feature_rows, last=last)
            label = f"last {last} decisions"
        else:
            span = parse_window(window or "30d")
            since = datetime.now(UTC) - span
            frame = current_from_decision_log(decision_log.feature_rows, since=since)
            label = f"decisions since {since.isoformat(timespec='seconds')} ({window or '30d'})"
        return frame, label, decision_log.outcome_rows()
    finally:
        decision_log.close()


def _load_reference(settings: Settings, reference: Path | None, model: str | None) -> Reference:
    from models.registry import ArtifactIntegrityError
    from monitoring.sources import reference_from_file, reference_from_registry

    if reference is not None and model is not None:
        raise MonitorInputError("give --reference or --model, not both")
    if reference is not None:
        return reference_from_file(reference)
    alias = model or CHAMPION
    try:
        return reference_from_registry(
            alias, model_name=settings.model_name, tracking_uri=settings.tracking_uri
        )
    except KeyError as exc:
        raise MonitorInputError(
            f"no model {settings.model_name}@{alias} in {settings.tracking_uri}: "
            "train and promote one (`coopscore retrain`), or pass --reference FILE"
        ) from exc
    except ArtifactIntegrityError as exc:
        raise MonitorInputError(f"model {settings.model_name}@{alias}: {exc}") from exc


def _performance_rows(current: pd.DataFrame, outcomes: dict[str, int]) -> pd.DataFrame | None:
    """The window's decisions (time, PD) with their observed default where one was posted."""
    if not outcomes or "application_id" not in current or "created_at" not in current:
        return None
    import pandas as pd

    rows = current[["application_id", "created_at", "pd"]].copy()
    rows["defaulted"] = rows["application_id"].map(outcomes).astype("boolean")
    if rows["defaulted"].notna().sum() == 0:
        return None
    return pd.DataFrame({"applied_at": rows["created_at"], "pd": rows["pd"], "defaulted": rows["defaulted"]})


def _print_summary(payload: dict[str, Any]) -> None:
    out = Console()
    colour = {"stable": "green", "watch": "yellow", "drift": "red"}[payload["status"]]
    out.print(
        f"[bold {colour}]{payload['status'].upper()}[/bold {colour}]: {payload['n_current']:,} current rows "
        f"({payload.get('window')}) vs {payload['n_reference']:,} reference rows ({payload.get('reference')})"
    )
    table = Table(title="most shifted features")
    for column in ("feature", "PSI", "band", "alarm"):
        table.add_column(column, justify="right" if column == "PSI" else "left")
    for item in payload["top_features"]:
        table.add_row(item["name"], f"{item['psi']:.3f}", item["band"], item["alarm"])
    out.print(table)
    scores = payload.get("scores", {})
    if scores:
        out.print(
            "score / PD: "
            + ", ".join(f"{name} PSI {item['psi']:.3f} ({item['band']})" for name, item in scores.items())
        )
    for reason in payload["reasons"][:20]:
        out.print(f"  • {reason}")
    out.print(f"report: {payload['outputs']['report']}")


def register(app: typer.Typer) -> None:
    """Add the `monitor` sub-app (command `drift`) to the coopscore CLI."""
    monitor_app = typer.Typer(help="Drift and performance monitoring.", no_args_is_help=True)
    app.add_typer(monitor_app, name="monitor")

    @monitor_app.command(
        "drift",
        epilog="Exit codes: 0 stable or watch, 3 drift found, 5 window empty or smaller than "
        "--min-rows (nothing written), 2 bad input, 1 internal error.",
    )
    def drift(
        window: Annotated[
            str | None, typer.Option(help="Current = decision log over this window, e.g. 30d, 12h, 2w.")
        ] = None,
        last: Annotated[
            int | None, typer.Option(min=1, help="Current = the last N logged decisions.")
        ] = None,
        current: Annotated[
            Path | None, typer.Option(help="Current = feature rows from this Parquet / CSV file.")
        ] = None,
        reference: Annotated[
            Path | None, typer.Option(help="Reference sample Parquet / CSV (feature rows + score / pd).")
        ] = None,
        model: Annotated[
            str | None,
            typer.Option(
                help="Reference = the sample stored with this registered model (alias or version; "
                "default champion)."
            ),
        ] = None,
        min_rows: Annotated[
            int,
            typer.Option(
                min=1, help="Fewest current rows to judge; a smaller window exits 5 and writes nothing."
            ),
        ] = 200,
        match_days: Annotated[
            int,
            typer.Option(
                min=0,
                help="Compare with the reference applications within this many days of the window's "
                "vector times (features_as_of); 0 = the whole reference quarter.",
            ),
        ] = 45,
        segment: Annotated[
            str | None, typer.Option(help="Also check each value of this column (e.g. county_id).")
        ] = None,
        outcomes: Annotated[
            Path | None,
            typer.Option(
                help="Decisions with applied_at, pd, defaulted (nullable): performance by cohort "
                "(default: outcomes posted to /v1/outcomes for the window's decisions)."
            ),
        ] = None,
        on_drift: Annotated[
            OnDrift, typer.Option("--on-drift", help="Start `coopscore retrain` when drift is found.")
        ] = OnDrift.nothing,
        evidently: Annotated[
            bool,
            typer.Option(
                "--evidently/--no-evidently",
                help="Also write Evidently's report (score, PD, the most shifted features).",
            ),
        ] = True,
        mlflow: Annotated[
            bool, typer.Option("--mlflow/--no-mlflow", help="Log the check to the monitoring experiment.")
        ] = True,
        debug: Annotated[
            bool, typer.Option("--debug", help="Show the traceback of an internal error.")
        ] = False,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one machine-readable JSON object.")
        ] = False,
    ) -> None:
        """Compare a current window with the reference sample: PSI, data quality, Evidently report."""
        try:
            payload, exit_code = _run(
                window=window,
                last=last,
                current=current,
                reference=reference,
                model=model,
                min_rows=min_rows,
                match_days=match_days,
                segment=segment,
                outcomes=outcomes,
                evidently=evidently,
                mlflow=mlflow,
            )
        except MonitorInputError as error:
            _stop(error, as_json)
        except Exception as error:
            if debug:
                raise
            _stop(
                MonitorInputError(
                    f"drift check failed: {type(error).__name__}: {error} "
                    "(run with --debug for the traceback)",
                    EXIT_ERROR,
                ),
                as_json,
            )
        if exit_code == EXIT_DRIFT and on_drift is OnDrift.retrain:
            payload["retrain_pid"] = start_retraining()
        if as_json:
            _emit_json(payload)
        else:
            _print_summary(payload)
        raise typer.Exit(exit_code)


def _run(
    *,
    window: str | None,
    last: int | None,
    current: Path | None,
    reference: Path | None,
    model: str | None,
    min_rows: int,
    match_days: int,
    segment: str | None,
    outcomes: Path | None,
    evidently: bool,
    mlflow: bool,
) -> tuple[dict[str, Any], int]:
    """Load both sides, run and store the check; returns (JSON summary, exit code)."""
    from dataclasses import replace

    from coopscore.settings import get_settings
    from monitoring.drift import DriftPolicy
    from monitoring.monitor import DriftInputError, InsufficientWindowError, run_drift_check
    from monitoring.sources import match_reference_to_window, read_feature_rows

    settings = get_settings()
    policy = replace(DriftPolicy(), min_rows=min_rows)
    try:
        current_rows, window_label, posted = _load_current(settings, window, last, current)
        if len(current_rows) < policy.min_rows:  # before the reference download: fail fast
            raise InsufficientWindowError(len(current_rows), policy.min_rows)
        ref = _load_reference(settings, reference, model)
        policy = replace(policy, ignore=(*policy.ignore, *ref.growing))
        ref, matched = match_reference_to_window(
            ref, current_rows.get("features_as_of"), days=match_days, min_rows=policy.min_rows
        )
        outcome_rows = (
            read_feature_rows(outcomes) if outcomes is not None else _performance_rows(current_rows, posted)
        )
    except InsufficientWindowError as exc:
        raise MonitorInputError(
            str(exc), EXIT_TOO_FEW_ROWS, n_current=exc.n_current, min_rows=exc.min_rows
        ) from exc
    except (FileNotFoundError, ValueError) as exc:
        raise MonitorInputError(str(exc)) from exc
    if segment is not None and (segment not in ref.rows or segment not in current_rows):
        raise MonitorInputError(
            f"segment column {segment!r} must be in both the reference and the current rows"
        )
    try:
        check = run_drift_check(
            ref.rows,
            current_rows,
            data_dir=settings.data_dir,
            features=ref.features,
            shared=ref.shared,
            segment=segment,
            policy=policy,
            outcomes=outcome_rows,
            context={
                "window": window_label,
                "reference": ref.label,
                "reference_period": ref.period(),
                "reference_match": matched,
                "model": model or (CHAMPION if reference is None else None),
                "model_version": ref.model_version,
            },
            evidently=evidently,
            tracking_uri=settings.tracking_uri if mlflow else None,
            artifact_root=settings.artifact_root,
        )
    except InsufficientWindowError as exc:
        raise MonitorInputError(
            str(exc), EXIT_TOO_FEW_ROWS, n_current=exc.n_current, min_rows=exc.min_rows
        ) from exc
    except DriftInputError as exc:
        raise MonitorInputError(str(exc)) from exc
    return check.payload, check.exit_code
