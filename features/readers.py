"""Streaming readers for cooperative feed files: CSV, JSON Lines and Parquet, in bounded chunks.

Text formats are read with every column as a string so that one bad value never sinks a whole block;
typing happens later in vectorized validation. Lines that cannot be parsed at all are returned as
`BrokenLine`s so they reach quarantine instead of vanishing.
"""

from __future__ import annotations

import csv
import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.event_log import DISTINCT_TEXT

TEXT_SUFFIXES = (".csv", ".jsonl", ".ndjson")
DATA_SUFFIXES = (*TEXT_SUFFIXES, ".parquet")


class FileReadError(Exception):
    """A file that cannot be read at all (undecodable bytes, not Parquet, ...): where and why, in one line."""

    def __init__(
        self, path: Path, reason: str, *, line: int | None = None, byte_offset: int | None = None
    ) -> None:
        self.path = path
        self.reason = reason
        self.line = line
        self.byte_offset = byte_offset
        where = "".join(
            [
                f", line {line}" if line is not None else "",
                f", byte {byte_offset}" if byte_offset is not None else "",
            ]
        )
        super().__init__(f"{path.name}{where}: {reason}")


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


def read_header(path: Path, *, encoding: str | None = None, sheet: str | None = None) -> list[str]:
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


def iter_chunks(
    path: Path, chunk_rows: int, *, encoding: str | None = None, sheet: str | None = None
) -> Iterator[FileChunk]:
    """Yield the file's records in chunks of at most about `chunk_rows` rows."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_chunks(path, chunk_rows)
    elif suffix == ".csv":
        # A CSV range is held as raw bytes and as parsed text columns while the next one parses:
        # half-size ranges keep a 20M-row ingest near 1.5 GiB instead of 2 GiB, at the same speed.
        yield from _csv_chunks(path, max(chunk_rows // 2, 1))
    elif suffix in (".jsonl", ".ndjson"):
        yield from _jsonl_chunks(path, chunk_rows)
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r} (csv, jsonl or parquet)")


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[FileChunk]:
    """The file's chunks, each read on a background thread while the one before is processed."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-read") as reader:
        chunks = _parquet_row_groups(path, chunk_rows)
        upcoming = reader.submit(next, chunks, None)
        while (chunk := upcoming.result()) is not None:
            upcoming = reader.submit(next, chunks, None)
            yield chunk


def _parquet_row_groups(path: Path, chunk_rows: int) -> Iterator[FileChunk]:
    # Chunks follow the row groups when these are not much larger than a chunk: a chunk that straddles
    # two row groups would have to be copied into one piece before it is split by event type.
    # Repetitive text columns (codes, enums) are read as dictionaries: validating, splitting by type and
    # writing them then touches small integer codes, not every string.
    schema = pq.read_schema(path)
    repetitive = [f.name for f in schema if pa.types.is_string(f.type) and f.name not in DISTINCT_TEXT]
    parquet = pq.ParquetFile(path, pre_buffer=True, read_dictionary=repetitive)
    done = 0
    for group in range(parquet.metadata.num_row_groups):
        if parquet.metadata.row_group(group).num_rows <= 2 * chunk_rows:
            table = parquet.read_row_group(group)
            yield FileChunk(table, [], done)
            done += table.num_rows
            continue
        for batch in parquet.iter_batches(batch_size=chunk_rows, row_groups=[group]):
            yield FileChunk(pa.Table.from_batches([batch]), [], done)
            done += batch.num_rows


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[FileChunk]:
    """CSV in byte ranges of about `chunk_rows` rows, each parsed on a background thread while the one
    before is processed.

    A range ends at a newline outside quotes, so each one parses exactly as it would inside the whole
    file. Every column is read as text (repetitive ones dictionary-encoded), one piece per range.
    """
    header = read_header(path)
    types = {
        name: pa.string() if name in DISTINCT_TEXT else pa.dictionary(pa.int32(), pa.string())
        for name in header
    }
    types.update({name: pa.string() for name in header if name in _TEXT_VALUES})
    done = 0
    rows_before = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-parse") as pool:
        pending: deque[Future[tuple[pa.Table, list[BrokenLine], int]]] = deque()
        for data in _csv_ranges(path, chunk_rows):
            pending.append(pool.submit(_parse_csv_range, data, header, types))
            del data  # held only by the parse that needs it
            if len(pending) < 2:
                continue
            table, broken, rows = pending.popleft().result()
            yield _numbered(table, broken, done, rows_before)
            done += table.num_rows
            rows_before += rows
        while pending:
            table, broken, rows = pending.popleft().result()
            yield _numbered(table, broken, done, rows_before)
            done += table.num_rows
            rows_before += rows


# Columns that hold free values (numbers, times) rather than codes: a dictionary would not pay off.
_TEXT_VALUES = frozenset(
    {"event_time", "recorded_at", "amount_cny", "quantity_kg", "due_date", "days_late", "applied_at"}
    | {"observed_at", "founded_at", "name"}
)


def _numbered(table: pa.Table, broken: list[BrokenLine], done: int, rows_before: int) -> FileChunk:
    """A parsed range as a chunk: broken lines get their line in the file (the header is line 1)."""
    lines = [
        BrokenLine(None if b.line_number is None else 1 + rows_before + b.line_number, b.text, b.reason)
        for b in broken
    ]
    return FileChunk(table, lines, done)


def _csv_ranges(path: Path, chunk_rows: int) -> Iterator[bytes]:
    """The body of a CSV file (after its header line) in pieces of about `chunk_rows` rows, each ending
    at a newline that is not inside a quoted value."""
    with path.open("rb") as handle:
        handle.readline()
        sample = handle.read(1 << 20)
        per_row = max(1.0, len(sample) / max(sample.count(b"\n"), 1))
        target = max(1 << 16, int(per_row * chunk_rows))
        handle.seek(-len(sample), 1)
        quotes_open = False
        while True:
            data = handle.read(target)
            if not data:
                return
            quotes_open ^= data.count(b'"') % 2 == 1
            while True:
                # Extend to the next newline, and beyond while a quoted value is still open.
                tail = handle.readline()
                data += tail
                quotes_open ^= tail.count(b'"') % 2 == 1
                if not tail or not quotes_open:
                    break
            yield data


def _parse_csv_range(
    data: bytes, header: list[str], types: dict[str, pa.DataType]
) -> tuple[pa.Table, list[BrokenLine], int]:
    """Parse one range; returns its records, its broken lines (numbered within the range) and how many
    rows it had in all."""
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

    table = pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(column_names=header, block_size=len(data) + 1, use_threads=False),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
    )
    return table, broken, table.num_rows + len(broken)


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
