"""Vectorized row validation: one generated DuckDB query types, checks and keys a chunk of records.

The query reads a chunk of raw records (strings from text feeds, or typed Parquet columns) and returns,
per record, whether it is bad, a 64-bit hash of its key, the typed value of every column that needed
typing and, for bad records only, every broken rule as `field: problem` joined by '; ' plus the record
as JSON. Columns that arrive already typed are neither cast nor returned: they are stored as read.
Nothing runs row by row in Python. This is ingestion-only SQL; feature definitions never use it.

For a small chunk the main query's wide rule expression costs DuckDB more to set up than to run, so a
light query (`ValidationPlan.light_sql`) only types the cells and hashes the keys, and the same rules,
kept beside their SQL as `Check`s, are tested with Arrow kernels (`ValidationPlan.fast_check`). Both give
the same flags, hashes and typed values (a property test holds them to it); reasons always come from the
one detail query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.contracts import (
    EVENT_PAYLOADS,
    EVENT_TYPES,
    REFERENCE_CONTRACTS,
    TIMESTAMP,
    WIDE_EVENT_CONTRACT,
    FieldSpec,
    TableContract,
)

if TYPE_CHECKING:
    from coopscore.settings import Settings

EVENTS = "events"
PARSED_PREFIX = "p__"
PATCH_PREFIX = "f__"
TYPE_FLAG_PREFIX = "_nt__"
TYPE_CODE = "_t"
_TIME_FIELDS = {
    "events": ("event_time", "recorded_at"),
    "applications": ("applied_at",),
    "outcomes": ("observed_at",),
    "cooperatives": ("founded_at",),
    "member_profiles": (),
}


@dataclass(frozen=True)
class Limits:
    """Bounds that are settings rather than contract: sane caps and the clock-skew allowance."""

    max_amount_cny: float
    max_quantity_kg: float
    now: datetime
    clock_skew_seconds: int

    @classmethod
    def from_settings(cls, settings: Settings, now: datetime) -> Limits:
        """The configured caps and skew allowance, judged against `now`."""
        return cls(
            max_amount_cny=settings.max_amount_cny,
            max_quantity_kg=settings.max_quantity_kg,
            now=now,
            clock_skew_seconds=settings.clock_skew_seconds,
        )


def contract_for(table_kind: str) -> TableContract:
    """The contract whose columns a raw chunk of this kind is validated against."""
    return WIDE_EVENT_CONTRACT if table_kind == EVENTS else REFERENCE_CONTRACTS[table_kind]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_type(arrow_type: pa.DataType) -> str:
    if arrow_type == TIMESTAMP:
        return "TIMESTAMPTZ"
    if pa.types.is_floating(arrow_type):
        return "DOUBLE"
    if pa.types.is_integer(arrow_type):
        return "INTEGER"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    return "VARCHAR"


_KIND_WORD = {
    "TIMESTAMPTZ": "timestamp",
    "DOUBLE": "number",
    "INTEGER": "integer",
    "BOOLEAN": "boolean",
}


@dataclass(frozen=True)
class Check:
    """A rule's `fast` test in a form Arrow evaluates over the light query's result (see
    `ValidationPlan.fast_bad`): `op` on `column` (a parsed value `p__<name>`, `_t`, or a flag the light
    query computes), with `arg` (allowed values, a bound, a pattern, or another column)."""

    op: str  # "null", "flag", "not_in", "lt", "gt", "no_match" or "before"
    column: str
    arg: object = None


@dataclass(frozen=True)
class Rule:
    """One rule: it applies when `when` holds, is broken when `broken` holds, and says `reason`.

    `fast` is what the per-row bad flag tests instead of `broken` (None: another rule on the same
    column already covers it), so the cheap test runs on every row and `broken` only on bad rows.
    `check` is `fast` for Arrow, and `code` the event type code `when` stands for (None: every row).
    """

    when: str
    broken: str
    reason: str
    fast: str | None
    check: Check | None = None
    code: int | None = None


def _is_text(arrow_type: pa.DataType) -> bool:
    """Text, plain or dictionary-encoded."""
    if pa.types.is_dictionary(arrow_type):
        return _is_text(arrow_type.value_type)
    return bool(
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_string_view(arrow_type)
    )


# How the stored value of a contract column is obtained from a chunk (see `ValidationPlan`).
PASSTHROUGH = "passthrough"  # the input column already has the contract type: stored as read
PATCHED = "patched"  # text kept as read except the few cells validation rewrites (blank, padded id)
COMPUTED = "computed"  # typed by the query (text to timestamp, number, boolean...)


class _Column:
    """SQL pieces for one contract column against the chunk's actual input schema."""

    def __init__(
        self, spec: FieldSpec, input_schema: pa.Schema, clean: frozenset[str], matching: frozenset[str]
    ) -> None:
        self.spec = spec
        # Every value is known to match the column's pattern (see `matching_id_columns`): no rule needed.
        self.pattern = None if spec.name in matching else spec.pattern
        present = spec.name in input_schema.names
        raw = _quote(spec.name) if present else "NULL"
        input_type = input_schema.field(spec.name).type if present else pa.null()
        input_is_text = present and _is_text(input_type)
        self.raw = raw
        self.sql_type = _sql_type(spec.type)
        # An input column that already has the contract type (a typed Parquet export) is neither cast
        # nor re-checked for its type: it can only break the value rules.
        self.typed_input = present and self.sql_type != "VARCHAR" and input_type.equals(spec.type)
        if self.sql_type == "VARCHAR":
            value = raw if input_is_text else f"CAST({raw} AS VARCHAR)"
            # Identifiers are trimmed (a stray space must not make a new member); other text is kept
            # as sent, so a padded enum value is quarantined with its reason rather than guessed at.
            if not input_is_text:
                self.parsed = value
            elif spec.name in clean:
                # Known to hold no blank or padded cell (see `clean_text_columns`): stored as read.
                self.parsed = raw
            elif spec.name.endswith("_id"):
                padded = f"starts_with({value}, ' ') OR ends_with({value}, ' ')"
                self.parsed = f"NULLIF(CASE WHEN {padded} THEN trim({value}) ELSE {value} END, '')"
            else:
                self.parsed = f"NULLIF({value}, '')"
            if not input_is_text:
                self.output = COMPUTED
            else:
                self.output = PASSTHROUGH if spec.name in clean else PATCHED
        elif self.typed_input:
            self.parsed = raw
            self.output = PASSTHROUGH
        else:
            self.parsed = f"TRY_CAST({raw} AS {self.sql_type})"
            self.output = COMPUTED
        # Was the cell empty? Text feeds give NULL for an empty CSV cell; a blank JSON string or
        # spaces still count as empty. A cell that parsed to a value was not empty.
        if self.sql_type == "VARCHAR" or self.typed_input:
            self.blank = f"({self.alias} IS NULL)"
        elif input_is_text:
            self.blank = f"({self.alias} IS NULL AND ({raw} IS NULL OR length(trim({raw})) = 0))"
        else:
            self.blank = f"({raw} IS NULL)"

    @property
    def alias(self) -> str:
        return _quote(self.alias_name)

    @property
    def alias_name(self) -> str:
        return PARSED_PREFIX + self.spec.name

    @property
    def type_flag(self) -> str:
        """Name of the light query's column that flags a cell not of this column's type."""
        return TYPE_FLAG_PREFIX + self.spec.name

    def type_flag_item(self) -> str | None:
        """For the light query: the "not a <type>" test of an optional column typed from text, which
        reads the raw cell (so Arrow cannot do it from the parsed value alone)."""
        if self.sql_type == "VARCHAR" or self.typed_input or self.spec.required:
            return None
        return f"coalesce(NOT {self.blank} AND {self.alias} IS NULL, FALSE) AS {_quote(self.type_flag)}"

    def parsed_item(self) -> str:
        return f"{self.parsed} AS {self.alias}"

    def output_item(self) -> str | None:
        """The typed value, for a column the query types."""
        return self.alias if self.output == COMPUTED else None

    def changed(self) -> str | None:
        """For text kept as read: does parsing change this cell? It only ever blanks or trims one."""
        if self.output != PATCHED:
            return None
        return f"strlen({self.raw}) <> coalesce(strlen({self.alias}), -1)"

    def patch_item(self) -> str | None:
        """For text kept as read: NULL to keep the cell, '' to store NULL, else the text to store."""
        if self.output != PATCHED:
            return None
        name = _quote(PATCH_PREFIX + self.spec.name)
        return f"CASE WHEN {self.changed()} THEN coalesce({self.alias}, '') END AS {name}"

    def rules(self, when: str, label: str, cap: float | None, code: int | None = None) -> list[Rule]:
        """Every rule on this column, as (applies-when, broken-when, reason) over the parsed row;
        `code` is the event type code `when` tests, if any."""
        name = self.spec.name
        value = self.alias
        column = self.alias_name
        rules: list[Rule] = []
        if self.spec.required:
            # Empty or not of its type: either way no value, which is all the bad flag needs to test.
            rules.append(
                Rule(
                    when,
                    self.blank,
                    _literal(name + ": required" + label),
                    f"{value} IS NULL",
                    Check("null", column),
                    code,
                )
            )
        if self.sql_type != "VARCHAR" and not self.typed_input:
            word = _KIND_WORD[self.sql_type]
            broken = f"NOT {self.blank} AND {value} IS NULL"
            fast, check = (None, None) if self.spec.required else (broken, Check("flag", self.type_flag))
            rules.append(Rule(when, broken, _literal(f"{name}: not a {word}"), fast, check, code))
        if self.spec.enum is not None:
            allowed = ", ".join(_literal(v) for v in self.spec.enum)
            broken = f"{value} NOT IN ({allowed})"
            reason = _literal(f"{name}: not one of " + "|".join(self.spec.enum))
            rules.append(Rule(when, broken, reason, broken, Check("not_in", column, self.spec.enum), code))
        if self.spec.minimum is not None:
            broken = f"{value} < {self.spec.minimum!r}"
            reason = _literal(f"{name}: below minimum {self.spec.minimum:g}")
            rules.append(Rule(when, broken, reason, broken, Check("lt", column, self.spec.minimum), code))
        upper = self.spec.maximum if cap is None else cap
        if upper is not None:
            broken = f"{value} > {upper!r}"
            reason = _literal(f"{name}: above cap {upper:g}")
            rules.append(Rule(when, broken, reason, broken, Check("gt", column, upper), code))
        if self.pattern is not None:
            # Checked on the parsed value: a padded id is trimmed first, as the API strips whitespace.
            broken = f"NOT regexp_full_match({value}, {_literal(self.pattern)})"
            reason = _literal(name + ": " + _NOT_AN_ID + label)
            rules.append(Rule(when, broken, reason, broken, Check("no_match", column, self.pattern), code))
        return rules


