"""Streaming readers for cooperative feed files: CSV, JSON Lines and Parquet, in bounded chunks.

Text formats are read with every column as a string so that one bad value never sinks a whole block;
typing happens later in vectorized validation. Lines that cannot be parsed at all are returned as
`BrokenLine`s so they reach quarantine instead of vanishing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

TEXT_SUFFIXES = (".csv", ".jsonl", ".ndjson")
DATA_SUFFIXES = (*TEXT_SUFFIXES, ".parquet")


@dataclass(frozen=True)
class BrokenLine:
    """A line that could not be split into fields: the raw text and where it was."""

    line_number: int | None
    text: str
    reason: str


@dataclass
class FileChunk:
    """Up to `chunk_rows` parsed records of one file, plus the lines that could not be parsed."""

    records: pa.Table
    broken: list[BrokenLine]
    first_record_index: int


def read_header(path: Path) -> list[str]:
    """Column names of a data file without reading its body."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return list(pq.read_schema(path).names)
    if suffix == ".csv":
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            first = next(csv.reader(handle), [])
        return [name.strip() for name in first]
    keys: dict[str, None] = {}
    with path.open("r", encoding="utf-8") as handle:
        for _, line in zip(range(200), handle, strict=False):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                keys.update(dict.fromkeys(record))
    return list(keys)


def iter_chunks(path: Path, chunk_rows: int) -> Iterator[FileChunk]:
    """Yield the file's records in chunks of at most about `chunk_rows` rows."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_chunks(path, chunk_rows)
    elif suffix == ".csv":
        yield from _csv_chunks(path, chunk_rows)
    elif suffix in (".jsonl", ".ndjson"):
        yield from _jsonl_chunks(path, chunk_rows)
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r} (csv, jsonl or parquet)")


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[FileChunk]:
    parquet = pq.ParquetFile(path)
    done = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        yield FileChunk(pa.Table.from_batches([batch]), [], done)
        done += batch.num_rows


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[FileChunk]:
    header = read_header(path)
    broken: list[BrokenLine] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        broken.append(
            BrokenLine(
                row.number,
                row.text,
                f"malformed line: expected {row.expected_columns} fields, found {row.actual_columns}",
            )
        )
        return "skip"

    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=min(16 << 20, max(1 << 20, chunk_rows * 64))),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True
        ),
    )
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    done = 0
    for batch in reader:
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield FileChunk(table.slice(0, chunk_rows), broken, done)
            done += chunk_rows
            rest = table.slice(chunk_rows)
            pending, pending_rows, broken = rest.to_batches(), rest.num_rows, []
    if pending_rows or broken:
        records = (
            pa.Table.from_batches(pending)
            if pending_rows
            else pa.table({name: pa.array([], pa.string()) for name in header})
        )
        yield FileChunk(records, broken, done)


def json_scalar(value: object) -> str | None:
    """A JSON value as the text a CSV cell would hold (validation types it later)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[FileChunk]:
    # Per-line parsing: a single broken line must only cost that line, never its block.
    columns: dict[str, list[str | None]] = {}
    count = 0
    done = 0
    broken: list[BrokenLine] = []
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                broken.append(BrokenLine(line_number, line.rstrip("\n"), f"malformed JSON: {exc.msg}"))
                continue
            if not isinstance(record, dict):
                broken.append(BrokenLine(line_number, line.rstrip("\n"), "malformed JSON: not an object"))
                continue
            for key in record.keys() - columns.keys():
                columns[key] = [None] * count
            for key, values in columns.items():
                values.append(json_scalar(record.get(key)))
            count += 1
            if count >= chunk_rows:
                yield FileChunk(_string_table(columns), broken, done)
                done += count
                columns = {key: [] for key in columns}
                count, broken = 0, []
    if count or broken:
        yield FileChunk(_string_table(columns), broken, done)


def _string_table(columns: dict[str, list[str | None]]) -> pa.Table:
    return pa.table({key: pa.array(values, pa.string()) for key, values in columns.items()})
