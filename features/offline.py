"""Point-in-time offline builder: every feature as of each row of a spine, computed by DuckDB.

The feature declarations (`features.catalog`) compile to one SQL query written in the dialect DuckDB
and Spark SQL share (CTEs, joins, `FILTER (WHERE ...)` aggregates, `ROW_NUMBER`/running `SUM` window
functions, `YEAR`/`DAYOFYEAR`/`HOUR`/`MINUTE`/`SECOND`, `FLOOR`, `INTERVAL 'n' DAY`,
`BIT_OR`/`BIT_COUNT`, `LEAST`/`GREATEST`). Everything
engine-specific (the Parquet scan, UTC timestamp casts, settings) lives in `DuckDBEngine`, the one
small adapter; the Spark engine (`features.offline_engines.spark`) registers the same relation names
and runs the same text, so the declarations have one compiled form for both engines.

Point-in-time rule, for a spine row (member, as_of):
- an event counts iff `event_time < as_of` and `recorded_at <= as_of`;
- each `event_id` counts once: of its copies visible as of `as_of`, the earliest-recorded (ties:
  earlier `event_time`, then payload), so a copy not visible yet can never hide or replace one;
- a window of N days covers `[as_of - N days, as_of)`;
- a month is elapsed time, `SECONDS_PER_MONTH` (30.4375 days), with timestamps read to the whole
  second: `months_since_*` is the whole months elapsed from the event to as_of (floored);
  `distinct_months` counts the month-long spans counted back from as_of that hold an event.
  Calendar months would make a vector depend on the day of the month it is computed on (as of the
  1st vs the 15th). Whole months, not fractional ones: a fraction would carry the phase of monthly
  schedules (a cooperative meets on its own day each month), so vectors all computed at one
  instant would differ from vectors spread over the month by that phase alone;
- the member's cooperative and village are those of their latest visible `join` event;
- peer default rates use outcomes known by `as_of` (`max(observed_at, applied_at) <= as_of`), never
  the spine row's own application; an outcome's village is its applicant's village when applying.

Performance shape: one pass per event type joining the spine to that type's events by member with
the bitemporal condition, all windows as conditional aggregates of that one join; peer signals as
running sums over a time-ordered union (no range join). The dedupe step runs only for event types
where the adapter finds a repeated id (ingestion stores each id once, so normally none), because
it costs more than the rest of that type's pass.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from features.catalog import (
    Condition,
    Feature,
    FeatureRegistry,
    application_features,
    default_registry,
)
from features.contracts import (
    APPLICATION_CONTRACT,
    EVENT_CONTRACTS,
    EVENT_PAYLOADS,
    EVENT_TYPES,
    OUTCOME_CONTRACT,
    TableContract,
)
from features.offline_engines.base import Location, OfflineEngine, OfflineEngineError

if TYPE_CHECKING:
    import duckdb

# Relation names the adapter registers and the generated SQL reads.
SPINE_RELATION: Final = "spine_input"
APPLICATIONS_RELATION: Final = "raw_applications"
OUTCOMES_RELATION: Final = "raw_outcomes"
SPINE_COLUMNS: Final = ("request_id", "member_id", "as_of")

_COMMON_COLUMNS: Final = ("event_id", "member_id", "coop_id", "event_time", "recorded_at")
# Latest event first; copies of one event_id: the earliest-recorded (as in the dedupe rule).
_LATEST_ORDER: Final = "e.event_time DESC, e.event_id DESC, e.recorded_at ASC"
_RUNNING: Final = "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
# One month of elapsed time: 30.4375 days (365.25 / 12), in seconds.
SECONDS_PER_MONTH: Final = 2_629_800


def raw_event_relation(event_type: str) -> str:
    """Name of the relation holding one event type's stored rows (timestamps as UTC TIMESTAMP)."""
    return f"raw_{event_type}"


# --------------------------------------------------------------------------------------------------
# SQL generation (engine-neutral)
# --------------------------------------------------------------------------------------------------


def _literal(value: str | int | float) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _condition_sql(cond: Condition, alias: str = "e") -> str:
    column = f"{alias}.{cond.column}"
    if cond.op == "is_true":
        return f"{column} = TRUE"
    if cond.op == "is_false":
        return f"{column} = FALSE"
    if cond.op == "in":
        assert isinstance(cond.value, tuple)
        return f"{column} IN ({', '.join(_literal(v) for v in cond.value)})"
    assert cond.value is not None and not isinstance(cond.value, tuple)
    symbol = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}[cond.op]
    return f"{column} {symbol} {_literal(cond.value)}"


def _window_start(days: int) -> str:
    return f"start_{days}d"


def _visible(alias: str = "e", spine: str = "s") -> str:
    """The bitemporal rule as a join condition."""
    return (
        f"{alias}.member_id = {spine}.member_id AND {alias}.event_time < {spine}.as_of "
        f"AND {alias}.recorded_at <= {spine}.as_of"
    )


def _as_double(expr: str) -> str:
    return f"CAST({expr} AS DOUBLE)"


def _as_bigint(expr: str) -> str:
    return f"CAST({expr} AS BIGINT)"