# No ';' (it separates reasons) and no ':' after the field name (stats group reasons by it).
_NOT_AN_ID = (
    "not a valid id (1 to 64 ASCII letters, digits, '_', '.', '-' or colons, first a letter or digit)"
)


def _cap(name: str, limits: Limits) -> float | None:
    if name == "amount_cny":
        return limits.max_amount_cny
    if name == "quantity_kg":
        return limits.max_quantity_kg
    return None


def _type_code(etype: str) -> str:
    """`_t`: the index of the event type in `EVENT_TYPES`, NULL for an unknown type."""
    codes = " ".join(f"WHEN {_literal(t)} THEN {i}" for i, t in enumerate(EVENT_TYPES))
    return f"CAST(CASE {etype} {codes} END AS UTINYINT) AS {TYPE_CODE}"


def _rules(
    table_kind: str, input_schema: pa.Schema, limits: Limits, clean: frozenset[str], matching: frozenset[str]
) -> tuple[list[_Column], list[Rule]]:
    contract = contract_for(table_kind)
    columns = {spec.name: _Column(spec, input_schema, clean, matching) for spec in contract.fields}
    rules: list[Rule] = []
    if table_kind == EVENTS:
        for name in ("event_id", "member_id", "coop_id", "event_type", "event_time", "recorded_at"):
            rules += columns[name].rules("TRUE", "", None)
        etype = columns["event_type"].alias
        known = ", ".join(_literal(t) for t in EVENT_TYPES)
        rules.append(
            Rule(
                "TRUE",
                f"{etype} NOT IN ({known})",
                f"'event_type: unknown ' || {etype}",
                f"{TYPE_CODE} IS NULL",
                Check("null", TYPE_CODE),
            )
        )
        for code, (etype_name, payload) in enumerate(EVENT_PAYLOADS.items()):
            when = f"{TYPE_CODE} = {code}"
            for spec in payload:
                typed = _Column(spec, input_schema, clean, matching)
                rules += typed.rules(when, f" for {etype_name}", _cap(spec.name, limits), code)
    else:
        for spec in contract.fields:
            rules += columns[spec.name].rules("TRUE", "", _cap(spec.name, limits))
    # Time rules: nothing from the future beyond clock skew; a record cannot predate its event.
    horizon = f"{_now_sql(limits)} + INTERVAL {limits.clock_skew_seconds} SECOND"
    latest = _latest(limits)
    for name in _TIME_FIELDS[table_kind]:
        broken = f"{columns[name].alias} > {horizon}"
        check = Check("gt", columns[name].alias_name, latest)
        rules.append(Rule("TRUE", broken, _literal(name + ": in the future"), broken, check))
    if table_kind == EVENTS:
        broken = f"{columns['recorded_at'].alias} < {columns['event_time'].alias}"
        check = Check("before", columns["recorded_at"].alias_name, columns["event_time"].alias_name)
        rules.append(Rule("TRUE", broken, "'recorded_at: before event_time'", broken, check))
    return list(columns.values()), rules


