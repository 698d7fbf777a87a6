"""The auditors' export of the decision log: one row per decision (`AUDIT_COLUMNS`), as CSV or Parquet.

Who asked (the API key's name, never the key), which model (name, version, artifact-manifest digest),
on which inputs (feature-set version, SHA-256 of the features scored), what it decided and why
(reasons as JSON text), the latest human review, the observed outcome, and the offer (JSON text) with
the version and digest of the pricing policy that priced it. The log holds no protected attributes,
and the export carries neither the features nor the application.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from decisions.base import AUDIT_COLUMNS

ExportFormat = Literal["parquet", "csv"]
FORMATS: Final = ("parquet", "csv")
# Times are ISO 8601 text in the log (and in CSV); Parquet gets UTC timestamps.
TIME_COLUMNS: Final = frozenset({"created_at", "reviewed_at", "outcome_observed_at", "outcome_reported_at"})
FLOAT_COLUMNS: Final = frozenset({"pd", "score"})


def write_export(rows: Sequence[dict[str, Any]], out: Path, fmt: ExportFormat) -> None:
    """Write `rows` (from `DecisionLogReader.audit_rows`) to `out` in `fmt`, columns in `AUDIT_COLUMNS`
    order, every row; the file is written beside `out` and renamed, so a reader never sees half."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        if fmt == "csv":
            _write_csv(rows, partial)
        else:
            _write_parquet(rows, partial)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)


def _write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(AUDIT_COLUMNS)
        for row in rows:
            # Empty for none; the outcome as 1/0, as POST /v1/outcomes stores it.
            writer.writerow(
                "" if row[c] is None else int(row[c]) if isinstance(row[c], bool) else row[c]
                for c in AUDIT_COLUMNS
            )


def _write_parquet(rows: Sequence[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def kind(column: str) -> pa.DataType:
        if column in TIME_COLUMNS:
            return pa.timestamp("us", tz="UTC")
        if column in FLOAT_COLUMNS:
            return pa.float64()
        if column == "outcome_defaulted":
            return pa.bool_()
        return pa.string()

    schema = pa.schema([(c, kind(c)) for c in AUDIT_COLUMNS])
    columns = {c: [_time(r[c]) if c in TIME_COLUMNS else r[c] for r in rows] for c in AUDIT_COLUMNS}
    pq.write_table(pa.table(columns, schema=schema), path)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
