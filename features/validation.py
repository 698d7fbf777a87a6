"""Vectorized row validation: one generated DuckDB query types every column and names every problem.

The query reads a chunk of raw records (strings from text feeds, or typed Parquet columns) and adds,
per record, the typed value of every contract column (`p__<name>`) and `_reasons`: an empty string for
a valid row, else every broken rule as `field: problem`, joined by '; '. Nothing runs row by row in
Python. This is ingestion-only SQL; feature definitions never use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa

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
BLANK_PREFIX = "b__"
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
class Rule:
    """One rule: it applies when `when` holds, is broken when `broken` holds, and says `reason`."""

    when: str
    broken: str
    reason: str


class _Column:
    """SQL pieces for one contract column against the chunk's actual input schema."""

    def __init__(self, spec: FieldSpec, input_schema: pa.Schema) -> None:
        self.spec = spec
        present = spec.name in input_schema.names
        raw = _quote(spec.name) if present else "NULL"
        input_is_text = present and pa.types.is_string(input_schema.field(spec.name).type)
        self.sql_type = _sql_type(spec.type)
        # Text feeds give NULL for an empty CSV cell; a blank JSON string or spaces still count as empty.
        self.blank_raw = (
            f"({raw} IS NULL OR length(trim({raw})) = 0)" if input_is_text else f"({raw} IS NULL)"
        )
        if self.sql_type == "VARCHAR":
            value = raw if input_is_text else f"CAST({raw} AS VARCHAR)"
            # Identifiers are trimmed (a stray space must not make a new member); other text is kept
            # as sent, so a padded enum value is quarantined with its reason rather than guessed at.
            trimmed = f"trim({value})" if spec.name.endswith("_id") else value
            self.parsed = f"NULLIF({trimmed}, '')" if input_is_text else value
        else:
            self.parsed = f"TRY_CAST({raw} AS {self.sql_type})"
        self.present = present

    @property
    def alias(self) -> str:
        return _quote(PARSED_PREFIX + self.spec.name)

    @property
    def blank_alias(self) -> str:
        return _quote(BLANK_PREFIX + self.spec.name)

    @property
    def needs_blank_flag(self) -> bool:
        """Typed columns keep a separate 'was empty' flag; for text, empty is parsed NULL."""
        return self.sql_type != "VARCHAR"

    @property
    def blank(self) -> str:
        return self.blank_alias if self.needs_blank_flag else f"({self.alias} IS NULL)"

    def select_items(self) -> list[str]:
        items = [f"{self.parsed} AS {self.alias}"]
        if self.needs_blank_flag:
            items.append(f"{self.blank_raw} AS {self.blank_alias}")
        return items

    def rules(self, when: str, label: str, cap: float | None) -> list[Rule]:
        """Every rule on this column, as (applies-when, broken-when, reason) over the parsed row."""
        name = self.spec.name
        value = self.alias
        rules: list[Rule] = []
        if self.spec.required:
            rules.append(Rule(when, self.blank, _literal(name + ": required" + label)))
        if self.sql_type != "VARCHAR":
            word = _KIND_WORD[self.sql_type]
            rules.append(
                Rule(when, f"NOT {self.blank} AND {value} IS NULL", _literal(f"{name}: not a {word}"))
            )
        if self.spec.enum is not None:
            allowed = ", ".join(_literal(v) for v in self.spec.enum)
            rules.append(
                Rule(
                    when,
                    f"{value} NOT IN ({allowed})",
                    _literal(f"{name}: not one of " + "|".join(self.spec.enum)),
                )
            )
        if self.spec.minimum is not None:
            rules.append(
                Rule(
                    when,
                    f"{value} < {self.spec.minimum!r}",
                    _literal(f"{name}: below minimum {self.spec.minimum:g}"),
                )
            )
        upper = self.spec.maximum if cap is None else cap
        if upper is not None:
            rules.append(Rule(when, f"{value} > {upper!r}", _literal(f"{name}: above cap {upper:g}")))
        return rules


def _cap(name: str, limits: Limits) -> float | None:
    if name == "amount_cny":
        return limits.max_amount_cny
    if name == "quantity_kg":
        return limits.max_quantity_kg
    return None