def _now_sql(limits: Limits) -> str:
    """The clock of the time rules as a SQL literal."""
    return "TIMESTAMPTZ " + _literal(limits.now.isoformat())


def _latest(limits: Limits) -> datetime:
    """The latest instant a time may hold (now plus the skew allowance), for Arrow: a naive `now` is
    read in the session's time zone, UTC, as DuckDB reads the literal."""
    aware = limits.now if limits.now.tzinfo is not None else limits.now.replace(tzinfo=UTC)
    return aware + timedelta(seconds=limits.clock_skew_seconds)


@dataclass(frozen=True)
class ValidationPlan:
    """Two generated queries that type, check and key a chunk of records, and how to read them.

    `sql` runs over the whole chunk and returns, per record and in input order: `_seq` (the record's
    position), `_bad`, `_fix` (some text cell must be blanked or trimmed), `_h` (a 64-bit hash of the
    parsed key, for dedupe), `_t` (events: the index of the event type in `EVENT_TYPES`) and `p__<name>`
    for every COMPUTED column. PASSTHROUGH and PATCHED columns are not returned: the input column is
    stored as read. `detail_sql` runs over just the records flagged bad or fix and returns `_seq`,
    `f__<name>` for every PATCHED column (NULL: keep the cell; '': store NULL; else: store this text),
    and for bad records `_reasons` (every broken rule as `field: problem`, joined by '; ') and `_raw`
    (the record as sent, as JSON). Good records only pay for one cheap test per rule.
    """

    table_kind: str
    key: str
    outputs: dict[str, str]
    main: str
    detail: str
    # The light query and the checks `fast_bad` runs on its result: the main query's output less
    # `_bad`, plus every parsed value and the type flags (see `light_sql`).
    light: str = ""
    checks: tuple[tuple[int | None, Check], ...] = ()
    # The clock the time rules were written for: the SQL literal and the limits (see `at`).
    now_sql: str = ""
    limits: Limits | None = None

    def at(self, limits: Limits) -> ValidationPlan:
        """This plan for other limits that differ only by their clock (`now`): the time rules are
        rewritten, the rest kept, so a long-lived caller plans a schema once, not once per request."""
        if self.limits is None or limits == self.limits:
            return self
        if replace(limits, now=self.limits.now) != self.limits:
            raise ValueError("a plan can only be moved to another clock, not to other caps or skew")
        now_sql = _now_sql(limits)
        latest = _latest(limits)
        checks = tuple(
            (code, replace(check, arg=latest) if isinstance(check.arg, datetime) else check)
            for code, check in self.checks
        )
        return replace(
            self,
            main=self.main.replace(self.now_sql, now_sql),
            detail=self.detail.replace(self.now_sql, now_sql),
            checks=checks,
            now_sql=now_sql,
            limits=limits,
        )

    def sql(self, source: str) -> str:
        """The per-record query over relation `source`, which must carry a `_seq` column."""
        return self.main.replace("{source}", source)

    def light_sql(self, source: str) -> str:
        """The main query's columns but `_bad` (which `fast_bad` computes from this query's result),
        plus the parsed value of every column and the "not a <type>" flags. For a few hundred records
        it runs in a fifth of the main query's time: DuckDB's cost there is the width of the rule
        expression, not the rows, while Arrow's compute kernels cost microseconds on a small batch."""
        return self.light.replace("{source}", source)

    def fast_check(self, records: pa.Table, light: pa.Table) -> pa.Table:
        """What the main query returns for `records`, from the result of `light_sql` over them (in
        the same order): `_bad` and, for events, `_t` are computed here with Arrow."""
        values: dict[str, pa.ChunkedArray | pa.Array] = {}
        for name, output in self.outputs.items():
            values[PARSED_PREFIX + name] = (
                _plain(records.column(name)) if output == PASSTHROUGH else light.column(PARSED_PREFIX + name)
            )
        for name in light.column_names:
            values.setdefault(name, light.column(name))
        if self.table_kind == EVENTS:
            # As the query's CASE: the index of the parsed type in EVENT_TYPES, NULL for any other text.
            known = pa.array(EVENT_TYPES, pa.string())
            code = pc.index_in(values[PARSED_PREFIX + "event_type"], value_set=known).cast(pa.uint8())
            values[TYPE_CODE] = code
            light = light.append_column(TYPE_CODE, code)
        return light.append_column("_bad", pa.array(self.fast_bad(values, light.num_rows)))

    def fast_bad(self, values: dict[str, pa.ChunkedArray | pa.Array], rows: int) -> np.ndarray:
        """`_bad` of the main query from the parsed values (`p__<name>`), `_t` and the light query's
        flags: a record is bad when any rule that applies to it (every row's, or its event type's) is
        broken. A rule whose test is NULL (a comparison with a missing value) is not broken, as in the
        query's `coalesce`."""
        bad = np.zeros(rows, np.bool_)
        per_type: dict[int, np.ndarray] = {}
        for code, check in self.checks:
            hit = _broken(check, values)
            if code is None:
                bad |= hit
            elif code in per_type:
                per_type[code] |= hit
            else:
                per_type[code] = hit
        if per_type:
            # No type code (an unknown type) applies no type's rules, as the query's CASE ... ELSE FALSE.
            codes = values[TYPE_CODE].cast(pa.int16()).fill_null(-1).to_numpy(zero_copy_only=False)
            for code, hit in per_type.items():
                bad |= hit & (codes == code)
        return bad

    def detail_sql(self, source: str) -> str:
        """The query for the few flagged records, over a relation with the same columns."""
        return self.detail.replace("{source}", source)


