"""`coopscore monitor ...`: drift checks from the command line.

`coopscore monitor drift` compares a current window (the decision log over `--window` / `--last`,
or `--current FILE`) with a reference sample (the one stored with a registered model version,
`--model champion` by default, or `--reference FILE`); `monitoring.drift_job` does the work. Heavy
imports happen inside the command.

Exit codes: 0 stable or watch, 3 drift found, 5 the window is empty or too small to judge
(nothing is written), 2 bad input (a missing file, no decision log, no such model or --model-name),
7 the decision log's database cannot be reached, 1 an internal error (the traceback only with --debug).
"""

from __future__ import annotations

import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from coopscore.cli.output import EXIT_ERROR, EXIT_UNAVAILABLE, JsonOption, debug_enabled, emit, fail
from monitoring.drift_job import EXIT_TOO_FEW_ROWS

RETRAIN_COMMAND = ("-m", "coopscore", "retrain")

app = typer.Typer(help="Drift and performance monitoring.", no_args_is_help=True)


class OnDrift(StrEnum):
    """What to do when drift is found."""

    nothing = "nothing"
    retrain = "retrain"


def start_retraining() -> int:
    """Start `coopscore retrain` in its own process (not waited for); returns its pid."""
    process = subprocess.Popen(
        [sys.executable, *RETRAIN_COMMAND],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return process.pid


def _stop(message: str, exit_code: int, details: dict[str, Any], as_json: bool) -> NoReturn:
    """One line on stderr (and one JSON object on stdout with --json), then the exit code."""
    status = "insufficient_data" if exit_code == EXIT_TOO_FEW_ROWS else "error"
    payload = {"status": status, "exit_code": exit_code, "message": message, **details} if as_json else None
    fail(message, exit_code, payload=payload, soft_wrap=True)


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


@app.command(
    "drift",
    epilog="Exit codes: 0 stable or watch, 3 drift found, 5 window empty or smaller than "
    "--min-rows (nothing written), 2 bad input, 7 decision log unreachable, 1 internal error.",
)
def drift(
    window: Annotated[
        str | None, typer.Option(help="Current = decision log over this window, e.g. 30d, 12h, 2w.")
    ] = None,
    last: Annotated[
        int | None, typer.Option(min=1, help="Current = the last N logged decisions, e.g. --last 500.")
    ] = None,
    current: Annotated[
        Path | None,
        typer.Option(
            help="Current = feature rows from this Parquet / CSV file, e.g. --current march.parquet."
        ),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            help="Reference sample Parquet / CSV (feature rows + score / pd), e.g. --reference ref.parquet."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Reference = the sample stored with this registered model (alias or version; "
            "default champion), e.g. --model 3."
        ),
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option(
            "--model-name",
            help="Registered model name of --model (default: settings.model_name), "
            "e.g. --model-name lender-a.",
        ),
    ] = None,
    min_rows: Annotated[
        int,
        typer.Option(
            min=1,
            help="Fewest current rows to judge; a smaller window exits 5 and writes nothing, "
            "e.g. --min-rows 100.",
        ),
    ] = 200,
    match_days: Annotated[
        int,
        typer.Option(
            min=0,
            help="Compare with the reference applications within this many days of the window's "
            "vector times (features_as_of); 0 = the whole reference quarter. E.g. --match-days 30.",
        ),
    ] = 45,
    segment: Annotated[
        str | None, typer.Option(help="Also check each value of this column (e.g. county_id).")
    ] = None,
    outcomes: Annotated[
        Path | None,
        typer.Option(
            help="Decisions with applied_at, pd, defaulted (nullable): performance by cohort "
            "(default: outcomes posted to /v1/outcomes for the window's decisions), "
            "e.g. --outcomes outcomes.csv."
        ),
    ] = None,
    on_drift: Annotated[
        OnDrift,
        typer.Option(
            "--on-drift", help="Start `coopscore retrain` when drift is found, e.g. --on-drift retrain."
        ),
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
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an internal error.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Compare a current window with the reference sample: PSI, data quality, Evidently report."""
    from coopscore.settings import get_settings
    from decisions.base import DecisionLogUnavailableError
    from monitoring.drift_job import DriftJobError, run_drift_job
    from monitoring.monitor import EXIT_DRIFT

    try:
        payload, exit_code = run_drift_job(
            get_settings(),
            window=window,
            last=last,
            current=current,
            reference=reference,
            model=model,
            model_name=model_name,
            min_rows=min_rows,
            match_days=match_days,
            segment=segment,
            outcomes=outcomes,
            evidently=evidently,
            mlflow=mlflow,
        )
    except DriftJobError as error:
        _stop(str(error), error.exit_code, error.details, as_json)
    except DecisionLogUnavailableError as error:
        _stop(str(error), EXIT_UNAVAILABLE, {}, as_json)
    except Exception as error:
        if debug or debug_enabled():
            raise
        _stop(
            f"drift check failed: {type(error).__name__}: {error} (run with --debug for the traceback)",
            EXIT_ERROR,
            {},
            as_json,
        )
    if exit_code == EXIT_DRIFT and on_drift is OnDrift.retrain:
        payload["retrain_pid"] = start_retraining()
    if as_json:
        emit(payload)
    else:
        _print_summary(payload)
    raise typer.Exit(exit_code)
