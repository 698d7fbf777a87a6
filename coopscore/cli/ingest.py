"""`coopscore ingest` and `coopscore events ...`: feed files into the event log, and inspect it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from coopscore.cli.output import JsonOption, console, debug_enabled, emit, fail, progress_bar

if TYPE_CHECKING:
    from features.ingest import IngestReport

EXIT_INGEST_FILES_FAILED = 4
# Months listed one by one in `events stats` (the earlier ones are summed in one row).
MONTHS_SHOWN = 24

app = typer.Typer()
events_app = typer.Typer(help="Inspect the event log.", no_args_is_help=True)


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
        str | None,
        typer.Option(
            help="Sheet to read from Excel workbooks (default: the first sheet), e.g. --sheet deliveries."
        ),
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
        with progress_bar(not as_json) as bar:
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
        fail(str(exc))
    except Exception as exc:
        if debug or debug_enabled():
            raise
        message = f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"
        if as_json:
            emit({"error": message})
        console.print(
            f"[red]{message}[/red]\nThe batch was left unfinished; the next `coopscore ingest` recovers it "
            "and stores what is missing. Run with --debug for the traceback."
        )
        raise typer.Exit(1) from None
    finally:
        ledger.close()
    if as_json:
        emit(report.to_dict())
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
                f" ({totals['quarantined_before']:,} "
                + ("was" if totals["quarantined_before"] == 1 else "were")
                + " in quarantine already, not written again)"
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
        emit(stats)
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
        rows = list(stats[key].items())
        if key == "by_month" and len(rows) > MONTHS_SHOWN:
            # Join dates reach back years; the table shows the recent months, --json has them all.
            earlier = rows[:-MONTHS_SHOWN]
            table.add_row(f"before {rows[-MONTHS_SHOWN][0]}", f"{sum(c for _, c in earlier):,}")
            rows = rows[-MONTHS_SHOWN:]
        for name, count in rows:
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