def validation_plan(
    table_kind: str,
    input_schema: pa.Schema,
    limits: Limits,
    clean: frozenset[str] = frozenset(),
    matching: frozenset[str] = frozenset(),
) -> ValidationPlan:
    """The validation queries for chunks with this input schema (see `ValidationPlan`); `clean` names
    text columns known to hold no blank or padded cell, which need no parsing at all, and `matching`
    identifier columns known to match their pattern, which need no pattern check."""
    columns, rules = _rules(table_kind, input_schema, limits, clean, matching)
    by_name = {c.spec.name: c for c in columns}
    key = contract_for(table_kind).key[0]
    parsed = ", ".join(c.parsed_item() for c in columns)
    if table_kind == EVENTS:
        # The type code is computed from the parsed type, so it goes one level up.
        parsed_level = (
            f"SELECT *, {_type_code(by_name['event_type'].alias)} FROM (SELECT *, {parsed} FROM {{source}})"
        )
    else:
        parsed_level = f"SELECT *, {parsed} FROM {{source}}"
    always: list[str] = []
    by_type: dict[str, list[str]] = {}
    for rule in rules:
        if rule.fast is None:
            continue
        if rule.when == "TRUE":
            always.append(f"({rule.fast})")
        else:
            by_type.setdefault(rule.when, []).append(f"({rule.fast})")
    # CASE evaluates each branch only on the rows of its type; an OR over all types would not. A NULL
    # test (say, a comparison with a missing value) is not a broken rule: one coalesce covers them all.
    typed = "".join(f" WHEN {when} THEN {' OR '.join(tests)}" for when, tests in by_type.items())
    bad = (
        "coalesce(" + " OR ".join(always) + (f" OR CASE{typed} ELSE FALSE END" if typed else "") + ", FALSE)"
    )
    changes = [f"({change})" for c in columns if (change := c.changed()) is not None]
    fix = f"coalesce({' OR '.join(changes)}, FALSE)" if changes else "FALSE"
    checked = f"SELECT *, {bad} AS _bad, {fix} AS _fix FROM ({parsed_level})"
    outputs = ["_seq", "_bad", "_fix", f"hash({by_name[key].alias}) AS _h"]
    if table_kind == EVENTS:
        outputs.append(TYPE_CODE)
    outputs += [item for c in columns if (item := c.output_item()) is not None]
    reasons = (
        "concat_ws('; ', "
        + ", ".join(
            f"CASE WHEN {r.broken} THEN {r.reason} END"
            if r.when == "TRUE"
            else f"CASE WHEN {r.when} AND {r.broken} THEN {r.reason} END"
            for r in rules
        )
        + ")"
    )
    # The light query types only what needs typing or patching; a PASSTHROUGH column's parsed value is
    # the input column itself, which `fast_check` reads from the records (as it computes `_t`).
    retyped = [c for c in columns if c.output != PASSTHROUGH]
    key_column = by_name[key]
    hashed = key_column.alias if key_column.output != PASSTHROUGH else key_column.raw
    light = ["_seq", f"{fix} AS _fix", f"hash({hashed}) AS _h", *(c.alias for c in retyped)]
    light_source = "SELECT * FROM {source}"
    if retyped:
        light_source = f"SELECT *, {', '.join(c.parsed_item() for c in retyped)} FROM {{source}}"
    checks = tuple((r.code, r.check) for r in rules if r.fast is not None and r.check is not None)
    flags = {check.column for _, check in checks if check.op == "flag"}
    light += [
        item
        for c in _typed_columns(columns, table_kind, input_schema, clean, matching)
        if c.type_flag in flags and (item := c.type_flag_item()) is not None
    ]
    if len(checks) != sum(r.fast is not None for r in rules):
        # A rule given a SQL test but no Check would be skipped by the fast path: refuse to plan.
        raise RuntimeError("a validation rule has no Arrow check (see `Check`): add one beside its SQL")
    details = ["_seq", *(item for c in columns if (item := c.patch_item()) is not None)]
    details.append(f"CASE WHEN _bad THEN {reasons} END AS _reasons")
    details.append(f"CASE WHEN _bad THEN {raw_json_sql(input_schema)} END AS _raw")
    return ValidationPlan(
        table_kind,
        key,
        {c.spec.name: c.output for c in columns},
        f"SELECT {', '.join(outputs)} FROM ({checked})",
        f"SELECT {', '.join(details)} FROM ({checked})",
        f"SELECT {', '.join(light)} FROM ({light_source})",
        checks,
        _now_sql(limits),
        limits,
    )