def _rules(table_kind: str, input_schema: pa.Schema, limits: Limits) -> tuple[list[_Column], list[Rule]]:
    contract = contract_for(table_kind)
    columns = {spec.name: _Column(spec, input_schema) for spec in contract.fields}
    rules: list[Rule] = []
    if table_kind == EVENTS:
        for name in ("event_id", "member_id", "coop_id", "event_type", "event_time", "recorded_at"):
            rules += columns[name].rules("TRUE", "", None)
        etype = columns["event_type"].alias
        known = ", ".join(_literal(t) for t in EVENT_TYPES)
        rules.append(Rule("TRUE", f"{etype} NOT IN ({known})", f"'event_type: unknown ' || {etype}"))
        for etype_name, payload in EVENT_PAYLOADS.items():
            when = f"{etype} = {_literal(etype_name)}"
            for spec in payload:
                typed = _Column(spec, input_schema)
                rules += typed.rules(when, f" for {etype_name}", _cap(spec.name, limits))
    else:
        for spec in contract.fields:
            rules += columns[spec.name].rules("TRUE", "", _cap(spec.name, limits))
    # Time rules: nothing from the future beyond clock skew; a record cannot predate its event.
    now = _literal(limits.now.isoformat())
    horizon = f"TIMESTAMPTZ {now} + INTERVAL {limits.clock_skew_seconds} SECOND"
    for name in _TIME_FIELDS[table_kind]:
        rules.append(Rule("TRUE", f"{columns[name].alias} > {horizon}", _literal(name + ": in the future")))
    if table_kind == EVENTS:
        rules.append(
            Rule(
                "TRUE",
                f"{columns['recorded_at'].alias} < {columns['event_time'].alias}",
                "'recorded_at: before event_time'",
            )
        )
    return list(columns.values()), rules


def validation_sql(table_kind: str, input_schema: pa.Schema, limits: Limits, source: str) -> str:
    """SELECT over relation `source` adding typed `p__` columns and a `_bad` flag to every record.

    Only a boolean is computed per row here; the reason strings are built by `reasons_sql` for the
    few rows flagged bad, which keeps the hot path cheap.
    """
    columns, rules = _rules(table_kind, input_schema, limits)
    parsed = ",\n  ".join(item for col in columns for item in col.select_items())
    kept = ", ".join(c.alias for c in columns) + "".join(
        f", {c.blank_alias}" for c in columns if c.needs_blank_flag
    )
    always: list[str] = []
    by_type: dict[str, list[str]] = {}
    for rule in rules:
        if rule.when == "TRUE":
            always.append(f"coalesce({rule.broken}, FALSE)")
        else:
            by_type.setdefault(rule.when, []).append(f"coalesce({rule.broken}, FALSE)")
    # CASE evaluates each branch only on the rows of its type; an OR over all types would not.
    typed = "".join(f" WHEN {when} THEN {' OR '.join(conds)}" for when, conds in by_type.items())
    bad = " OR ".join(always) + (f" OR CASE{typed} ELSE FALSE END" if typed else "")
    # Bookkeeping columns (`_seq`, `_source`, `_row`: where a record came from) pass through.
    passed = "".join(f"{_quote(n)}, " for n in input_schema.names if n.startswith("_"))
    return f"SELECT {passed}{kept}, {bad} AS _bad FROM (SELECT {passed}\n  {parsed}\nFROM {source})"


def reasons_sql(table_kind: str, input_schema: pa.Schema, limits: Limits) -> str:
    """Expression naming every broken rule of a row produced by `validation_sql`, joined by '; '."""
    _, rules = _rules(table_kind, input_schema, limits)
    terms = [
        f"CASE WHEN {r.broken} THEN {r.reason} END"
        if r.when == "TRUE"
        else f"CASE WHEN {r.when} AND {r.broken} THEN {r.reason} END"
        for r in rules
    ]
    return "concat_ws('; ',\n    " + ",\n    ".join(terms) + ")"


def raw_json_sql(input_schema: pa.Schema) -> str:
    """Expression rebuilding a record's original fields as JSON, for quarantine."""
    fields = [n for n in input_schema.names if not n.startswith("_") and not n.startswith(PARSED_PREFIX)]
    if not fields:
        return "'{}'"
    pairs = ", ".join(f"{_quote(n)} := {_quote(n)}" for n in fields)
    return f"CAST(to_json(struct_pack({pairs})) AS VARCHAR)"