def _epoch_seconds(stamp: str) -> str:
    """Whole seconds since 1970-01-01 of a UTC TIMESTAMP, in functions DuckDB and Spark share.

    Neither `epoch` (DuckDB) nor `unix_timestamp` (Spark) exists in the other engine, so the day
    number is counted from the calendar: 365 days a year since 1970 plus the leap days before
    `YEAR`, then the day of the year and the time of day (sub-second digits are dropped).
    """
    year = f"YEAR({stamp})"
    days = (
        f"365 * ({year} - 1970) + FLOOR(({year} - 1969) / 4) - FLOOR(({year} - 1901) / 100) "
        f"+ FLOOR(({year} - 1601) / 400) + DAYOFYEAR({stamp}) - 1"
    )
    return _as_bigint(f"({days}) * 86400 + HOUR({stamp}) * 3600 + MINUTE({stamp}) * 60 + SECOND({stamp})")


def _elapsed_seconds(alias: str = "e", spine: str = "s") -> str:
    """Whole seconds from an event to its spine row's as_of."""
    return f"({spine}.as_of_second - {alias}.event_second)"


class _Compiler:
    """Compiles a registry's member features into one SELECT keyed by `spine_row`."""

    def __init__(
        self, registry: FeatureRegistry, deduplicate: Collection[str], *, ordered: bool = True
    ) -> None:
        self.registry = registry
        self.deduplicate = deduplicate
        self.ordered = ordered
        self.partials: dict[str, dict[str, str]] = {}  # source -> partial SQL -> alias
        self.event_columns: dict[str, dict[str, str]] = {}  # source -> per-event SQL -> alias
        self.latest_columns: dict[str, set[str]] = {}  # source -> columns of its latest event
        self.window_days: set[int] = set()
        self.second_sources: set[str] = set()  # event types that need `event_second`
        self.lifetime_sources: set[str] = set()
        self.lower_bound: dict[str, int] = {}  # source -> widest window (when none is lifetime)
        self.needs_entity = False
        self.peer_entities: set[str] = set()
        self.needs_member_count = False
        self.exprs: dict[str, str] = {}

    # ---- partial aggregates, one CTE per event type ----

    def _event_column(self, source: str, sql: str, stem: str) -> str:
        """A value computed once per event (not once per spine x event pair)."""
        columns = self.event_columns.setdefault(source, {})
        if sql not in columns:
            columns[sql] = f"{stem}_{len(columns)}"
        return f"e.{columns[sql]}"

    def _partial(self, source: str, sql: str) -> str:
        aliases = self.partials.setdefault(source, {})
        if sql not in aliases:
            aliases[sql] = f"p{len(aliases)}"
        return f"a_{source}.{aliases[sql]}"

    def _filters(self, feature: Feature) -> list[str]:
        conds: list[str] = []
        if feature.window_days is not None:
            start = feature.window_offset_days + feature.window_days
            self.window_days.add(start)
            conds.append(f"e.event_time >= s.{_window_start(start)}")
            if feature.window_offset_days:
                self.window_days.add(feature.window_offset_days)
                conds.append(f"e.event_time < s.{_window_start(feature.window_offset_days)}")
        conds += [_condition_sql(c) for c in feature.where]
        return conds

    def _note_window(self, feature: Feature, source: str) -> None:
        if feature.window_days is None:
            self.lifetime_sources.add(source)
        else:
            span = feature.window_days + feature.window_offset_days
            self.lower_bound[source] = max(self.lower_bound.get(source, 0), span)

    def _event_expr(self, f: Feature) -> str:
        conds = self._filters(f)
        where = f" FILTER (WHERE {' AND '.join(conds)})" if conds else ""
        col = f"e.{f.column}" if f.column else ""
        refs: list[str] = []
        for source in f.sources:
            self._note_window(f, source)
            if f.aggregation == "count":
                sql = "COUNT(*)" + where
            elif f.aggregation == "sum":
                sql = f"SUM({col})" + where
            elif f.aggregation == "mean":
                sql = f"AVG({_as_double(col)})" + where
            elif f.aggregation == "max":
                sql = f"MAX({col})" + where
            elif f.aggregation == "distinct_months":
                # Months counted back from as_of: an event `k` whole months before as_of sets bit
                # k (k <= 11 inside a 365-day window), OR-ed over the window, counted. The bit
                # depends on the spine row, so it is computed per pair, not per event.
                self.second_sources.add(source)
                month_back = f"FLOOR({_elapsed_seconds()} / {SECONDS_PER_MONTH})"
                sql = f"BIT_OR({_as_bigint(f'POWER(2, {month_back})')})" + where
            elif f.aggregation == "distinct_values":
                enum = next(s.enum for s in EVENT_PAYLOADS[source] if s.name == f.column)
                assert enum is not None
                cases = " ".join(f"WHEN {_literal(v)} THEN {1 << i}" for i, v in enumerate(enum))
                bit = self._event_column(source, f"CASE {f.column} {cases} ELSE 0 END", f"{f.column}_bit")
                sql = f"BIT_OR({bit})" + where
            elif f.aggregation in ("months_since_first", "months_since_last"):
                self.second_sources.add(source)
                func = "MIN" if f.aggregation == "months_since_first" else "MAX"
                sql = f"{func}(e.event_second)" + where
            else:  # latest_in
                assert f.column is not None
                self.latest_columns.setdefault(source, set()).add(f.column)
                values = ", ".join(_literal(v) for v in f.values)
                return _as_bigint(f"CASE WHEN l_{source}.{f.column} IN ({values}) THEN 1 ELSE 0 END")
            refs.append(self._partial(source, sql))
        return self._combine(f, refs)

    @staticmethod
    def _combine(f: Feature, refs: list[str]) -> str:
        if f.aggregation == "count":
            return _as_bigint(" + ".join(f"COALESCE({r}, 0)" for r in refs))
        if f.aggregation == "sum":
            return _as_double(f"COALESCE({refs[0]}, 0)")
        if f.aggregation in ("mean", "max"):
            return _as_double(refs[0])
        if f.aggregation in ("distinct_months", "distinct_values"):
            return _as_bigint(f"COALESCE(BIT_COUNT({refs[0]}), 0)")
        # months_since_*: LEAST/GREATEST skip NULLs in DuckDB and Spark alike (need 2+ args)
        func = "LEAST" if f.aggregation == "months_since_first" else "GREATEST"
        second = refs[0] if len(refs) == 1 else f"{func}({', '.join(refs)})"
        return _as_double(f"FLOOR((s.as_of_second - {second}) / {SECONDS_PER_MONTH})")

    def _derived_expr(self, f: Feature) -> str:
        inputs = [f"({self.exprs[name]})" for name in f.inputs]
        if f.aggregation == "is_positive":
            return _as_bigint(f"CASE WHEN {inputs[0]} > 0 THEN 1 ELSE 0 END")
        a, b = (
            expr if self.registry.by_name[name].dtype == "float64" else _as_double(expr)
            for name, expr in zip(f.inputs, inputs, strict=True)
        )
        if f.aggregation == "ratio":
            return f"{a} / NULLIF({b}, 0)"
        if f.aggregation == "trend":
            return f"({a} - {b}) / NULLIF({a} + {b}, 0)"
        return f"{a} - {b}"  # difference

    def _peer_expr(self, f: Feature) -> str:
        self.needs_entity = True
        if f.aggregation == "member_count":
            self.needs_member_count = True
            return _as_bigint("COALESCE(cm.members, 0)")
        self.peer_entities.add(f.entity)
        alias = "pc" if f.entity == "cooperative" else "pv"
        if f.aggregation == "peer_outcome_count":
            return _as_bigint(f"COALESCE({alias}.outcomes, 0)")
        return f"{_as_double(f'{alias}.defaults')} / NULLIF({_as_double(f'{alias}.outcomes')}, 0)"

    def compile(self) -> str:
        for f in self.registry.member_features:
            if f.is_event_aggregate:
                self.exprs[f.name] = self._event_expr(f)
            elif f.aggregation in ("ratio", "trend", "difference", "is_positive"):
                self.exprs[f.name] = self._derived_expr(f)
            else:
                self.exprs[f.name] = self._peer_expr(f)
        return self._assemble()

    # ---- CTEs ----

    def _spine_cte(self) -> str:
        starts = "".join(
            f",\n    as_of - INTERVAL '{d}' DAY AS {_window_start(d)}" for d in sorted(self.window_days)
        )
        return (
            "spine AS (\n  SELECT spine_row, member_id, application_id, as_of,\n"
            f"    {_epoch_seconds('as_of')} AS as_of_second{starts}\n"
            f"  FROM {SPINE_RELATION}\n)"
        )

    def _used_columns(self, source: str) -> list[str]:
        if source in self.deduplicate:  # the dedupe order reads every payload column
            return EVENT_CONTRACTS[source].names
        used = set(_COMMON_COLUMNS)
        for f in self.registry.member_features:
            if source in f.sources:
                used.update(c for c in (f.column, *(w.column for w in f.where)) if c)
        used |= self.latest_columns.get(source, set())
        if source == "membership":
            used |= {"action", "village_id"}
        return [c for c in EVENT_CONTRACTS[source].names if c in used]

    def _event_relation_columns(self, source: str) -> list[str]:
        """Columns of `ev_<source>`, in order."""
        second = ["event_second"] if source in self.second_sources else []
        return [*self._used_columns(source), *second, *self.event_columns.get(source, {}).values()]

    def _events_select(self, source: str) -> str:
        """One event type's stored rows (every copy) with per-event helper columns."""
        cols = ", ".join(self._used_columns(source))
        second = f", {_epoch_seconds('event_time')} AS event_second" if source in self.second_sources else ""
        derived = "".join(f", {sql} AS {alias}" for sql, alias in self.event_columns.get(source, {}).items())
        return f"SELECT *{derived}\n    FROM (SELECT {cols}{second} FROM {raw_event_relation(source)}) typed"

    def _events_cte(self, source: str) -> str:
        return f"ev_{source} AS (\n  {self._events_select(source)}\n)"

    def _aggregate_cte(self, source: str, *, deduplicate: bool) -> str:
        """Partial aggregates of one event type per spine row, over its visible events.

        Each event_id counts once per spine row: among its copies visible as of `as_of`, the
        earliest-recorded (ties: earlier event_time, then payload). Visibility is applied before
        deduplication, so a copy that is not visible yet can never hide or replace one that is.
        With `deduplicate=False` (allowed only for a type proven free of repeated ids) the join is
        the plain one; the result is the same.
        """
        partials = ",\n    ".join(f"{sql} AS {alias}" for sql, alias in self.partials[source].items())
        visible = _visible()
        # Types without lifetime features only need their widest window: prune the join early.
        if source not in self.lifetime_sources and source in self.lower_bound:
            visible += f" AND e.event_time >= s.{_window_start(self.lower_bound[source])}"
        head = f"a_{source} AS (\n  SELECT s.spine_row,\n    {partials}\n"
        if not deduplicate:
            return head + f"  FROM spine s JOIN ev_{source} e ON {visible}\n  GROUP BY s.spine_row\n)"
        # The event rows are spelled out twice rather than shared as a CTE: engines may
        # materialize a CTE read twice, which here would hold every event in memory.
        events = self._events_select(source)
        payload = [c.name for c in EVENT_PAYLOADS[source]]
        order = ", ".join(f"e.{c} ASC NULLS LAST" for c in ("recorded_at", "event_time", *payload))
        return (
            f"dup_{source} AS (\n  SELECT event_id FROM {raw_event_relation(source)}\n"
            "  GROUP BY event_id HAVING COUNT(*) > 1\n),\n"
            f"seen_{source} AS (\n"
            "  SELECT s.spine_row, e.* FROM spine s JOIN (\n"
            f"    SELECT * FROM ({events}) u\n"
            f"    WHERE NOT EXISTS (SELECT 1 FROM dup_{source} d WHERE d.event_id = u.event_id)\n"
            f"  ) e ON {visible}\n"
            "  UNION ALL\n"
            f"  SELECT spine_row, {', '.join(self._event_relation_columns(source))} FROM (\n"
            "    SELECT s.spine_row, e.*, ROW_NUMBER() OVER (\n"
            f"      PARTITION BY s.spine_row, e.event_id ORDER BY {order}) AS copy_rank\n"
            "    FROM spine s JOIN (\n"
            f"      SELECT u.* FROM ({events}) u\n"
            f"      JOIN dup_{source} d ON d.event_id = u.event_id\n"
            f"    ) e ON {visible}\n"
            "  ) ranked WHERE copy_rank = 1\n),\n"
            + head
            + f"  FROM spine s JOIN seen_{source} e ON e.spine_row = s.spine_row\n"
            "  GROUP BY s.spine_row\n)"
        )

    @staticmethod
    def _latest_cte(
        name: str,
        *,
        keys: str,
        key: str,
        at: str,
        source: str,
        columns: Iterable[str],
        where: str = "",
    ) -> str:
        """Latest visible event of `source` per key (ties: later recorded, then larger event_id)."""
        cols = sorted(columns)
        picked = ", ".join(f"e.{c}" for c in cols)
        extra = f" AND {where}" if where else ""
        return (
            f"{name} AS (\n  SELECT {key}, {', '.join(cols)} FROM (\n"
            f"    SELECT k.{key}, {picked},\n"
            f"      ROW_NUMBER() OVER (PARTITION BY k.{key} ORDER BY {_LATEST_ORDER}) AS recency\n"
            f"    FROM {keys} k JOIN ev_{source} e ON e.member_id = k.member_id\n"
            f"      AND e.event_time < k.{at} AND e.recorded_at <= k.{at}{extra}\n"
            f"  ) ranked WHERE recency = 1\n)"
        )

    def _reference_ctes(self) -> list[str]:
        """Deduplicated applications/outcomes, each outcome with its coop, village and known_at."""
        return [
            "applications AS (\n  SELECT application_id, member_id, coop_id, applied_at FROM (\n"
            "    SELECT r.application_id, r.member_id, r.coop_id, r.applied_at,\n"
            "      ROW_NUMBER() OVER (PARTITION BY r.application_id\n"
            "        ORDER BY r.applied_at, r.member_id, r.coop_id) AS copy_rank\n"
            f"    FROM {APPLICATIONS_RELATION} r\n  ) ranked WHERE copy_rank = 1\n)",
            "outcomes AS (\n  SELECT application_id, defaulted, observed_at FROM (\n"
            "    SELECT r.application_id, r.defaulted, r.observed_at,\n"
            "      ROW_NUMBER() OVER (PARTITION BY r.application_id\n"
            "        ORDER BY r.observed_at, r.defaulted) AS copy_rank\n"
            f"    FROM {OUTCOMES_RELATION} r\n  ) ranked WHERE copy_rank = 1\n)",
            self._latest_cte(
                "application_village",
                keys="applications",
                key="application_id",
                at="applied_at",
                source="membership",
                columns=["village_id"],
                where="e.action = 'join'",
            ),
            "outcome_facts AS (\n"
            "  SELECT a.application_id, a.coop_id, v.village_id,\n"
            "    CASE WHEN o.defaulted THEN 1 ELSE 0 END AS defaulted,\n"
            "    CASE WHEN o.observed_at >= a.applied_at THEN o.observed_at ELSE a.applied_at END\n"
            "      AS known_at\n"
            "  FROM outcomes o JOIN applications a ON a.application_id = o.application_id\n"
            "  LEFT JOIN application_village v ON v.application_id = a.application_id\n)",
            "own_outcome AS (\n"
            "  SELECT s.spine_row, f.coop_id, f.village_id, f.defaulted\n"
            "  FROM spine s JOIN outcome_facts f ON f.application_id = s.application_id\n"
            "  WHERE f.known_at <= s.as_of\n)",
        ]

    @staticmethod
    def _peer_cte(entity: str) -> str:
        """Outcomes known by as_of in the row's coop/village, net of its own application."""
        key = "coop_id" if entity == "cooperative" else "village_id"
        return (
            f"peer_{entity}_timeline AS (\n"
            f"  SELECT f.{key} AS entity_key, f.known_at AS at_time, 0 AS kind,\n"
            "    f.defaulted AS defaults, 1 AS outcomes, CAST(-1 AS BIGINT) AS spine_row\n"
            f"  FROM outcome_facts f WHERE f.{key} IS NOT NULL\n"
            "  UNION ALL\n"
            f"  SELECT se.{key}, s.as_of, 1, 0, 0, s.spine_row\n"
            "  FROM spine s JOIN spine_entity se ON se.spine_row = s.spine_row\n"
            f"  WHERE se.{key} IS NOT NULL\n),\n"
            f"peer_{entity} AS (\n"
            f"  SELECT t.spine_row,\n"
            f"    t.defaults - COALESCE(CASE WHEN o.{key} = t.entity_key THEN o.defaulted END, 0)"
            " AS defaults,\n"
            f"    t.outcomes - COALESCE(CASE WHEN o.{key} = t.entity_key THEN 1 END, 0)"
            " AS outcomes\n"
            "  FROM (\n    SELECT spine_row, entity_key, kind,\n"
            "      SUM(defaults) OVER (PARTITION BY entity_key ORDER BY at_time, kind\n"
            f"        {_RUNNING}) AS defaults,\n"
            "      SUM(outcomes) OVER (PARTITION BY entity_key ORDER BY at_time, kind\n"
            f"        {_RUNNING}) AS outcomes\n"
            f"    FROM peer_{entity}_timeline\n  ) t\n"
            "  LEFT JOIN own_outcome o ON o.spine_row = t.spine_row\n"
            "  WHERE t.kind = 1\n)"
        )

    @staticmethod
    def _member_count_cte() -> str:
        """Distinct members whose join to the coop is visible by as_of, as a running count.

        A join event is visible at t iff event_time < t and recorded_at <= t: it becomes visible at
        the later of the two, strictly after event_time (rank 2 sorts after a spine row at the same
        instant) or at recorded_at inclusive (rank 0 sorts before it).
        """
        return (
            "coop_joins AS (\n  SELECT coop_id, visible_at, visible_rank FROM (\n"
            "    SELECT coop_id, visible_at, visible_rank,\n"
            "      ROW_NUMBER() OVER (PARTITION BY coop_id, member_id\n"
            "        ORDER BY visible_at, visible_rank) AS first_rank\n"
            "    FROM (\n      SELECT e.coop_id, e.member_id,\n"
            "        CASE WHEN e.event_time >= e.recorded_at THEN e.event_time ELSE e.recorded_at"
            " END\n          AS visible_at,\n"
            "        CASE WHEN e.event_time >= e.recorded_at THEN 2 ELSE 0 END AS visible_rank\n"
            "      FROM ev_membership e WHERE e.action = 'join'\n    ) joins\n"
            "  ) ranked WHERE first_rank = 1\n),\n"
            "coop_members AS (\n  SELECT spine_row, members FROM (\n"
            "    SELECT spine_row, kind, SUM(joined) OVER (PARTITION BY entity_key\n"
            f"      ORDER BY at_time, kind {_RUNNING}) AS members\n"
            "    FROM (\n"
            "      SELECT coop_id AS entity_key, visible_at AS at_time, visible_rank AS kind,\n"
            "        1 AS joined, CAST(-1 AS BIGINT) AS spine_row FROM coop_joins\n"
            "      UNION ALL\n"
            "      SELECT se.coop_id, s.as_of, 1, 0, s.spine_row\n"
            "      FROM spine s JOIN spine_entity se ON se.spine_row = s.spine_row\n"
            "      WHERE se.coop_id IS NOT NULL\n"
            "    ) timeline\n  ) t WHERE kind = 1\n)"
        )

    def _assemble(self) -> str:
        sources = [s for s in EVENT_TYPES if s in self.partials or s in self.latest_columns]
        if self.needs_entity and "membership" not in sources:
            sources.append("membership")
        ctes = [self._spine_cte()]
        ctes += [self._events_cte(s) for s in sources]
        ctes += [
            self._aggregate_cte(s, deduplicate=s in self.deduplicate) for s in sources if s in self.partials
        ]
        joins = [f"LEFT JOIN a_{s} ON a_{s}.spine_row = s.spine_row" for s in sources if s in self.partials]
        for source, columns in self.latest_columns.items():
            ctes.append(
                self._latest_cte(
                    f"l_{source}",
                    keys="spine",
                    key="spine_row",
                    at="as_of",
                    source=source,
                    columns=columns,
                )
            )
            joins.append(f"LEFT JOIN l_{source} ON l_{source}.spine_row = s.spine_row")
        if self.needs_entity:
            ctes.append(
                self._latest_cte(
                    "spine_entity",
                    keys="spine",
                    key="spine_row",
                    at="as_of",
                    source="membership",
                    columns=["coop_id", "village_id"],
                    where="e.action = 'join'",
                )
            )
        if self.peer_entities:
            ctes += self._reference_ctes()
            for entity in sorted(self.peer_entities):
                ctes.append(self._peer_cte(entity))
                alias = "pc" if entity == "cooperative" else "pv"
                joins.append(f"LEFT JOIN peer_{entity} {alias} ON {alias}.spine_row = s.spine_row")
        if self.needs_member_count:
            ctes.append(self._member_count_cte())
            joins.append("LEFT JOIN coop_members cm ON cm.spine_row = s.spine_row")
        select_list = ",\n  ".join(f"{expr} AS {name}" for name, expr in self.exprs.items())
        return (
            "WITH\n"
            + ",\n".join(ctes)
            + f"\nSELECT s.spine_row,\n  {select_list}\nFROM spine s\n"
            + "\n".join(joins)
            + ("\nORDER BY s.spine_row" if self.ordered else "")
        )