def _typed_columns(
    columns: list[_Column],
    table_kind: str,
    input_schema: pa.Schema,
    clean: frozenset[str],
    matching: frozenset[str],
) -> list[_Column]:
    """Every column a "not a <type>" rule may test: the table's own and, for events, each payload
    column as its event type declares it (required or not), deduplicated by the flag's name."""
    found = {c.type_flag: c for c in columns}
    if table_kind == EVENTS:
        for payload in EVENT_PAYLOADS.values():
            for spec in payload:
                typed = _Column(spec, input_schema, clean, matching)
                found.setdefault(typed.type_flag, typed)
    return list(found.values())


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """An input column as Arrow's kernels take it: dictionary-encoded or other text as plain strings."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if _is_text(column.type) and not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    return column


def _broken(check: Check, values: dict[str, pa.ChunkedArray | pa.Array]) -> np.ndarray:
    """Per row: is this check's rule broken (a NULL test is not)?"""
    column = values[check.column]
    if check.op == "null":
        hit = pc.is_null(column)
    elif check.op == "flag":
        hit = column.fill_null(False)
    elif check.op == "not_in":
        allowed = pa.array(check.arg, column.type)
        hit = pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, value_set=allowed)))
    elif check.op == "lt":
        # NaN is above every number in DuckDB, so never below a minimum: as here.
        hit = pc.less(column, _bound(check.arg, column.type)).fill_null(False)
    elif check.op == "gt":
        hit = pc.greater(column, _bound(check.arg, column.type)).fill_null(False)
        if pa.types.is_floating(column.type):
            # DuckDB sorts NaN above every number, so NaN breaks every cap; IEEE compares it false.
            hit = pc.or_(hit, pc.is_nan(column).fill_null(False))
    elif check.op == "no_match":
        pattern = str(check.arg)
        matched = pc.match_substring_regex(column, f"^(?:{pattern})$")
        hit = pc.and_(pc.is_valid(column), pc.invert(matched)).fill_null(False)
    elif check.op == "before":
        hit = pc.less(column, values[str(check.arg)]).fill_null(False)
    else:
        raise ValueError(f"unknown check {check.op!r}")
    result: np.ndarray = hit.to_numpy(zero_copy_only=False).astype(np.bool_, copy=False)
    return result


