"""Vectorized row validation: one generated DuckDB query types every column and names every problem.

The query reads a chunk of raw records (strings from text feeds, or typed Parquet columns) and adds,
per record, the typed value of every contract column (`p__<name>`) and `_reasons`: an empty string for
a valid row, else every broken rule as `field: problem`, joined by '; '. Nothing runs row by row in
Python. This is ingestion-only SQL; feature definitions never use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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

EVENTS = "events"
PARSED_PREFIX = "p__"
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


class _Column:
    """SQL pieces for one contract column against the chunk's actual input schema."""

    def __init__(self, spec: FieldSpec, input_schema: pa.Schema) -> None:
        self.spec = spec
        present = spec.name in input_schema.names
        raw = _quote(spec.name) if present else "NULL"
        input_is_text = present and pa.types.is_string(input_schema.field(spec.name).type)
        self.sql_type = _sql_type(spec.type)
        self.blank = f"({raw} IS NULL OR trim({raw}) = '')" if input_is_text else f"({raw} IS NULL)"
        if self.sql_type == "VARCHAR":
            value = f"trim({raw})" if input_is_text else f"CAST({raw} AS VARCHAR)"
            self.parsed = f"NULLIF({value}, '')"
        else:
            self.parsed = f"TRY_CAST({raw} AS {self.sql_type})"
        self.present = present

    @property
    def alias(self) -> str:
        return _quote(PARSED_PREFIX + self.spec.name)

    def rules(self, when: str, label: str, cap: float | None) -> list[str]:
        """CASE terms, each yielding a reason string when its rule is broken."""
        name = self.spec.name
        value = self.parsed
        terms: list[str] = []
        if self.spec.required:
            terms.append(
                f"CASE WHEN {when} AND {self.blank} THEN {_literal(name + ': required' + label)} END"
            )
        if self.sql_type != "VARCHAR":
            word = _KIND_WORD[self.sql_type]
            terms.append(
                f"CASE WHEN {when} AND NOT {self.blank} AND {value} IS NULL "
                f"THEN {_literal(f'{name}: not a {word}')} END"
            )
        if self.spec.enum is not None:
            allowed = ", ".join(_literal(v) for v in self.spec.enum)
            terms.append(
                f"CASE WHEN {when} AND {value} IS NOT NULL AND {value} NOT IN ({allowed}) "
                f"THEN {_literal(f'{name}: not one of ' + '|'.join(self.spec.enum))} END"
            )
        if self.spec.minimum is not None:
            terms.append(
                f"CASE WHEN {when} AND {value} < {self.spec.minimum!r} "
                f"THEN {_literal(f'{name}: below minimum {self.spec.minimum:g}')} END"
            )
        upper = self.spec.maximum if cap is None else cap
        if upper is not None:
            terms.append(
                f"CASE WHEN {when} AND {value} > {upper!r} "
                f"THEN {_literal(f'{name}: above cap {upper:g}')} END"
            )
        return terms


def _cap(name: str, limits: Limits) -> float | None:
    if name == "amount_cny":
        return limits.max_amount_cny
    if name == "quantity_kg":
        return limits.max_quantity_kg
    return None


def validation_sql(table_kind: str, input_schema: pa.Schema, limits: Limits, source: str) -> str:
    """SELECT over relation `source` adding typed `p__` columns and `_reasons` to every record."""
    contract = contract_for(table_kind)
    columns = {spec.name: _Column(spec, input_schema) for spec in contract.fields}
    terms: list[str] = []
    if table_kind == EVENTS:
        for name in ("event_id", "member_id", "coop_id", "event_type", "event_time", "recorded_at"):
            terms += columns[name].rules("TRUE", "", None)
        etype = columns["event_type"].parsed
        known = ", ".join(_literal(t) for t in EVENT_TYPES)
        terms.append(
            f"CASE WHEN {etype} IS NOT NULL AND {etype} NOT IN ({known}) "
            f"THEN 'event_type: unknown ' || {etype} END"
        )
        for etype_name, payload in EVENT_PAYLOADS.items():
            when = f"{etype} = {_literal(etype_name)}"
            for spec in payload:
                typed = _Column(spec, input_schema)
                terms += typed.rules(when, f" for {etype_name}", _cap(spec.name, limits))
    else:
        for spec in contract.fields:
            terms += columns[spec.name].rules("TRUE", "", _cap(spec.name, limits))
    # Time rules: nothing from the future beyond clock skew; a record cannot predate its event.
    horizon = f"TIMESTAMPTZ {_literal(limits.now.isoformat())} + INTERVAL {limits.clock_skew_seconds} SECOND"
    for name in _TIME_FIELDS[table_kind]:
        terms.append(
            f"CASE WHEN {columns[name].parsed} > {horizon} THEN {_literal(name + ': in the future')} END"
        )
    if table_kind == EVENTS:
        terms.append(
            f"CASE WHEN {columns['recorded_at'].parsed} < {columns['event_time'].parsed} "
            "THEN 'recorded_at: before event_time' END"
        )
    parsed = ",\n  ".join(f"{col.parsed} AS {col.alias}" for col in columns.values())
    reasons = "concat_ws('; ',\n    " + ",\n    ".join(terms) + ")"
    return f"SELECT *,\n  {parsed},\n  {reasons} AS _reasons\nFROM {source}"


def raw_json_sql(input_schema: pa.Schema) -> str:
    """Expression rebuilding a record's original fields as JSON, for quarantine."""
    fields = [n for n in input_schema.names if not n.startswith("_") and not n.startswith(PARSED_PREFIX)]
    if not fields:
        return "'{}'"
    pairs = ", ".join(f"{_quote(n)} := {_quote(n)}" for n in fields)
    return f"CAST(to_json(struct_pack({pairs})) AS VARCHAR)"
