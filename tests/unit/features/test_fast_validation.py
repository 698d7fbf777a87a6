"""Property: for small chunks, the light query plus Arrow checks (`ValidationPlan.light_sql`,
`fast_check`) return exactly what the main validation query returns: the same bad and fix flags, key
hashes, type codes and typed values, so the same records are accepted, patched and rejected (their
reasons always come from the one detail query).

Each example is a batch of rows of every event type, valid ones and ones mutated in random columns with
values chosen to sit on the edges of the rules: blanks, padding, NaN and infinities, bounds and caps,
the clock-skew horizon, unknown types and enum values, ids just inside and outside the pattern. The
batch is checked as text (as the API sends it), with some columns dictionary-encoded, and with some
columns typed (as a Parquet export carries them).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contracts import COMMON_FIELDS, EVENT_TYPES, REFERENCE_CONTRACTS, WIDE_EVENT_CONTRACT
from features.ingest import FAST_CHECK_ROWS, _conform, new_connection
from features.validation import (
    EVENTS,
    Limits,
    clean_text_columns,
    contract_for,
    matching_id_columns,
    validation_plan,
)
from tests.utils.feeds import NOW, VALID_PAYLOADS, event_row

EDGE_VALUES = (
    "",
    " ",
    "  ",
    "\t",
    "x",
    " x ",
    "0",
    "-0",
    "-1",
    "1",
    "3",
    " 3 ",
    "3650",
    "3651",
    "2.5",
    "-0.0001",
    "1e6",
    "1000000",
    "1000000.0001",
    "5000000",
    "5000000.01",
    "1e400",
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-inf",
    "Infinity",
    "0x10",
    "1,5",
    "true",
    "false",
    "TRUE",
    "t",
    "yes",
    "1.0",
    "2147483648",
    "2025-03-05",
    "2025-03-05T08:00:00Z",
    "2025-03-05 08:00:00",
    "2025-03-05T08:00:00+08:00",
    "2025-03-05T10:00:00.123456Z",
    "2025-02-30T00:00:00Z",
    "2026-06-01T00:04:59Z",
    "2026-06-01T00:05:00Z",
    "2026-06-01T00:05:01Z",
    "2099-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "玉米",
    "茶叶 ",
    "A",
    "a",
    "D",
    "join",
    "leave",
    "Join",
    "member",
    "board",
    "in",
    "out",
    "seed",
    "bookkeeping",
    "drip_irrigation",
    "m0001",
    " m0001",
    "m0001 ",
    "m 1",
    "-m",
    "_m",
    "m:1.2-3_4",
    "a" * 64,
    "a" * 65,
    "é",
    "m\u202e1",
    "L1",
    *EVENT_TYPES,
    "unknown_type",
    "Membership",
)
COLUMNS = tuple(WIDE_EVENT_CONTRACT.names)
_SQL_TYPES = {
    "double": "DOUBLE",
    "int32": "INTEGER",
    "bool": "BOOLEAN",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
}
COMMON = tuple(f.name for f in COMMON_FIELDS)
LIMIT_CHOICES = (
    Limits(5_000_000, 1_000_000, NOW, 300),
    Limits(1e6, 2.5, NOW + timedelta(days=3, microseconds=7), 0),
    Limits(100.0, 1e9, datetime(2025, 3, 5, 9, 0), 3600),  # naive: read as UTC, as DuckDB does
)


def _base_row(index: int, etype: str) -> dict[str, str | None]:
    row: dict[str, str | None] = dict(event_row(event_id=f"e{index:04d}", event_type=etype))
    row.update(VALID_PAYLOADS[etype])
    return row


# Values on the edges of each kind of rule, tried more often on the columns of that kind.
NUMBER_EDGES = (
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-inf",
    "0",
    "-0",
    "-0.0001",
    "1e6",
    "1000000.0001",
    "100",
    "100.0001",
    "2.5",
    "2.5000001",
    "3650",
    "3651",
    "-1",
    "1e400",
    "5000000",
    "5000000.01",
)
TIME_EDGES = (
    "2026-06-01T00:04:59Z",
    "2026-06-01T00:05:00Z",
    "2026-06-01T00:05:00.000001Z",
    "2026-06-04T00:05:00.000007Z",
    "2026-06-04T00:05:00.000008Z",
    "2025-03-05T09:00:00Z",
    "2025-03-05T10:00:00Z",
    "2025-03-05T10:00:00.000001Z",
    "2025-03-05T07:59:59.999999Z",
    "infinity",
    "-infinity",
    "2025-03-05 10:00:00+02",
)


def _edges_for(column: str) -> tuple[str, ...]:
    if column in ("quantity_kg", "amount_cny", "days_late"):
        return NUMBER_EDGES
    if column in ("event_time", "recorded_at", "due_date"):
        return TIME_EDGES
    return EDGE_VALUES


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, str | None]]:
    """Valid rows of random types, most of them mutated: a cell (mostly one the row's type checks)
    set to an edge value of its kind or another, emptied, or its times made equal."""
    size = draw(st.integers(min_value=1, max_value=40))
    rows = []
    for i in range(size):
        etype = draw(st.sampled_from(EVENT_TYPES))
        row = _base_row(i, etype)
        own = [name for name in COLUMNS if name in row and name in (*COMMON, *VALID_PAYLOADS[etype])]
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            column = draw(
                st.sampled_from(own) if draw(st.booleans()) or not own else st.sampled_from(COLUMNS)
            )
            row[column] = draw(
                st.one_of(
                    st.sampled_from(_edges_for(column)),
                    st.sampled_from(_edges_for(column)),
                    st.sampled_from(EDGE_VALUES),
                    st.none(),
                    st.text(max_size=6),
                )
            )
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            row["recorded_at"] = row["event_time"]
        rows.append(row)
    return rows


def _records(rows: list[dict[str, str | None]], layout: str) -> pa.Table:
    """The batch as a chunk would arrive: all text, text with dictionary-encoded codes, or with some
    columns typed as a Parquet export has them (cells that do not parse become NULL there)."""
    columns: dict[str, pa.Array] = {
        name: pa.array([r.get(name) or None if layout != "text" else r.get(name) for r in rows], pa.string())
        for name in COLUMNS
    }
    if layout == "dictionary":
        for name in ("event_type", "coop_id", "product", "quality_grade", "member_id"):
            columns[name] = columns[name].dictionary_encode()
    elif layout in ("typed", "all typed"):
        con = duckdb.connect()
        typed = {"amount_cny": "DOUBLE", "days_late": "INTEGER", "verified": "BOOLEAN"}
        if layout == "all typed":  # every column as its contract types it: nothing left to type
            typed = {
                f.name: _SQL_TYPES[str(f.type)]
                for f in WIDE_EVENT_CONTRACT.fields
                if str(f.type) in _SQL_TYPES
            }
        con.register("text_in", pa.table({name: columns[name] for name in typed}))
        cast = con.sql(
            "SELECT " + ", ".join(f"TRY_CAST({n} AS {t}) AS {n}" for n, t in typed.items()) + " FROM text_in"
        ).to_arrow_table()
        con.close()
        for name in typed:
            columns[name] = (
                cast.column(name).combine_chunks().cast(WIDE_EVENT_CONTRACT.arrow_schema().field(name).type)
            )
    return _conform(pa.table(columns), contract_for(EVENTS))


def _assert_same(records: pa.Table, table_kind: str, limits: Limits, con: duckdb.DuckDBPyConnection) -> None:
    contract = contract_for(table_kind)
    plan = validation_plan(
        table_kind,
        records.schema,
        limits,
        clean_text_columns(records, contract),
        matching_id_columns(records, contract),
    )
    source = records.append_column("_seq", pa.array(np.arange(records.num_rows, dtype=np.int64)))
    con.register("chunk_in", source)
    try:
        full = con.sql(plan.sql("chunk_in") + " ORDER BY _seq").to_arrow_table()
        light = con.sql(plan.light_sql("chunk_in") + " ORDER BY _seq").to_arrow_table()
    finally:
        con.unregister("chunk_in")
    fast = plan.fast_check(records, light)
    for name in full.column_names:
        assert fast.column(name).type == full.column(name).type, name
        assert _cells(fast.column(name)) == _cells(full.column(name)), name


def _cells(column: pa.ChunkedArray) -> list[object]:
    """The values, with NaN as a string (NaN never equals itself, but a NaN the two paths agree on
    must compare equal); timestamps as integers (DuckDB's infinities are beyond Python's dates)."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return ["NaN" if isinstance(v, float) and math.isnan(v) else v for v in column.to_pylist()]


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    return new_connection()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=batches(),
    layout=st.sampled_from(("text", "blank-as-null", "dictionary", "typed", "all typed")),
    limits=st.sampled_from(LIMIT_CHOICES),
)
def test_fast_check_matches_the_main_query_on_events(
    con: duckdb.DuckDBPyConnection, rows: list[dict[str, str | None]], layout: str, limits: Limits
) -> None:
    _assert_same(_records(rows, layout), EVENTS, limits, con)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    table_kind=st.sampled_from(sorted(REFERENCE_CONTRACTS)),
    cells=st.lists(
        st.lists(st.one_of(st.sampled_from(EDGE_VALUES), st.none()), min_size=8, max_size=8),
        min_size=1,
        max_size=20,
    ),
)
def test_fast_check_matches_the_main_query_on_reference_tables(
    con: duckdb.DuckDBPyConnection, table_kind: str, cells: list[list[str | None]]
) -> None:
    names = REFERENCE_CONTRACTS[table_kind].names
    records = pa.table(
        {name: pa.array([row[i] for row in cells], pa.string()) for i, name in enumerate(names)}
    )
    _assert_same(records, table_kind, LIMIT_CHOICES[0], con)