def _bound(value: object, arrow_type: pa.DataType) -> pa.Scalar:
    """A rule's bound as a scalar comparable with the column: a timestamp in the column's unit, a
    number as a float (DuckDB compares an integer column with a decimal bound by value, as here)."""
    if isinstance(value, datetime):
        return pa.scalar(value, pa.timestamp("us", tz="UTC")).cast(arrow_type)
    return pa.scalar(float(value), pa.float64())  # type: ignore[arg-type]


def clean_text_columns(records: pa.Table, contract: TableContract) -> frozenset[str]:
    """Text columns of the contract in which parsing would change no cell of `records`: none is ''
    and no identifier is padded.

    Checked on the dictionary for a dictionary-encoded column, so it costs nothing for codes and enums;
    a few vectorized passes for plain text.
    """
    clean = []
    for spec in contract.fields:
        name = spec.name
        if name not in records.column_names or _sql_type(spec.type) != "VARCHAR":
            continue
        column = records.column(name)
        if not _is_text(column.type):
            continue
        pieces = [c.dictionary if pa.types.is_dictionary(column.type) else c for c in column.chunks]
        if all(_clean_text(piece, name.endswith("_id")) for piece in pieces):
            clean.append(name)
    return frozenset(clean)


def unsupported_columns(input_schema: pa.Schema, contract: TableContract) -> list[str]:
    """Contract columns of a chunk whose input type validation cannot read (`name (type)`), such as
    lists, structs, durations or half floats from a foreign Parquet file; empty when all are readable.

    Text, binary, booleans, numbers, decimals, dates and timestamps are read (and typed or refused row
    by row); anything else fails the file with this list rather than the whole batch.
    """
    wanted = set(contract.names)
    return [f"{f.name} ({f.type})" for f in input_schema if f.name in wanted and not _readable_type(f.type)]


