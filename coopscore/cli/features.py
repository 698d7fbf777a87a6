"""`coopscore features ...`: materialize member vectors, read one, list the feature registry.

Heavy modules (DuckDB, pandas, the store) are imported inside the commands, so `coopscore --help`
stays fast. Every command takes `--json` to print exactly one JSON object.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated

import typer

from coopscore.cli.output import JsonInsteadOfTablesOption, emit

app = typer.Typer(help="Feature store: materialize, get, list.", no_args_is_help=True)


def _json_number(value: float) -> float | int | None:
    """NaN (an undefined feature) becomes null; whole numbers print without a fraction."""
    if math.isnan(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _parse_instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise typer.BadParameter(f"not an ISO-8601 time: {text!r}") from error
    # A time without an offset is read as UTC, the project's only time zone for data.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@app.command()
def materialize(
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Instant the vectors describe (ISO-8601, UTC if no offset); default now. "
            "E.g. --as-of 2024-06-30T00:00:00Z."
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1, help="DuckDB threads (default: all cores), e.g. --threads 2; Spark: COOPSCORE_SPARK_*."
        ),
    ] = None,
    memory_limit: Annotated[str, typer.Option(help="DuckDB memory limit, e.g. 3GB.")] = "3GB",
    json_output: JsonInsteadOfTablesOption = False,
) -> None:
    """Compute every member's vector as of now (or --as-of) and swap it into the online store.

    The engine is `COOPSCORE_OFFLINE_ENGINE` (duckdb, or spark: built by Spark and, for a Redis store,
    written from its executors). Exit 1 with one line when the engine cannot run (no Java, no pyspark).
    """
    from coopscore.cli.output import EXIT_ERROR, fail
    from coopscore.settings import get_settings
    from features.materialize import materialize as run_materialize
    from features.offline_engines.base import OfflineEngineError
    from features.offline_engines.factory import offline_engine
    from features.online.factory import online_store

    settings = get_settings()
    moment = _parse_instant(as_of) if as_of else datetime.now(UTC)
    try:
        engine = offline_engine(settings, threads=threads, memory_limit=memory_limit)
    except OfflineEngineError as error:
        fail(
            str(error),
            EXIT_ERROR,
            label="offline engine",
            payload={"error": str(error)} if json_output else None,
            soft_wrap=True,  # one line, however long
        )
    store = online_store(settings)
    try:
        report = run_materialize(
            events_dir=settings.offline_events,
            tables_dir=settings.offline_tables,
            store=store,
            as_of=moment,
            engine=engine,
            store_url=settings.online_store_url.url,
        )
    except OfflineEngineError as error:
        fail(
            str(error),
            EXIT_ERROR,
            label="offline engine",
            payload={"error": str(error)} if json_output else None,
            soft_wrap=True,  # one line, however long
        )
    finally:
        store.close()
        engine.close()
    payload = {
        "as_of": report.as_of.isoformat(),
        "generation": report.generation,
        "members": report.members,
        "features": report.features,
        "feature_set_version": report.feature_set_version,
        "build_seconds": round(report.build_seconds, 3),
        "write_seconds": round(report.write_seconds, 3),
        "engine": report.engine,
        "writers": report.writers,
        "store": settings.online_store_url.display(),
    }
    if json_output:
        emit(payload)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="materialized", show_header=False)
    for key, value in payload.items():
        table.add_row(key, str(value))
    Console().print(table)


@app.command()
def get(
    member_id: Annotated[str, typer.Argument(help="Member whose live vector to print.")],
    json_output: JsonInsteadOfTablesOption = False,
) -> None:
    """Print one member's live feature vector from the online store."""
    from coopscore.settings import get_settings
    from features.catalog import default_registry
    from features.online.factory import online_store, online_store_exists

    settings = get_settings()
    exists = online_store_exists(settings)
    vector = None
    if exists:
        store = online_store(settings)
        try:
            vector = store.online_read([member_id])[0]
        finally:
            store.close()
    if vector is None:
        reason = "no vector for this member" if exists else "no online store yet"
        if json_output:
            emit({"member_id": member_id, "found": False, "error": reason})
        else:
            typer.echo(f"{member_id}: {reason} (run `coopscore features materialize`)", err=True)
        raise typer.Exit(code=1)
    if json_output:
        emit(
            {
                "member_id": vector.member_id,
                "found": True,
                "as_of": vector.as_of.isoformat(),
                "feature_set_version": vector.feature_set_version,
                "features": {k: _json_number(v) for k, v in vector.features.items()},
            }
        )
        return
    from rich.console import Console
    from rich.table import Table

    registry = default_registry()
    stale = vector.feature_set_version != registry.version
    table = Table(
        title=f"{vector.member_id} as of {vector.as_of.isoformat()} "
        f"(feature set {vector.feature_set_version}{', not the current set' if stale else ''})"
    )
    for column in ("feature", "value", "group", "description"):
        table.add_column(column)
    for name, value in vector.features.items():
        feature = registry.by_name.get(name)
        shown = _json_number(value)
        table.add_row(
            name,
            "—" if shown is None else f"{shown:,}" if isinstance(shown, int) else f"{shown:,.4g}",
            feature.reason_group if feature else "",
            feature.description_en if feature else "",
        )
    Console().print(table)


@app.command("list")
def list_features(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the generated reference (docs/features.md).")
    ] = False,
    json_output: JsonInsteadOfTablesOption = False,
) -> None:
    """Print the feature registry: name, window, direction, group and zh/en description."""
    from features.catalog import default_registry, feature_table_rows, render_feature_reference

    registry = default_registry()
    if markdown:
        typer.echo(render_feature_reference(registry), nl=False)
        return
    rows = list(feature_table_rows(registry))
    if json_output:
        emit(
            {
                "feature_set_version": registry.version,
                "count": len(rows),
                "reason_groups": [g.model_dump() for g in registry.reason_groups],
                "features": rows,
            }
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"coopscore features ({len(rows)}, feature set {registry.version})",
        show_lines=False,
    )
    for column in ("name", "window", "direction", "group", "中文", "English"):
        table.add_column(column, overflow="fold")
    for row in rows:
        direction = {1: "+1", -1: "−1", 0: "none"}[row["direction"]]
        table.add_row(
            row["name"],
            row["window"],
            direction,
            row["reason_group"],
            row["description_zh"],
            row["description_en"],
        )
    Console().print(table)