def test_the_fast_check_sees_every_rule() -> None:
    """Every rule with a per-row test has its Arrow counterpart (a rule added to the SQL only would
    make the fast path accept what the main query rejects)."""
    records = _records([_base_row(0, t) for t in EVENT_TYPES], "text")
    for table_kind in (EVENTS, *REFERENCE_CONTRACTS):
        contract = contract_for(table_kind)
        chunk = (
            records
            if table_kind == EVENTS
            else pa.table({n: pa.nulls(1, pa.string()) for n in contract.names})
        )
        plan = validation_plan(table_kind, chunk.schema, LIMIT_CHOICES[0])
        assert plan.checks
        assert plan.light_sql("x") != plan.sql("x")
    assert FAST_CHECK_ROWS >= 100  # an API call of the default size takes the fast path


def test_a_naive_clock_is_read_as_utc() -> None:
    naive = Limits(5_000_000, 1_000_000, datetime(2026, 6, 1), 300)
    aware = Limits(5_000_000, 1_000_000, datetime(2026, 6, 1, tzinfo=UTC), 300)
    records = _records([_base_row(0, "savings_deposit")], "text")
    assert (
        validation_plan(EVENTS, records.schema, naive).checks
        == validation_plan(EVENTS, records.schema, aware).checks
    )


