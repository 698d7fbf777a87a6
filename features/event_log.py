"""The append-only event log and reference tables: Hive-partitioned Parquet written by atomic rename.

Layout under the data dir:
    events/event_type=<type>/part-<batch>-<chunk>.parquet   (schema: contracts.EVENT_CONTRACTS[type])
    tables/<name>/part-<batch>-<chunk>.parquet              (schema: contracts.REFERENCE_CONTRACTS)
A part file appears whole or not at all (temp file, fsync, rename, fsync of the folder), so a reader
or a crashed writer never sees half a file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from features.contracts import EVENT_CONTRACTS, EVENT_TYPES, REFERENCE_CONTRACTS

PART_GLOB = "part-*.parquet"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Text columns whose values are (nearly) all distinct. Every other text column (codes, enums, coop and
# village ids, quarantine reasons) is dictionary-encoded; these are not, nor are numbers and timestamps:
# building a dictionary only to abandon it when it overflows costs more than the rest of the write.
DISTINCT_TEXT = frozenset({"event_id", "member_id", "loan_id", "application_id", "raw"})


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    return [
        f.name
        for f in schema
        if (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)) and f.name not in DISTINCT_TEXT
    ]


# Below this many rows a part is encoded with Snappy rather than zstd: setting up a zstd compressor per
# column costs about 0.4 ms a file, most of the encoding time of the few rows a POST writes per event
# type, and there is nothing worth compressing harder in so small a file.
SMALL_PART_ROWS = 10_000


def _write_parquet(table: pa.Table, sink: pa.NativeFile | BinaryIO) -> None:
    small = table.num_rows < SMALL_PART_ROWS
    pq.write_table(
        table,
        sink,
        compression="snappy" if small else "zstd",
        compression_level=None if small else 1,
        use_dictionary=_dictionary_columns(table.schema),
        row_group_size=1_000_000,
    )


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Temp file, `write`, fsync, rename, fsync of the folder: the file is complete and durable or
    absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with tmp.open("wb") as sink:
            write(sink)
            sink.flush()
            os.fsync(sink.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write `table` to `path` so that the file is either complete and durable or absent."""
    _atomic_write(path, lambda sink: _write_parquet(table, sink))


def encode_parquet(table: pa.Table) -> pa.Buffer:
    """`table` as the bytes of a Parquet file, encoded as `write_parquet_atomic` would (for a small
    part: encoded on the calling thread, then only written and fsynced on another, see
    `write_bytes_atomic`)."""
    sink = pa.BufferOutputStream()
    _write_parquet(table, sink)
    buffer: pa.Buffer = sink.getvalue()
    return buffer


def write_bytes_atomic(data: pa.Buffer, path: Path) -> None:
    """Write encoded bytes (see `encode_parquet`) to `path`, complete and durable or absent."""
    _atomic_write(path, lambda sink: sink.write(memoryview(data)))


class EventLog:
    """Reads and appends the Parquet event log and reference tables below one data dir."""

    def __init__(self, events_dir: Path, tables_dir: Path) -> None:
        self.events_dir = events_dir
        self.tables_dir = tables_dir

    def event_dir(self, event_type: str) -> Path:
        """Partition folder of one event type."""
        if event_type not in EVENT_CONTRACTS:
            raise ValueError(f"unknown event type {event_type!r}")
        return self.events_dir / f"event_type={event_type}"

    def table_dir(self, table: str) -> Path:
        """Folder of one reference table."""
        if table not in REFERENCE_CONTRACTS:
            raise ValueError(f"unknown table {table!r}")
        return self.tables_dir / table

    def event_files(self, event_type: str | None = None) -> list[Path]:
        """Committed part files of one event type (or of all types), sorted by name."""
        types = EVENT_TYPES if event_type is None else (event_type,)
        return sorted(p for t in types for p in self.event_dir(t).glob(PART_GLOB))

    def table_files(self, table: str) -> list[Path]:
        """Committed part files of one reference table."""
        return sorted(self.table_dir(table).glob(PART_GLOB))

    def event_part_path(self, event_type: str, part_name: str) -> Path:
        """Where `append_events` puts the part `part_name` of one event type."""
        return self.event_dir(event_type) / f"part-{part_name}.parquet"

    def table_part_path(self, table: str, part_name: str) -> Path:
        """Where `append_table` puts the part `part_name` of one reference table."""
        return self.table_dir(table) / f"part-{part_name}.parquet"

    def append_events(self, event_type: str, rows: pa.Table, part_name: str) -> Path:
        """Append rows of one event type (already validated and deduplicated) as one part file."""
        schema = EVENT_CONTRACTS[event_type].arrow_schema()
        path = self.event_part_path(event_type, part_name)
        write_parquet_atomic(rows.select(schema.names).cast(schema), path)
        return path

    def encode_events(self, event_type: str, rows: pa.Table) -> pa.Buffer:
        """The part file `append_events` would write for these rows, as bytes (for `write_part`)."""
        schema = EVENT_CONTRACTS[event_type].arrow_schema()
        return encode_parquet(rows.select(schema.names).cast(schema))

    def write_part(self, data: pa.Buffer, path: Path) -> Path:
        """Commit a part encoded by `encode_events` (whole and durable, or absent)."""
        write_bytes_atomic(data, path)
        return path

    def append_table(self, table: str, rows: pa.Table, part_name: str) -> Path:
        """Append rows of one reference table (validated, deduplicated by key) as one part file."""
        schema = REFERENCE_CONTRACTS[table].arrow_schema()
        path = self.table_part_path(table, part_name)
        write_parquet_atomic(rows.select(schema.names).cast(schema), path)
        return path

    def read_events(self, event_type: str, columns: list[str] | None = None) -> pa.Table:
        """All stored events of one type (an empty table with the contract schema if none)."""
        schema = EVENT_CONTRACTS[event_type].arrow_schema()
        files = self.event_files(event_type)
        if not files:
            empty = schema.empty_table()
            return empty if columns is None else empty.select(columns)
        return pq.ParquetDataset(files, schema=schema).read(columns=columns)

    def read_table(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """A whole reference table (an empty table with the contract schema if none)."""
        schema = REFERENCE_CONTRACTS[table].arrow_schema()
        files = self.table_files(table)
        if not files:
            empty = schema.empty_table()
            return empty if columns is None else empty.select(columns)
        return pq.ParquetDataset(files, schema=schema).read(columns=columns)

    def iter_event_ids(self) -> Iterator[pa.Array]:
        """Every stored event_id, one array per part file (to rebuild the dedupe set)."""
        for path in self.event_files():
            yield pq.read_table(path, columns=["event_id"]).column("event_id").combine_chunks()

    def clean_temp_files(self) -> int:
        """Remove temp files a crashed writer left behind; they were never part of the log."""
        removed = 0
        for root in (self.events_dir, self.tables_dir):
            for tmp in root.glob("**/.part-*.tmp-*"):
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed
