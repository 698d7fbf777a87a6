"""The `coopscore` command line: one Typer command per job.

Implementations are imported inside each command so that `coopscore --help` stays fast and this
front door does no work at import time.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from features.ingest import IngestReport
    from simulator.world import ProxyTrap

app = typer.Typer(
    name="coopscore",
    help="Credit scoring for thin-file rural borrowers from cooperative activity feeds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
events_app = typer.Typer(help="Inspect the event log.", no_args_is_help=True)
app.add_typer(events_app, name="events")
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON object.")]


def emit_json(payload: dict[str, Any]) -> None:
    """Print one JSON object on stdout (the only thing printed there with --json)."""
    sys.stdout.write(json.dumps(payload, ensure_ascii=False, default=str) + "\n")


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=True,
    )


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Folder to write the world into.")],
    members: Annotated[int, typer.Option(min=100, help="Number of members (borrowers).")] = 20_000,
    months: Annotated[int, typer.Option(min=6, help="Months of cooperative activity.")] = 26,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 7,
    scenario: Annotated[
        list[str] | None,
        typer.Option(help="Drift scenario NAME[@MONTH]: drought, new_coop, unit_fen. Repeatable."),
    ] = None,
    proxy_trap: Annotated[
        str,
        typer.Option(
            help="mild: 60% of a left-behind woman's deliveries and 50% of her land inputs are filed "
            "under another household's id; household: all of them and her group savings too.",
        ),
    ] = "mild",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing world folder.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Simulate a cooperative world with known truth: raw feeds, applications, outcomes, truth/."""
    from simulator.scenarios import parse_scenario
    from simulator.world import SimulationConfig, simulate_world

    if out.exists() and any(out.iterdir()) and not overwrite:
        console.print(f"[red]{out} is not empty; pass --overwrite to replace it[/red]")
        raise typer.Exit(2)
    try:
        scenarios = tuple(parse_scenario(s, months) for s in scenario or [])
        config = SimulationConfig(
            members=members,
            months=months,
            seed=seed,
            scenarios=scenarios,
            proxy_trap=cast("ProxyTrap", proxy_trap),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with _progress(not as_json) as bar:
        task = bar.add_task("simulating", total=months)
        summary = simulate_world(
            config,
            out,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            overwrite=overwrite,
        )
    if as_json:
        emit_json(summary.to_dict())
        return
    table = Table(title=f"world written to {out}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summary.to_dict().items():
        if isinstance(value, dict):
            for sub, count in value.items():
                table.add_row(f"{key}: {sub}", f"{count:,}")
        else:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


EXIT_INGEST_FILES_FAILED = 4


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (CSV, JSON Lines, Parquet, Excel).")],
    encoding: Annotated[
        str | None,
        typer.Option(
            help="Text encoding of every CSV and JSON Lines file, e.g. gb18030. Default: UTF-8 (with or "
            "without BOM), or GB18030 for a file whose bytes are not UTF-8.",
        ),
    ] = None,
    sheet: Annotated[
        str | None, typer.Option(help="Sheet to read from Excel workbooks (default: the first sheet).")
    ] = None,
    debug: Annotated[bool, typer.Option(help="On an internal error, show its full traceback.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Validate and append feed files to the event log; bad rows go to quarantine with reasons.

    Each file ends stored, stored with quarantined rows, empty, or failed (with the reason). Exit 0: every
    file was read (quarantined rows are normal); 4: some files failed, the others are stored; 2: a path
    does not exist or an option is wrong; 1: internal error (the next run recovers the batch).
    """
    import codecs

    from coopscore.settings import get_settings
    from features.event_log import EventLog
    from features.ingest import ingest_paths
    from features.ledger import IngestLedger
    from features.validation import Limits

    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise typer.BadParameter(f"unknown encoding {encoding!r}", param_hint="--encoding") from exc
    settings = get_settings()
    log = EventLog(settings.events_dir, settings.tables_dir)
    ledger = IngestLedger(settings.ledger_path)
    limits = Limits.from_settings(settings, datetime.now(UTC))
    try:
        with _progress(not as_json) as bar:
            task = bar.add_task("ingesting", total=None)
            report = ingest_paths(
                paths,
                log,
                ledger,
                settings.quarantine_dir,
                limits,
                chunk_rows=settings.ingest_chunk_rows,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                encoding=encoding,
                sheet=sheet,
            )
    except FileNotFoundError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    except Exception as exc:
        if debug:
            raise
        message = f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"
        if as_json:
            emit_json({"error": message})
        console.print(
            f"[red]{message}[/red]\nThe batch was left unfinished; the next `coopscore ingest` recovers it "
            "and stores what is missing. Run with --debug for the traceback."
        )
        raise typer.Exit(1) from None
    finally:
        ledger.close()
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_ingest_report(report, settings.quarantine_dir)
    if report.failed:
        raise typer.Exit(EXIT_INGEST_FILES_FAILED)


def _failed_file_line(source: str, reason: str) -> str:
    """`failed <path>: <reason>`; a reason starts with the file's name (and line or byte): shown once."""
    name = Path(source).name
    return f"[red]failed[/red] {source}" + (reason[len(name) :] if reason.startswith(name) else f": {reason}")


def _print_ingest_report(report: IngestReport, quarantine_dir: Path) -> None:
    """The ingest report for a person: counts per table, files per status, and every file that needs a
    look (failed and empty ones all, those with quarantined rows up to 20)."""
    from features.ledger import EMPTY, FAILED, STORED, STORED_WITH_QUARANTINE

    counts = ("rows_read", "accepted", "duplicates", "quarantined")
    table = Table(title=f"ingest batch {report.batch_id} ({report.seconds:.1f} s)")
    for column in ("table", "files", "rows read", "accepted", "duplicates", "quarantined"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for kind, row in report.by_table().items():
        table.add_row(kind, *(f"{row[k]:,}" for k in ("files", *counts)))
    totals = report.totals()
    table.add_row("[bold]total", str(len(report.sources)), *(f"{totals[k]:,}" for k in counts))
    console.print(table)
    by_status = report.by_status()
    console.print("files: " + ", ".join(f"{n:,} {status}" for status, n in by_status.items() if n))
    shown = [s for s in report.sources if s.status in (FAILED, EMPTY)]
    with_quarantine = [s for s in report.sources if s.status == STORED_WITH_QUARANTINE]
    shown += with_quarantine[:20]
    for s in shown:
        # One line per file (a table would wrap long paths and reasons beyond reading).
        if s.status == FAILED:
            line = _failed_file_line(s.source, s.reason or "")
        elif s.status == EMPTY:
            line = f"[yellow]empty[/yellow] {s.source}: no records"
        else:
            line = f"{s.status} {s.source}: {s.quarantined:,} of {s.rows_read:,} rows quarantined"
        console.print(line, soft_wrap=True, highlight=False)
    if len(with_quarantine) > 20:
        console.print(
            f"... and {len(with_quarantine) - 20:,} more files with quarantined rows (--json lists all)"
        )
    if totals["quarantined"]:
        console.print(
            f"quarantined rows and their reasons: `coopscore events stats`, or the Parquet files under "
            f"{quarantine_dir}/batch={report.batch_id}/"
            + (
                f" ({totals['quarantined_before']:,} were in quarantine already and were not written again)"
                if totals["quarantined_before"]
                else ""
            )
        )
    skipped = sum(s.skipped_as_already_ingested for s in report.sources)
    if skipped:
        console.print(f"{skipped} file(s) were ingested before (same SHA-256): counted as duplicates")
    for line in report.unrecognised:
        console.print(f"[yellow]skipped {line}[/yellow]")
    if report.recovered_batches:
        console.print(f"recovered after crashed batches: {', '.join(report.recovered_batches)}")
    if by_status[FAILED]:
        console.print(
            f"[red]{by_status[FAILED]} file(s) failed[/red]: fix them (or pass --encoding / --sheet) and run "
            f"the same command again; the {by_status[STORED] + by_status[STORED_WITH_QUARANTINE]:,} stored "
            "file(s) are skipped by checksum, so only the fixed files' rows are added"
        )


@events_app.command("stats")
def events_stats(as_json: JsonOption = False) -> None:
    """Counts by type, month and county; late-record share; quarantine summary; files by status."""
    from coopscore.settings import get_settings
    from features.event_log import EventLog
    from features.ledger import IngestLedger
    from features.stats import event_log_stats

    settings = get_settings()
    ledger = IngestLedger(settings.ledger_path)
    try:
        stats = event_log_stats(
            EventLog(settings.events_dir, settings.tables_dir), settings.quarantine_dir, ledger
        )
    finally:
        ledger.close()
    if as_json:
        emit_json(stats)
        return
    out = Console()
    out.print(
        f"[bold]{stats['events']:,}[/bold] events; late-recorded share "
        f"(> {stats['late_after_days']} days): {stats['late_share']}"
    )
    for title, key in (
        ("by event type", "by_type"),
        ("by county", "by_county"),
        ("by month", "by_month"),
    ):
        table = Table(title=title)
        table.add_column(key.removeprefix("by_"))
        table.add_column("events", justify="right")
        for name, count in stats[key].items():
            table.add_row(str(name), f"{count:,}")
        out.print(table)
    quarantine = Table(title=f"quarantine: {stats['quarantine']['rows']:,} rows")
    quarantine.add_column("reason")
    quarantine.add_column("rows", justify="right")
    for reason, count in stats["quarantine"]["by_reason"].items():
        quarantine.add_row(reason, f"{count:,}")
    out.print(quarantine)
    files = stats["files"]
    out.print("files by latest status: " + ", ".join(f"{n:,} {k}" for k, n in files["by_status"].items()))
    for failed in files["failed"]:
        out.print(
            _failed_file_line(failed["source"], failed["reason"] or ""), soft_wrap=True, highlight=False
        )


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who the key is for, e.g. a lender's loan app.")],
    scopes: Annotated[
        list[str], typer.Option("--scopes", help="Scopes: score, ingest, read, admin. Repeatable.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Print a new API key once, and the settings entry (its SHA-256) to add to COOPSCORE_API_KEYS."""
    from coopscore.settings import ApiKeyEntry
    from serving.auth import hash_key, new_key

    wanted = [s for part in scopes for s in part.split(",") if s]
    try:
        entry = ApiKeyEntry(name=name, sha256="0" * 64, scopes=tuple(wanted))  # type: ignore[arg-type]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scopes") from exc
    key = new_key()
    entry = entry.model_copy(update={"sha256": hash_key(key)})
    if as_json:
        emit_json({"key": key, "entry": entry.model_dump(mode="json")})
        return
    console.print("[bold]API key (shown once, store it now):[/bold]")
    sys.stdout.write(key + "\n")
    console.print("Add this entry to the JSON list in COOPSCORE_API_KEYS:")
    console.print(json.dumps(entry.model_dump(mode="json")), soft_wrap=True, highlight=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    demo_key: Annotated[
        bool, typer.Option(help="Add a fresh all-scope key for this run only and print a curl example.")
    ] = False,
) -> None:
    """Serve the score API (uvicorn): loads and verifies the champion at start-up."""
    import os

    import uvicorn

    if demo_key:
        from coopscore.settings import get_settings
        from serving.auth import hash_key, new_key

        key = new_key()
        entries = [e.model_dump(mode="json") for e in get_settings().api_keys]
        entries.append(
            {"name": "demo", "sha256": hash_key(key), "scopes": ["score", "ingest", "read", "admin"]}
        )
        # Settings are read from the environment by the app factory (also in worker processes).
        os.environ["COOPSCORE_API_KEYS"] = json.dumps(entries)
        get_settings.cache_clear()
        member = _some_member_id()
        console.print(f"[bold]demo API key (this run only):[/bold] {key}")
        console.print(
            f"curl -s -X POST http://{host}:{port}/v1/score -H 'X-API-Key: {key}' "
            "-H 'Content-Type: application/json' "
            f"""-d '{{"member_id": "{member}", "amount_cny": 8000, "term_months": 12, """
            """"purpose": "livestock", "explain": "all"}'""",
            soft_wrap=True,
            highlight=False,
        )

    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


def _some_member_id() -> str:
    """A member with an online vector, for the demo curl (any id works in the example otherwise)."""
    from coopscore.settings import get_settings
    from features.online.factory import online_store

    settings = get_settings()
    if settings.online_store_path.exists():
        try:
            with online_store(settings) as store:
                ids = store.member_ids(limit=1)
        except Exception:  # only the demo curl's example id depends on it: fall back, never fail
            ids = []
        if ids:
            return ids[0]
    return "M0000001"


def _register_job_commands() -> None:
    """Commands of the later lifecycle stages live in their own modules (each adds its commands)."""
    from coopscore import cli_audit, cli_features, cli_monitor, cli_train

    app.add_typer(cli_features.app, name="features", help="Feature store: materialize, get, list.")
    cli_train.register(app)
    cli_monitor.register(app)
    cli_audit.register(app)


_register_job_commands()


def main() -> None:
    """Entry point for `python -m coopscore`."""
    app()