@pytest.mark.parametrize("shift", [timedelta(0), timedelta(days=400, microseconds=3), -timedelta(hours=5)])
def test_a_plan_moved_to_another_clock_is_the_plan_made_for_it(shift: timedelta) -> None:
    records = _records([_base_row(i, t) for i, t in enumerate(EVENT_TYPES)], "text")
    first = LIMIT_CHOICES[0]
    later = Limits(first.max_amount_cny, first.max_quantity_kg, first.now + shift, first.clock_skew_seconds)
    moved = validation_plan(EVENTS, records.schema, first).at(later)
    assert moved == validation_plan(EVENTS, records.schema, later)
    with pytest.raises(ValueError, match="only be moved to another clock"):
        moved.at(Limits(1.0, first.max_quantity_kg, first.now, first.clock_skew_seconds))


def test_a_chunk_with_nothing_to_type_is_checked_too(con: duckdb.DuckDBPyConnection) -> None:
    """Typed columns and clean text: the light query has no column to parse (it once had no FROM)."""
    records = _records([_base_row(i, t) for i, t in enumerate(EVENT_TYPES)], "all typed")
    plan = validation_plan(
        EVENTS, records.schema, LIMIT_CHOICES[0], clean_text_columns(records, contract_for(EVENTS))
    )
    assert all(output == "passthrough" for output in plan.outputs.values())
    _assert_same(records, EVENTS, LIMIT_CHOICES[0], con)
