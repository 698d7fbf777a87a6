"""`coopscore monitor ...`: drift checks from the command line (registered by `coopscore.cli`).

`coopscore monitor drift` compares a current window (the decision log over `--window` / `--last`,
or `--current FILE`) with a reference sample (`--reference FILE`, or the one stored with a registered
model version, `--model champion`). Exit code 0 when stable or watch, 3 when drift is found, 2 for bad
input. Heavy imports happen inside the command.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

    from coopscore.settings import Settings

EXIT_BAD_INPUT = 2
EXIT_DRIFT = 3
RETRAIN_COMMAND = ("-m", "coopscore", "retrain")

console = Console(stderr=True)


class OnDrift(StrEnum):
    """What to do when drift is found."""

    nothing = "nothing"
    retrain = "retrain"


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


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]{message}[/red]")
    return typer.Exit(EXIT_BAD_INPUT)


def _load_current(
    settings: Settings, window: str | None, last: int | None, current: Path | None
) -> tuple[pd.DataFrame, str]:
    from monitoring.sources import current_from_decision_log, parse_window, read_feature_rows

    if sum(x is not None for x in (window, last, current)) > 1:
        raise _fail("give one of --window, --last, --current")
    if current is not None:
        return read_feature_rows(current), f"file {current}"
    log_path: Path = getattr(settings, "decision_log_path", settings.data_dir / "decisions.sqlite")
    if not log_path.exists():
        raise _fail(f"no decision log at {log_path}; pass --current FILE")
    from serving.decision_log import DecisionLog

    decision_log = DecisionLog(log_path)
    try:
        if last is not None:
            return current_from_decision_log(decision_log.feature_rows, last=last), f"last {last} decisions"
        span = parse_window(window or "30d")
        since = datetime.now(UTC) - span
        frame = current_from_decision_log(decision_log.feature_rows, since=since)
        return frame, f"decisions since {since.isoformat(timespec='seconds')} ({window or '30d'})"
    finally:
        decision_log.close()


def _load_reference(
    settings: Settings, reference: Path | None, model: str | None
) -> tuple[pd.DataFrame, str]:
    from monitoring.sources import read_feature_rows, reference_from_registry

    if reference is not None and model is not None:
        raise _fail("give --reference or --model, not both")
    if reference is not None:
        return read_feature_rows(reference), f"file {reference}"
    name = str(getattr(settings, "model_name", "coopscore-pd"))
    alias = model or "champion"
    with tempfile.TemporaryDirectory(prefix="coopscore-reference-") as tmp:
        frame = reference_from_registry(
            alias, model_name=name, tracking_uri=settings.tracking_uri, download_dir=Path(tmp)
        )
    return frame, f"model {name}@{alias}"


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
    for reason in payload["reasons"][:20]:
        out.print(f"  • {reason}")
    out.print(f"report: {payload['outputs']['report']}")


def register(app: typer.Typer) -> None:
    """Add the `monitor` sub-app (command `drift`) to the coopscore CLI."""
    monitor_app = typer.Typer(help="Drift and performance monitoring.", no_args_is_help=True)
    app.add_typer(monitor_app, name="monitor")

    @monitor_app.command("drift")
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
            typer.Option(help="Reference = the sample stored with this registered model (alias or version)."),
        ] = None,
        segment: Annotated[
            str | None, typer.Option(help="Also check each value of this column (e.g. county_id).")
        ] = None,
        outcomes: Annotated[
            Path | None,
            typer.Option(help="Decisions with applied_at, pd, defaulted (nullable): performance by cohort."),
        ] = None,
        on_drift: Annotated[
            OnDrift, typer.Option("--on-drift", help="Start `coopscore retrain` when drift is found.")
        ] = OnDrift.nothing,
        evidently: Annotated[
            bool, typer.Option("--evidently/--no-evidently", help="Also write Evidently's full report.")
        ] = True,
        mlflow: Annotated[
            bool, typer.Option("--mlflow/--no-mlflow", help="Log the check to the monitoring experiment.")
        ] = True,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one machine-readable JSON object.")
        ] = False,
    ) -> None:
        """Compare a current window with the reference sample: PSI, data quality, Evidently report."""
        from coopscore.settings import get_settings
        from monitoring.monitor import run_drift_check
        from monitoring.sources import read_feature_rows

        settings = get_settings()
        try:
            current_rows, window_label = _load_current(settings, window, last, current)
            reference_rows, reference_label = _load_reference(settings, reference, model)
            outcome_rows = read_feature_rows(outcomes) if outcomes is not None else None
        except (FileNotFoundError, ValueError) as exc:
            raise _fail(str(exc)) from exc
        if segment is not None and (segment not in reference_rows or segment not in current_rows):
            raise _fail(f"segment column {segment!r} must be in both the reference and the current rows")
        check = run_drift_check(
            reference_rows,
            current_rows,
            data_dir=settings.data_dir,
            segment=segment,
            outcomes=outcome_rows,
            context={"window": window_label, "reference": reference_label, "model": model},
            evidently=evidently,
            tracking_uri=settings.tracking_uri if mlflow else None,
            artifact_root=settings.artifact_root,
        )
        payload = check.payload
        if check.summary.status == "drift" and on_drift is OnDrift.retrain:
            payload["retrain_pid"] = start_retraining()
        if as_json:
            _emit_json(payload)
        else:
            _print_summary(payload)
        raise typer.Exit(check.exit_code)