def _readable_type(arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        return _readable_type(arrow_type.value_type)
    if pa.types.is_floating(arrow_type):
        return not pa.types.is_float16(arrow_type)
    return bool(
        _is_text(arrow_type)
        or pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
        or pa.types.is_null(arrow_type)
        or pa.types.is_boolean(arrow_type)
        or pa.types.is_integer(arrow_type)
        or pa.types.is_decimal(arrow_type)
        or pa.types.is_date(arrow_type)
        or pa.types.is_timestamp(arrow_type)
    )


def matching_id_columns(records: pa.Table, contract: TableContract) -> frozenset[str]:
    """Identifier columns of `records` in which every value is known to match its pattern, so the
    validation query needs no `regexp_full_match` on them.

    Known by a byte-level check of the column's buffers (`_all_match`, a few numpy passes, on the
    dictionary of a dictionary-encoded column): far cheaper than a regular expression per row, and it
    never says "all match" when one value does not. A column with any other value keeps its rule in
    the query, which then names every record that breaks it.
    """
    matching = []
    for spec in contract.fields:
        if spec.pattern is None or spec.name not in records.column_names:
            continue
        column = records.column(spec.name)
        if not _is_text(column.type):
            continue
        pieces = [c.dictionary if pa.types.is_dictionary(column.type) else c for c in column.chunks]
        if all(_all_match(piece, spec.pattern) for piece in pieces):
            matching.append(spec.name)
    return frozenset(matching)


@dataclass(frozen=True)
class _ByteClasses:
    """A pattern of the shape `^[first][rest]{0,n}$` over ASCII, as byte lookup tables."""

    first: np.ndarray  # bool per byte value: may start a value
    rest: np.ndarray  # bool per byte value: may follow
    longest: int

    @property
    def rest_pairs(self) -> np.ndarray:
        """Bool per 16-bit value: both its bytes may follow (half as many lookups as byte by byte)."""
        return _pairs(self.rest.tobytes())


@cache
def _pairs(rest: bytes) -> np.ndarray:
    allowed = np.frombuffer(rest, np.bool_)
    table: np.ndarray = (allowed[:, None] & allowed[None, :]).reshape(-1)
    return table


@cache
def _byte_classes(pattern: str) -> _ByteClasses | None:
    """The byte classes of `pattern`, read off the pattern itself by matching probe strings; None if it
    is not of that shape (its values are then only ever checked by the query's regular expression)."""
    regex = re.compile(pattern)
    first = np.array([regex.fullmatch(chr(b)) is not None for b in range(256)])
    if not first.any() or first[128:].any():
        return None
    lead = chr(int(np.flatnonzero(first)[0]))
    rest = np.array([regex.fullmatch(lead + chr(b)) is not None for b in range(256)])
    if rest[128:].any() or (first & ~rest).any():
        return None
    longest = 1
    while longest < 4096 and regex.fullmatch(lead * (longest + 1)):
        longest += 1
    # The shape holds if a value made of any allowed bytes, at any allowed length, matches.
    allowed = "".join(chr(b) for b in np.flatnonzero(rest))
    if regex.fullmatch(lead + (allowed * longest)[: longest - 1]) is None or regex.fullmatch(
        lead * (longest + 1)
    ):
        return None
    return _ByteClasses(first, rest, longest)


def _all_match(values: pa.Array, pattern: str) -> bool:
    """True only if every non-null value of a string array matches `pattern` (see `_byte_classes`)."""
    classes = _byte_classes(pattern)
    if classes is None or not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return False
    if values.null_count == len(values):
        return True
    if values.null_count:
        values = values.drop_null()  # a compact copy of the values there are (few, for optional ids)
    offset_type = np.int64 if pa.types.is_large_string(values.type) else np.int32
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, offset_type)[values.offset : values.offset + len(values) + 1]
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    if lengths.min() < 1 or lengths.max() > classes.longest:
        return False
    if not classes.first[data[starts]].all():
        return False
    # Every byte of the values' range, read two at a time.
    body = data[offsets[0] : offsets[-1]]
    even = len(body) // 2 * 2
    return bool(classes.rest_pairs[body[:even].view(np.uint16)].all() and classes.rest[body[even:]].all())


def _clean_text(values: pa.Array, is_identifier: bool) -> bool:
    if values.null_count == len(values):
        return True
    if pc.min(pc.binary_length(values)).as_py() == 0:
        return False
    if is_identifier:
        return not (pc.any(pc.starts_with(values, " ")).as_py() or pc.any(pc.ends_with(values, " ")).as_py())
    return True


def raw_json_sql(input_schema: pa.Schema) -> str:
    """Expression rebuilding a record's original fields as JSON, for quarantine."""
    fields = [n for n in input_schema.names if not n.startswith("_") and not n.startswith(PARSED_PREFIX)]
    if not fields:
        return "'{}'"
    pairs = ", ".join(f"{_quote(n)} := {_quote(n)}" for n in fields)
    return f"CAST(to_json(struct_pack({pairs})) AS VARCHAR)"