def compile_feature_sql(
    registry: FeatureRegistry, *, deduplicate: Collection[str] = EVENT_TYPES, ordered: bool = True
) -> str:
    """The engine-neutral SQL computing every member feature for each row of `spine_input`.

    Reads `spine_input(spine_row, member_id, application_id, as_of)`, `raw_<event_type>` and
    `raw_applications` / `raw_outcomes`, all timestamps as UTC `TIMESTAMP`; returns `spine_row` and
    one column per member feature, in registry order. `deduplicate` names the event types whose
    duplicate event_ids must be collapsed in the query; leave out only types proven duplicate-free.
    `ordered=False` drops the final `ORDER BY spine_row` (a distributed engine that does not collect
    the rows should not pay a global sort).
    """
    return _Compiler(registry, deduplicate, ordered=ordered).compile()


# --------------------------------------------------------------------------------------------------
# The DuckDB adapter (the only engine-specific code)
# --------------------------------------------------------------------------------------------------


class EngineConfig(BaseModel):
    """DuckDB resources for a build; defaults suit a 2-core, 8 GiB machine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threads: int | None = Field(None, ge=1, description="worker threads (default: all cores)")
    memory_limit: str = Field("3GB", description="DuckDB memory limit, e.g. '3GB'")
    temp_directory: Path | None = Field(None, description="spill directory (default: DuckDB's)")


_SIZE = re.compile(r"^\d+(\.\d+)?\s*[KMGT]i?B$", re.IGNORECASE)


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def local_folder(location: Location, engine: str) -> Path:
    """A local folder from a path or a `file:` URI; an object-store URI is refused in one line."""
    if isinstance(location, Path):
        return location
    if location.startswith("file://"):
        return Path(location.removeprefix("file://"))
    if "://" in location:
        raise OfflineEngineError(
            f"the {engine} offline engine reads local folders only, not {location!r}; "
            "set COOPSCORE_OFFLINE_ENGINE=spark to read an object store"
        )
    return Path(location)


class DuckDBEngine(OfflineEngine):
    """Registers the stored event log and tables in an in-process DuckDB and runs the feature SQL."""

    name = "duckdb"

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()

    def member_features(
        self, spine: pd.DataFrame, *, events_dir: Location, tables_dir: Location, registry: FeatureRegistry
    ) -> pa.Table:
        """Every member feature for each spine row (by `spine_row`), computed in process."""
        con = self.connect()
        try:
            self.register_sources(
                con,
                events_dir=local_folder(events_dir, self.name),
                tables_dir=local_folder(tables_dir, self.name),
            )
            self.register_spine(con, spine)
            duplicated = self.event_types_with_duplicates(con)
            return self.run(con, compile_feature_sql(registry, deduplicate=duplicated))
        finally:
            con.close()

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory connection, UTC, with the configured threads and memory limit."""
        import duckdb

        if not _SIZE.match(self.config.memory_limit):
            raise ValueError(f"memory_limit must look like '3GB', got {self.config.memory_limit!r}")
        con = duckdb.connect(
            config={
                "threads": self.config.threads or os.cpu_count() or 1,
                "memory_limit": self.config.memory_limit,
                "preserve_insertion_order": False,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            }
        )
        con.execute("SET TimeZone = 'UTC'")
        # Long builds would otherwise draw a progress bar on stdout, breaking `--json` output.
        con.execute("SET enable_progress_bar = false")
        if self.config.temp_directory is not None:
            con.execute(f"SET temp_directory = {_sql_path(self.config.temp_directory)}")
        return con

    @staticmethod
    def _register_parquet(
        con: duckdb.DuckDBPyConnection, relation: str, folder: Path, contract: TableContract
    ) -> None:
        """View `relation` over `folder/part-*.parquet` (or an empty table), timestamps naive UTC."""
        schema = contract.arrow_schema()
        # epoch_us -> make_timestamp is the UTC wall clock without a per-row ICU time-zone cast.
        select = ", ".join(
            f"make_timestamp(epoch_us({f.name})) AS {f.name}" if pa.types.is_timestamp(f.type) else f.name
            for f in schema
        )
        if any(folder.glob("part-*.parquet")):
            pattern = _sql_path(folder / "part-*.parquet")
            source = f"read_parquet({pattern}, hive_partitioning = false)"
        else:
            source = f"empty_{relation}"
            con.register(source, schema.empty_table())
        con.execute(f"CREATE OR REPLACE TEMP VIEW {relation} AS SELECT {select} FROM {source}")

    def register_sources(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        events_dir: Path,
        tables_dir: Path,
        event_types: Iterable[str] = EVENT_TYPES,
    ) -> None:
        """Register each event type's partition and the applications / outcomes tables.

        Member profiles are never registered: feature code cannot reach protected attributes.
        """
        for event_type in event_types:
            self._register_parquet(
                con,
                raw_event_relation(event_type),
                events_dir / f"event_type={event_type}",
                EVENT_CONTRACTS[event_type],
            )
        self._register_parquet(con, APPLICATIONS_RELATION, tables_dir / "applications", APPLICATION_CONTRACT)
        self._register_parquet(con, OUTCOMES_RELATION, tables_dir / "outcomes", OUTCOME_CONTRACT)

    @staticmethod
    def event_types_with_duplicates(
        con: duckdb.DuckDBPyConnection, event_types: Iterable[str] = EVENT_TYPES
    ) -> set[str]:
        """Event types in which some event_id may be stored more than once.

        Ingestion stores each id once, so the query's dedupe step is normally dead weight: it
        costs a hash aggregate and an anti-join over every event. This check sorts 64-bit hashes
        of the ids instead (several times cheaper): a type with no repeated hash certainly has no
        repeated id and may skip the step; a repeated hash (a real duplicate, or a rare collision)
        keeps the exact dedupe by event_id in the query.
        """
        duplicated = set()
        for event_type in event_types:
            column = con.execute(
                f"SELECT hash(event_id) AS id_hash FROM {raw_event_relation(event_type)}"
            ).fetchnumpy()["id_hash"]
            hashes = np.sort(np.asarray(column, dtype=np.uint64))
            if hashes.size > 1 and bool(np.any(hashes[1:] == hashes[:-1])):
                duplicated.add(event_type)
        return duplicated

    @staticmethod
    def run(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
        """Execute a query and return its rows as Arrow."""
        # `con.sql()` re-tokenizes the long query text in Python (~0.1 s per build, which
        # dominates small builds); the DB-API path costs one extra copy of the result instead.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")
            table: pa.Table = con.execute(sql).to_arrow_table()
        # With preserve_insertion_order off, DuckDB 2.0 can hand back result chunks out of the
        # ORDER BY order on large results; rows are paired with the spine by position, so sort here.
        if "spine_row" in table.column_names:
            table = table.sort_by("spine_row")
        return table

    @staticmethod
    def register_spine(con: duckdb.DuckDBPyConnection, spine: pd.DataFrame) -> None:
        """Register the spine as `spine_input`, with `spine_row` = position and naive-UTC `as_of`."""
        as_of = pd.to_datetime(spine["as_of"], utc=True).dt.tz_convert(None)
        application_id = (
            spine["application_id"]
            if "application_id" in spine
            else pd.Series([None] * len(spine), dtype=object)
        )
        table = pa.table(
            {
                "spine_row": pa.array(np.arange(len(spine), dtype=np.int64)),
                "member_id": pa.array(spine["member_id"].to_numpy(dtype=object), pa.string()),
                "application_id": pa.array(
                    application_id.to_numpy(dtype=object), pa.string(), from_pandas=True
                ),
                "as_of": pa.array(as_of.to_numpy(dtype="datetime64[us]"), pa.timestamp("us")),
            }
        )
        con.register(SPINE_RELATION, table)

    def list_members(self, *, events_dir: Location, tables_dir: Location, as_of: datetime) -> list[str]:
        """Every member with at least one event visible as of `as_of`, sorted."""
        con = self.connect()
        try:
            self.register_sources(
                con,
                events_dir=local_folder(events_dir, self.name),
                tables_dir=local_folder(tables_dir, self.name),
            )
            union = " UNION ALL ".join(
                f"SELECT member_id FROM {raw_event_relation(t)} "
                "WHERE event_time < $as_of AND recorded_at <= $as_of"
                for t in EVENT_TYPES
            )
            naive = pd.Timestamp(as_of).tz_convert("UTC").tz_localize(None).to_pydatetime()
            rows = con.execute(
                f"SELECT DISTINCT member_id FROM ({union}) m ORDER BY member_id",
                {"as_of": naive},
            ).fetchall()
            return [str(r[0]) for r in rows]
        finally:
            con.close()


# --------------------------------------------------------------------------------------------------
# Public builder
# --------------------------------------------------------------------------------------------------


def _check_spine(spine: pd.DataFrame) -> None:
    missing = [c for c in SPINE_COLUMNS if c not in spine]
    if missing:
        raise ValueError(f"spine lacks columns {missing}")
    if spine["request_id"].duplicated().any():
        raise ValueError("spine request_id must be unique")
    if spine[list(SPINE_COLUMNS)].isna().any().any():
        raise ValueError("spine request_id, member_id and as_of must be set")
    as_of = spine["as_of"]
    if not isinstance(as_of.dtype, pd.DatetimeTZDtype):
        raise ValueError("spine as_of must be a timezone-aware timestamp (UTC)")


def build_features(
    spine: pd.DataFrame,
    *,
    events_dir: Location,
    tables_dir: Location,
    registry: FeatureRegistry | None = None,
    engine: OfflineEngine | None = None,
) -> pd.DataFrame:
    """Every feature as of each spine row, under the point-in-time rule.

    Args:
        spine: one row per request: `request_id` (unique), `member_id`, `as_of` (tz-aware); optional
            `application_id` (its own outcome is excluded from peer rates), `amount_cny` and
            `term_months` (for the application features; NaN without them).
        events_dir: event log root (`event_type=<type>/part-*.parquet`); an object-store URI only
            for engines that read one (Spark).
        tables_dir: reference tables root (`applications/`, `outcomes/`).
        registry: feature declarations (default: `default_registry()`).
        engine: offline engine (default: DuckDB, all cores, 3 GB; see `features.offline_engines`).

    Returns:
        `request_id`, `member_id`, `as_of`, then one column per feature in registry order (int64
        counts/flags; float64 elsewhere, NaN when undefined), in spine order.
    """
    registry = registry or default_registry()
    engine = engine or DuckDBEngine()
    _check_spine(spine)
    member = engine.member_features(spine, events_dir=events_dir, tables_dir=tables_dir, registry=registry)
    if member.num_rows != len(spine):
        raise RuntimeError(
            f"the {engine.name} engine returned {member.num_rows} rows for {len(spine)} spine rows"
        )
    return _feature_frame(spine, member, registry)


def _float_column(table: pa.Table, name: str) -> npt.NDArray[np.float64]:
    return np.asarray(table[name].to_numpy(zero_copy_only=False), dtype=np.float64)


def _feature_frame(spine: pd.DataFrame, member: pa.Table, registry: FeatureRegistry) -> pd.DataFrame:
    """Spine keys + member features (Arrow, spine order) + application features, as one frame."""
    rows = len(spine)
    request = {
        "amount_cny": spine["amount_cny"] if "amount_cny" in spine else np.full(rows, np.nan),
        "term_months": spine["term_months"] if "term_months" in spine else np.full(rows, np.nan),
    }
    application = application_features(
        {n: _float_column(member, n) for n in ("delivery_amount_365d", "savings_balance")},
        amount_cny=np.asarray(request["amount_cny"], dtype=np.float64),
        term_months=np.asarray(request["term_months"], dtype=np.float64),
    )
    columns: dict[str, Any] = {
        "request_id": pa.array(spine["request_id"].to_numpy(dtype=object)),
        "member_id": pa.array(spine["member_id"].to_numpy(dtype=object), pa.string()),
        "as_of": pa.array(pd.to_datetime(spine["as_of"], utc=True)),
    }
    for feature in registry.features:
        if feature.is_application:
            columns[feature.name] = pa.array(application[feature.name])
        else:
            columns[feature.name] = member[feature.name]
    # One conversion, no block consolidation: the frame is wide and can be large.
    frame: pd.DataFrame = pa.table(columns).to_pandas(split_blocks=True)
    return frame


def read_applications(tables_dir: Path) -> pd.DataFrame:
    """The stored applications table (empty frame with the contract columns if none yet)."""
    import pyarrow.dataset as ds

    folder = tables_dir / "applications"
    files = sorted(folder.glob("part-*.parquet"))
    schema = APPLICATION_CONTRACT.arrow_schema()
    table = (
        ds.dataset([str(f) for f in files], schema=schema, format="parquet").to_table()
        if files
        else schema.empty_table()
    )
    frame: pd.DataFrame = table.to_pandas()
    return frame


def application_spine(applications: pd.DataFrame) -> pd.DataFrame:
    """Spine for a training set: one row per application, as of its `applied_at`."""
    return pd.DataFrame(
        {
            "request_id": applications["application_id"].to_numpy(),
            "member_id": applications["member_id"].to_numpy(),
            "as_of": pd.to_datetime(applications["applied_at"], utc=True).to_numpy(),
            "application_id": applications["application_id"].to_numpy(),
            "amount_cny": applications["amount_cny"].to_numpy(dtype=np.float64),
            "term_months": applications["term_months"].to_numpy(dtype=np.float64),
        }
    ).assign(as_of=lambda f: pd.to_datetime(f["as_of"], utc=True))


def member_spine(member_ids: Sequence[str], as_of: datetime) -> pd.DataFrame:
    """Spine for materialization: one row per member, all as of the same instant."""
    stamp = pd.Timestamp(as_of)
    if stamp.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    return pd.DataFrame(
        {
            "request_id": list(member_ids),
            "member_id": list(member_ids),
            "as_of": pd.Series([stamp.tz_convert("UTC")] * len(member_ids), dtype="datetime64[us, UTC]"),
        }
    )


def build_training_features(
    *,
    events_dir: Path,
    tables_dir: Path,
    registry: FeatureRegistry | None = None,
    engine: OfflineEngine | None = None,
) -> pd.DataFrame:
    """Feature frame for every stored application, each as of its `applied_at`."""
    applications = read_applications(tables_dir)
    return build_features(
        application_spine(applications),
        events_dir=events_dir,
        tables_dir=tables_dir,
        registry=registry,
        engine=engine,
    )
