"""Keyword-only makers of the bad files cooperatives send: empty, truncated, garbage, corrupt, re-exported."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from features.contracts import WIDE_EVENT_CONTRACT


def write_parquet(path: Path, rows: list[dict[str, str]], *, row_group_size: int | None = None) -> Path:
    """Rows as a Parquet export with every wide column as text (as a spreadsheet tool writes it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {
        name: pa.array([r.get(name) or None for r in rows], pa.string()) for name in WIDE_EVENT_CONTRACT.names
    }
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size, compression="zstd")
    return path


def truncated_copy(source: Path, path: Path, *, keep: float = 0.5) -> Path:
    """The first `keep` share of a file's bytes: an upload or copy cut short."""
    data = source.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def corrupt_row_group(path: Path, group: int) -> Path:
    """Scramble the column data of one row group in place, leaving the footer intact: the file opens
    and its earlier row groups read, then reading this one fails (its pages no longer decompress)."""
    meta = pq.ParquetFile(path).metadata.row_group(group)
    data = bytearray(path.read_bytes())
    for j in range(meta.num_columns):
        column = meta.column(j)
        start = min(o for o in (column.data_page_offset, column.dictionary_page_offset) if o)
        for k in range(start + 20, start + column.total_compressed_size - 5):
            data[k] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


def crlf_reexport(source: Path, path: Path, *, reverse_columns: bool = False) -> Path:
    """The same CSV saved again by another tool: CRLF line endings, and maybe its columns reversed
    (a line that was broken stays as it was, apart from its line ending)."""
    lines = source.read_text(encoding="utf-8").splitlines()
    if reverse_columns:
        width = len(next(csv.reader(lines[:1])))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for fields, line in zip(csv.reader(lines), lines, strict=True):
            if len(fields) == width:
                writer.writerow(list(reversed(fields)))
            else:
                out.write(line + "\n")
        lines = out.getvalue().splitlines()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return path
