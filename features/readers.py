"""Streaming readers for cooperative feed files: CSV, JSON Lines, Parquet and Excel, in bounded chunks.

Text formats are read with every column as a string so that one bad value never sinks a whole block;
typing happens later in vectorized validation. Records that cannot be parsed at all are returned as
`BrokenLine`s so they reach quarantine instead of vanishing. A file that cannot be read at all (bad
bytes, a broken Parquet or Excel container, an unknown suffix) raises `FileReadError`, which names the
file and, where it applies, the byte offset or line.

Text (CSV and JSON Lines) is UTF-8, with or without a byte-order mark, or GB18030 (a superset of GBK,
which Chinese spreadsheet exports often use). The encoding is decided for the whole file before its
first chunk is handed on, so a file never fails half-way; nothing is ever decoded with replacement
characters.

CSV records follow the usual quoting rules, so a quoted value may hold line breaks. One stray quote
must not swallow the rest of the file, though: a record that spans lines yet has the wrong number of
fields, or spans more than `MAX_RECORD_LINES` lines, is reported as its first line ("unterminated
quote") and reading starts again on the next line. CSV line numbers count records as a spreadsheet
shows them (a quoted line break does not start a new one, blank lines are skipped); the header is 1.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from python_calamine import CalamineError, CalamineSheet, CalamineWorkbook

from features.event_log import DISTINCT_TEXT

TEXT_SUFFIXES = (".csv", ".jsonl", ".ndjson")
DATA_SUFFIXES = (*TEXT_SUFFIXES, ".parquet", ".xlsx")

# A quoted CSV value may span lines (a remark with line breaks), but a quote still open this many
# lines later is taken for a stray one: legitimate multi-line values in feeds are a few lines long.
MAX_RECORD_LINES = 100

# Text is checked for valid encoding in blocks of this size: large enough to be cheap, small enough
# to hold several at once.
_BLOCK_BYTES = 8 << 20

# Names accepted for `encoding=`, by the codec they mean. GBK and GB2312 are subsets of GB18030.
_ENCODINGS = {
    "utf-8": "utf-8",
    "utf-8-sig": "utf-8",
    "gb18030": "gb18030",
    "gbk": "gb18030",
    "gb2312": "gb18030",
}

# What the readers raise about a file's bytes (or the system's refusal to read it). Anything else is a
# fault of ours, and is not passed off as the file's.
_BAD_FILE = (pa.ArrowException, OSError, UnicodeError, CalamineError)

# Text a CSV reader takes for an empty cell; Excel cells holding it are read the same way.
_CSV_NULLS = frozenset(pacsv.ConvertOptions().null_values)


class FileReadError(Exception):
    """A whole file that cannot be read: its records never reach validation, so none are stored."""

    def __init__(
        self, path: Path, reason: str, *, line: int | None = None, byte_offset: int | None = None
    ) -> None:
        self.path = path
        self.reason = reason
        self.line = line
        self.byte_offset = byte_offset
        where = "" if byte_offset is None else f" at byte {byte_offset}"
        if line is not None:
            where += f" (line {line})" if where else f" at line {line}"
        super().__init__(f"{path}: {reason}{where}")

    def __reduce__(self) -> tuple[object, ...]:
        # The keyword-only arguments would be lost by the default pickling of exceptions.
        return (_rebuild_file_read_error, (self.path, self.reason, self.line, self.byte_offset))


def _rebuild_file_read_error(
    path: Path, reason: str, line: int | None, byte_offset: int | None
) -> FileReadError:
    return FileReadError(path, reason, line=line, byte_offset=byte_offset)


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


def canonical_encoding(name: str) -> str:
    """The codec a declared text encoding is read with: 'utf-8' or 'gb18030'.

    Raises ValueError for any other name: byte ranges of a CSV are cut at newline and quote bytes,
    which is only safe for encodings in which these never occur inside a character.
    """
    try:
        codec = _ENCODINGS.get(codecs.lookup(name).name)
    except LookupError:
        codec = None
    if codec is None:
        raise ValueError(f"unsupported text encoding {name!r}: use utf-8 or gb18030 (gbk)")
    return codec


def read_header(path: Path, *, encoding: str | None = None, sheet: str | None = None) -> list[str]:
    """Column names of a data file without reading its body ([] for a file with nothing in it).

    For JSON Lines, the keys of the first 200 records. Raises FileReadError for a file that cannot
    be read (ValueError for an unsupported `encoding`).
    """
    suffix = _suffix(path)
    declared = canonical_encoding(encoding) if encoding else None
    if _size(path) == 0:
        return []
    try:
        if suffix == ".parquet":
            return list(pq.read_schema(path).names)
        if suffix == ".xlsx":
            return _xlsx_header(_xlsx_sheet(path, sheet))
        codec = _text_encoding(path, declared, sample=True)
        if suffix == ".csv":
            return _csv_header(path, codec)[0]
        return _jsonl_keys(path, codec)
    except FileReadError:
        raise
    except _BAD_FILE as exc:
        raise _file_error(path, exc) from exc


def is_empty(path: Path, *, sheet: str | None = None) -> bool:
    """Whether the file holds no record: 0 bytes, only blank lines, a header only, or 0 Parquet rows."""
    suffix = _suffix(path)
    if _size(path) == 0:
        return True
    try:
        if suffix == ".parquet":
            return int(pq.ParquetFile(path).metadata.num_rows) == 0
        if suffix == ".xlsx":
            rows = _xlsx_rows(_xlsx_sheet(path, sheet))
            return sum(1 for _ in zip(range(2), rows, strict=False)) < 2
        with path.open("rb") as handle:
            lines = (line.removeprefix(codecs.BOM_UTF8) if n == 0 else line for n, line in enumerate(handle))
            if suffix == ".csv":  # a header, then a line that is not empty
                needed, filled = 2, (line for line in lines if line.rstrip(b"\r\n"))
            else:  # a line that is not blank
                needed, filled = 1, (line for line in lines if line.strip())
            return sum(1 for _ in zip(range(needed), filled, strict=False)) < needed
    except FileReadError:
        raise
    except _BAD_FILE as exc:
        raise _file_error(path, exc) from exc


def iter_chunks(
    path: Path, chunk_rows: int, *, encoding: str | None = None, sheet: str | None = None
) -> Iterator[FileChunk]:
    """Yield the file's records in chunks of at most about `chunk_rows` rows; none for an empty file.

    Raises FileReadError for a file that cannot be read (ValueError for an unsupported `encoding`).
    Text files are checked before their first chunk, so they never fail part-way; only Parquet whose
    footer is sound but whose data pages are corrupt can fail after some chunks.
    """
    suffix = _suffix(path)
    declared = canonical_encoding(encoding) if encoding else None
    if _size(path) == 0:
        return
    try:
        if suffix == ".parquet":
            yield from _parquet_chunks(path, chunk_rows)
        elif suffix == ".xlsx":
            yield from _xlsx_chunks(path, chunk_rows, sheet)
        elif suffix == ".csv":
            codec = _text_encoding(path, declared)
            # A CSV range is held as raw bytes and as parsed text columns while the next one parses:
            # half-size ranges keep a 20M-row ingest near 1.5 GiB instead of 2 GiB, at the same speed.
            yield from _csv_chunks(path, max(chunk_rows // 2, 1), codec)
        else:
            yield from _jsonl_chunks(path, chunk_rows, _text_encoding(path, declared))
    except FileReadError:
        raise
    except _BAD_FILE as exc:
        raise _file_error(path, exc) from exc


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        known = ", ".join(s.lstrip(".") for s in DATA_SUFFIXES)
        raise FileReadError(path, f"unsupported file type {suffix or '(none)'!r} (one of {known})")
    return suffix


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise _file_error(path, exc) from exc


def _file_error(path: Path, exc: BaseException) -> FileReadError:
    """A reader's exception as a file-level error a person can act on."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    suffix = path.suffix.lower()
    if isinstance(exc, OSError) and exc.errno is not None:
        # The operating system's refusal (missing, a folder, no permission), not the bytes' fault.
        return FileReadError(path, f"cannot read the file ({exc.strerror or message})")
    if suffix == ".parquet":
        return FileReadError(path, f"not a readable Parquet file ({message})")
    if suffix == ".xlsx":
        return FileReadError(path, f"not a readable Excel .xlsx file ({message})")
    return FileReadError(path, f"cannot be parsed ({message})")


# --- encodings ---------------------------------------------------------------------------------------


def _text_encoding(path: Path, declared: str | None, *, sample: bool = False) -> str:
    """The encoding the text file's bytes decode in: `declared` (a canonical codec name), else UTF-8,
    else GB18030. Checks every byte, or with `sample` the first MiB (enough for a header, and cheap).

    Text that was valid UTF-8, non-ASCII characters included, up to a bad byte is UTF-8 with damage,
    not GB18030: read as GB18030 it would be stored as mojibake.
    """
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileReadError(path, "UTF-16 text: save the export as UTF-8 or GB18030", byte_offset=0)
    if declared:
        bad = _first_bad_byte(path, declared, sample)
        if bad is None:
            return declared
        raise _undecodable(path, [declared], bad)
    bad_utf8 = _first_bad_byte(path, "utf-8", sample)
    if bad_utf8 is None:
        return "utf-8"
    if head.startswith(codecs.BOM_UTF8) or _utf8_characters(path, bad_utf8) >= _UTF8_EVIDENCE:
        raise _undecodable(path, ["utf-8"], bad_utf8)
    bad_gb18030 = _first_bad_byte(path, "gb18030", sample)
    if bad_gb18030 is None:
        return "gb18030"
    # The furthest offset is the likelier encoding's: in it, the bytes before were all fine.
    raise _undecodable(path, ["utf-8", "gb18030"], max(bad_utf8, bad_gb18030))


# GBK text is valid UTF-8 by chance for about one character in eleven, so this many valid multi-byte
# UTF-8 characters before a bad byte happen in GBK text about once in 10^8 files.
_UTF8_EVIDENCE = 8


def _undecodable(path: Path, codecs_tried: list[str], offset: int) -> FileReadError:
    names = " or ".join("UTF-8" if c == "utf-8" else c.upper() for c in codecs_tried)
    return FileReadError(path, f"not valid {names}", byte_offset=offset, line=_line_at(path, offset))


def _blocks(path: Path, sample: bool) -> Iterator[bytes]:
    """The file in blocks; with `sample`, only its first MiB, cut after the last whole line."""
    with path.open("rb") as handle:
        if sample:
            block = handle.read(1 << 20)
            if handle.read(1):  # more follows: a character cut at the sample's end is no error
                block = block[: block.rfind(b"\n") + 1] or block
            yield block
            return
        while block := handle.read(_BLOCK_BYTES):
            yield block


def _line_at(path: Path, offset: int) -> int:
    """The 1-based line holding byte `offset`."""
    newlines = 0
    with path.open("rb") as handle:
        while offset > 0 and (block := handle.read(min(_BLOCK_BYTES, offset))):
            newlines += block.count(b"\n")
            offset -= len(block)
    return newlines + 1


def _utf8_characters(path: Path, offset: int) -> int:
    """How many multi-byte characters the (valid UTF-8) bytes before `offset` hold."""
    count = 0
    with path.open("rb") as handle:
        while offset > 0 and (block := handle.read(min(_BLOCK_BYTES, offset))):
            count += int(np.count_nonzero(np.frombuffer(block, np.uint8) >= 0xC2))  # lead bytes
            offset -= len(block)
    return count


def _first_bad_byte(path: Path, codec: str, sample: bool) -> int | None:
    blocks = _blocks(path, sample)
    return _first_invalid_utf8(blocks) if codec == "utf-8" else _first_undecodable(blocks, codec)


def _first_invalid_utf8(blocks: Iterator[bytes]) -> int | None:
    """Offset of the first byte that is not valid UTF-8, or None.

    Arrow's vectorized UTF-8 check runs at several GB/s, against a few hundred MB/s for decoding in
    Python, so the 20M-event CSV ingest stays fast; Python decodes only a bad block, for the offset.
    """
    offset = 0  # of `carry` in the file
    carry = b""
    for block in blocks:
        data = carry + block if carry else block
        cut = _utf8_prefix(data)
        if not _valid_utf8(data[:cut]):
            try:
                data[:cut].decode("utf-8")
            except UnicodeDecodeError as exc:
                return offset + exc.start
        carry = data[cut:]
        offset += cut
    # Bytes left over at the end are a character cut short.
    return offset if carry else None


def _utf8_prefix(data: bytes) -> int:
    """Length of `data` without a multi-byte character cut short at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if needed <= back else len(data) - back
    return len(data)


def _valid_utf8(data: bytes) -> bool:
    offsets = pa.py_buffer(np.array([0, len(data)], np.int32))
    text = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _first_undecodable(blocks: Iterator[bytes], codec: str) -> int | None:
    """Offset of the first byte that does not decode in `codec`, or None."""
    decoder = codecs.getincrementaldecoder(codec)()
    offset = 0  # of the block being decoded
    for block in _with_end(blocks):
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            # The error's offset counts from the bytes the decoder still held from the last block.
            return offset - pending + exc.start
        offset += len(block)
    return None


def _with_end(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """The blocks, then b"" to mark the end."""
    yield from blocks
    yield b""


# --- Parquet -----------------------------------------------------------------------------------------


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
            if table.num_rows:
                yield FileChunk(_valid_text(table), [], done)
                done += table.num_rows
            continue
        for batch in parquet.iter_batches(batch_size=chunk_rows, row_groups=[group]):
            yield FileChunk(_valid_text(pa.Table.from_batches([batch])), [], done)
            done += batch.num_rows


def _valid_text(table: pa.Table) -> pa.Table:
    """`table`, once its text columns are checked to be valid UTF-8 (pa.ArrowInvalid if not).

    Parquet readers do not check the bytes of string pages: a damaged file can hand over invalid
    UTF-8, which DuckDB's validation query then meets as a fatal error that ends the whole ingest's
    connection instead of quarantining one file. Dictionary columns check only their dictionary.
    """
    for column in table.columns:
        kind = column.type
        if (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or (pa.types.is_dictionary(kind) and pa.types.is_string(kind.value_type))
        ):
            column.validate(full=True)
    return table


# --- CSV ---------------------------------------------------------------------------------------------


def _csv_header(path: Path, codec: str) -> tuple[list[str], int]:
    """The header's column names and the byte offset where the body starts ([] for no header).

    The header is the first line that is not blank.
    """
    with path.open("rb") as handle:
        offset = 0
        for line in handle:
            offset += len(line)
            if offset == len(line) and line.startswith(codecs.BOM_UTF8) and codec == "utf-8":
                line = line[len(codecs.BOM_UTF8) :]
            if line.strip(b"\r\n"):
                first = next(csv.reader([line.decode(codec)]), [])
                return [name.strip() for name in first], offset
    return [], offset


def _csv_chunks(path: Path, chunk_rows: int, codec: str) -> Iterator[FileChunk]:
    """CSV in byte ranges of about `chunk_rows` rows, each parsed on a background thread while the one
    before is processed.

    Ranges end where counting quotes says a record ends; the parse of each range checks that, and
    when a stray or literal quote made the count wrong, the records ran on past the range's end and
    the ranges after it are cut again from where they really end. Every column is read as text
    (repetitive ones dictionary-encoded), one piece per range.
    """
    header, body = _csv_header(path, codec)
    if not header:
        return
    types = {
        name: pa.string() if name in DISTINCT_TEXT else pa.dictionary(pa.int32(), pa.string())
        for name in header
    }
    types.update({name: pa.string() for name in header if name in _TEXT_VALUES})
    parser = _CsvParser(path, header, types, codec)
    done = 0
    rows_before = 0
    with (
        _CsvRanges(path, body, chunk_rows, len(header)) as ranges,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-parse") as pool,
    ):
        pending: deque[tuple[int, Future[_ParsedRange]]] = deque()
        while True:
            while len(pending) < 2 and (piece := next(ranges, None)) is not None:
                pending.append((piece.end, pool.submit(parser.parse, piece)))
                del piece  # held only by the parse that needs it
            if not pending:
                return
            end, future = pending.popleft()
            parsed = future.result()
            if parsed.end != end:
                # A record ran past the range's end: the next range starts after it, not at `end`.
                for _, later in pending:
                    later.cancel()
                pending.clear()
                ranges.restart(parsed.end)
            if parsed.records:
                yield _numbered(parsed.table, parsed.broken, done, rows_before)
            done += parsed.table.num_rows
            rows_before += parsed.records


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


@dataclass
class _Split:
    """A CSV range split into records line by line: the well-formed ones as bytes for the fast parser,
    the rest as broken lines. Record numbers count from 1 within the range."""

    good: bytes
    good_numbers: list[int]
    broken: list[BrokenLine]
    records: int
    consumed: int  # bytes of the range the records cover


@dataclass
class _CsvRange:
    """`size` bytes of a CSV body from byte `start`, which begins a record; `data` holds them plus a
    sentinel line."""

    start: int
    size: int
    data: bytes

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass
class _ParsedRange:
    """A range's records, its broken lines (numbered within the range), how many records it had in
    all, and the byte where its last record really ends."""

    table: pa.Table
    broken: list[BrokenLine]
    records: int
    end: int


class _CsvRanges:
    """The body of a CSV file in pieces of about `chunk_rows` rows, each ending at a newline that
    counting quotes puts outside a quoted value; `restart` moves on to where a record really ended.

    A quote still open `MAX_RECORD_LINES` lines past the cut is left open (a stray quote, or a literal
    one inside a value): the parse of the range finds the records' true ends.
    """

    def __init__(self, path: Path, body: int, chunk_rows: int, width: int) -> None:
        self._handle = path.open("rb")
        self._handle.seek(body)
        sample = self._handle.read(1 << 20)
        per_row = max(1.0, len(sample) / max(sample.count(b"\n"), 1))
        self._target = max(1 << 16, int(per_row * chunk_rows))
        self._start = body
        # One more field than the header: Arrow hands it to the invalid-row handler, where it shows
        # whether the range ended outside a quoted value (see `_CsvParser.parse`).
        self.sentinel = b"\x00" + b"," * width

    def __enter__(self) -> _CsvRanges:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def __iter__(self) -> _CsvRanges:
        return self

    def restart(self, offset: int) -> None:
        self._start = offset

    def __next__(self) -> _CsvRange:
        handle = self._handle
        handle.seek(self._start)
        data = handle.read(self._target)
        if not data:
            raise StopIteration
        parts = [data, handle.readline()]
        quotes_open = (data.count(b'"') + parts[-1].count(b'"')) % 2 == 1
        extra = 0
        while quotes_open and extra < MAX_RECORD_LINES and parts[-1]:
            # Extend to the newline that closes the quoted value, within the cap.
            parts.append(handle.readline())
            quotes_open ^= parts[-1].count(b'"') % 2 == 1
            extra += 1
        size = sum(len(part) for part in parts)
        if not next((part for part in reversed(parts) if part), b"").endswith(b"\n"):
            parts.append(b"\n")  # the file's last line, without a line end of its own
        parts.append(self.sentinel + b"\n")
        piece = _CsvRange(self._start, size, b"".join(parts))
        self._start += size
        return piece


class _CsvParser:
    """Parses CSV ranges of one file: Arrow for speed, and a line-by-line split of the records where a
    quote does not close as it should."""

    def __init__(self, path: Path, header: list[str], types: dict[str, pa.DataType], codec: str) -> None:
        self.path = path
        self.header = header
        self.types = types
        self.codec = codec

    def parse(self, piece: _CsvRange) -> _ParsedRange:
        """One range's records, checked: when Arrow's parse does not end on the sentinel line, or
        joined lines into a record the rules here keep apart, the range is split line by line."""
        try:
            table, broken = self._arrow(piece.data)
        except pa.ArrowInvalid:
            table, broken = None, []
        sentinel = self._sentinel_text()
        if (
            table is not None
            and broken
            and broken[-1].text == sentinel
            and broken[-1].line_number == table.num_rows + len(broken)
            and not self._glued(piece.data, table, broken)
        ):
            broken.pop()
            return _ParsedRange(table, broken, table.num_rows + len(broken), piece.end)
        body = piece.data[: piece.size]
        for exact in (False, True):
            with self.path.open("rb") as handle:
                handle.seek(piece.end)  # a record open at the range's end may read on
                split = self.split(body, handle.readline, exact=exact)
            table, arrow_broken = self._arrow(split.good)
            if table.num_rows + len(arrow_broken) == len(split.good_numbers):
                break  # Arrow found the records the split did
        numbers = split.good_numbers
        renumbered = [
            BrokenLine(
                numbers[b.line_number - 1] if b.line_number and b.line_number <= len(numbers) else None,
                b.text,
                b.reason,
            )
            for b in arrow_broken
        ]
        broken = sorted(split.broken + renumbered, key=lambda b: (b.line_number is None, b.line_number or 0))
        return _ParsedRange(table, broken, split.records, piece.start + split.consumed)

    def _sentinel_text(self) -> str:
        return "\x00" + "," * len(self.header)

    def _arrow(self, data: bytes) -> tuple[pa.Table, list[BrokenLine]]:
        """Arrow's parse of a range: records, and the rows with the wrong number of fields."""
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

        if self.codec != "utf-8":
            # Checked before the first range: this cannot fail. Arrow parses UTF-8 only.
            data = data.decode(self.codec).encode("utf-8")
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(
                column_names=self.header, block_size=len(data) + 1, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types=self.types, strings_can_be_null=True),
        )
        return table, broken

    @staticmethod
    def _glued(data: bytes, table: pa.Table, broken: list[BrokenLine]) -> bool:
        """Whether Arrow's parse joined lines that the quoting rules here keep apart: a multi-line
        record with the wrong number of fields, or one longer than `MAX_RECORD_LINES` lines."""
        if any("\n" in b.text or "\r" in b.text for b in broken):
            return True
        if data.count(b"\n") - table.num_rows - len(broken) < MAX_RECORD_LINES:
            return False  # too few line breaks inside values for any record to be that long
        per_row = np.zeros(table.num_rows, np.int64)
        for column in table.columns:
            text = column.cast(pa.string()) if pa.types.is_dictionary(column.type) else column
            per_row += pc.fill_null(pc.count_substring(text, "\n"), 0).to_numpy()
        return bool(per_row.size and per_row.max() >= MAX_RECORD_LINES)

    def split(self, data: bytes, more: Callable[[], bytes], *, exact: bool = True) -> _Split:
        """Split `data` into records line by line, re-synchronising after an unterminated quote.

        A record open at the end of `data` reads further lines from `more` (b"" at the end of the
        file), at most up to `MAX_RECORD_LINES` lines in all. Unless `exact`, a line with an even
        number of quotes is taken for a whole record without parsing it (30 times faster); that is
        wrong only for a line with a literal quote and an opening one, which the caller detects
        when Arrow then finds fewer records.
        """
        lines = data.split(b"\n")
        lines = [line + b"\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
        in_data = len(lines)
        good: list[bytes] = []
        good_numbers: list[int] = []
        broken: list[BrokenLine] = []
        records = 0
        i = 0
        while i < in_data:
            line = lines[i]
            if not line.rstrip(b"\r\n"):
                i += 1  # a blank line is no record (Arrow skips it too)
                continue
            records += 1
            end = i + 1
            if b'"' in line and (exact or line.count(b'"') % 2):
                closed, fields = self._record_end(lines, i, more)
                if closed is None or (closed - i > 1 and fields != len(self.header)):
                    text = line.rstrip(b"\r\n").decode(self.codec)
                    broken.append(BrokenLine(records, text, "unterminated quote"))
                    i += 1
                    continue
                end = closed
            good.append(b"".join(lines[i:end]))
            good_numbers.append(records)
            i = end
        consumed = sum(len(line) for line in lines[:i])
        return _Split(b"".join(good), good_numbers, broken, records, consumed)

    def _record_end(
        self, lines: list[bytes], start: int, more: Callable[[], bytes]
    ) -> tuple[int | None, int]:
        """Where the record starting at line `start` ends (the index after its last line) and how
        many fields it has; None when its quote is still open after `MAX_RECORD_LINES` lines or at
        the end of the file."""
        feed = _LineFeed(lines, start, more, self.codec)
        try:
            fields = next(csv.reader(feed))
        except csv.Error:
            # Python's csv refuses what Arrow may accept (a value over its size limit): a record on
            # one line is left to Arrow; one on several is taken for a runaway quote.
            return (feed.next_index, len(self.header)) if feed.next_index == start + 1 else (None, 0)
        if feed.exhausted:
            return None, 0
        return feed.next_index, len(fields)


@dataclass
class _LineFeed:
    """Lines for Python's csv reader, one record's worth: `exhausted` when the reader asked for a line
    beyond the cap or the end of the file, i.e. its quote never closed."""

    lines: list[bytes]
    start: int
    more: Callable[[], bytes]
    codec: str
    next_index: int = field(init=False)
    exhausted: bool = False

    def __post_init__(self) -> None:
        self.next_index = self.start

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self.next_index - self.start >= MAX_RECORD_LINES:
            self.exhausted = True
            raise StopIteration
        if self.next_index == len(self.lines):
            line = self.more()
            if not line:
                self.exhausted = True
                raise StopIteration
            self.lines.append(line)
        self.next_index += 1
        return self.lines[self.next_index - 1].decode(self.codec)


# --- JSON Lines --------------------------------------------------------------------------------------


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


def _jsonl_lines(path: Path, codec: str) -> Iterator[tuple[int, str]]:
    """The file's lines, numbered from 1, decoded (a UTF-8 byte-order mark dropped)."""
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1 and codec == "utf-8" and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            yield line_number, raw.decode(codec)


def _jsonl_keys(path: Path, codec: str) -> list[str]:
    keys: dict[str, None] = {}
    for _, (_, line) in zip(range(200), _jsonl_lines(path, codec), strict=False):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            keys.update(dict.fromkeys(record))
    return list(keys)


def _jsonl_chunks(path: Path, chunk_rows: int, codec: str) -> Iterator[FileChunk]:
    # Per-line parsing: a single broken line must only cost that line, never its block.
    columns: dict[str, list[str | None]] = {}
    count = 0
    done = 0
    broken: list[BrokenLine] = []
    for line_number, line in _jsonl_lines(path, codec):
        if not line.strip():
            continue
        text = line.rstrip("\r\n")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            broken.append(BrokenLine(line_number, text, f"malformed JSON: {exc.msg}"))
            continue
        if not isinstance(record, dict):
            broken.append(BrokenLine(line_number, text, "malformed JSON: not an object"))
            continue
        for key in record:
            if key not in columns:  # columns in the order the file first names them
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


# --- Excel -------------------------------------------------------------------------------------------


def _xlsx_sheet(path: Path, sheet: str | None) -> CalamineSheet:
    """The named sheet, or the first; a missing name is a FileReadError listing the sheets there are."""
    try:
        with CalamineWorkbook.from_path(str(path)) as workbook:
            names = workbook.sheet_names
            if sheet is None and names:
                return workbook.get_sheet_by_index(0)
            if sheet in names:
                return workbook.get_sheet_by_name(sheet)
    except CalamineError as exc:
        raise _file_error(path, exc) from exc
    except BaseException as exc:
        # calamine is Rust: bytes it cannot handle may end in a panic, which Python sees as a
        # BaseException. It is about this file, not the process.
        if type(exc).__name__ != "PanicException":
            raise
        raise _file_error(path, exc) from exc
    if not names:
        raise FileReadError(path, "the workbook has no sheet")
    raise FileReadError(path, f"no sheet named {sheet!r} (sheets: {', '.join(map(repr, names))})")


def _xlsx_rows(sheet: CalamineSheet) -> Iterator[tuple[int, list[str | None]]]:
    """Rows that are not blank, with their row number as Excel shows it, every cell as text."""
    if sheet.start is None:
        return  # no cell at all (iterating such a sheet would panic)
    # iter_rows pads the empty rows above the first cell, so the index is the row's own.
    for number, row in enumerate(sheet.iter_rows(), start=1):
        cells = [_cell_text(value) for value in row]
        if any(cell is not None for cell in cells):
            yield number, cells


def _xlsx_header(sheet: CalamineSheet) -> list[str]:
    return next((_xlsx_names(cells) for _, cells in _xlsx_rows(sheet)), [])


def _xlsx_names(cells: list[str | None]) -> list[str]:
    """Header cells as column names, up to the last one filled in."""
    width = max(i for i, cell in enumerate(cells) if cell is not None) + 1
    return [(cell or "").strip() for cell in cells[:width]]


def _xlsx_chunks(path: Path, chunk_rows: int, sheet_name: str | None) -> Iterator[FileChunk]:
    """The sheet's rows below its header (the first row), as text columns like a CSV's."""
    sheet = _xlsx_sheet(path, sheet_name)
    rows = _xlsx_rows(sheet)
    header = next(rows, None)
    if header is None:
        return
    names = _xlsx_names(header[1])
    width = len(names)
    columns: list[list[str | None]] = [[] for _ in names]
    broken: list[BrokenLine] = []
    count = done = 0
    for number, cells in rows:
        used = max(i for i, cell in enumerate(cells) if cell is not None) + 1
        if used > width:
            text = _csv_line(cells[:used])
            reason = f"malformed line: expected {width} fields, found {used}"
            broken.append(BrokenLine(number, text, reason))
        else:
            for column, cell in zip(columns, cells + [None] * (width - len(cells)), strict=False):
                column.append(cell)
            count += 1
        if count >= chunk_rows:
            yield FileChunk(_xlsx_table(names, columns), broken, done)
            done += count
            columns = [[] for _ in names]
            count, broken = 0, []
    if count or broken:
        yield FileChunk(_xlsx_table(names, columns), broken, done)


def _xlsx_table(names: list[str], columns: list[list[str | None]]) -> pa.Table:
    return pa.Table.from_arrays([pa.array(values, pa.string()) for values in columns], names=names)


def _csv_line(cells: list[str | None]) -> str:
    """Cells as one CSV line: how a row that could not be read is kept in quarantine."""
    out: list[str] = []
    for cell in cells:
        text = cell or ""
        needs_quotes = any(ch in text for ch in ',"\n\r')
        out.append('"' + text.replace('"', '""') + '"' if needs_quotes else text)
    return ",".join(out)


def _cell_text(value: object) -> str | None:
    """An Excel cell as the text a CSV export of it would hold; None for an empty cell."""
    if isinstance(value, str):
        return None if value in _CSV_NULLS else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Excel keeps 15 significant digits; a whole number below that has no ".0" in a CSV.
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format(value, ".15g")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        # An elapsed time as Excel shows it ([h]:mm:ss), which is what its CSV export holds.
        size = abs(value)
        hours, rest = divmod(size.days * 86400 + size.seconds, 3600)
        text = f"{'-' if value < timedelta(0) else ''}{hours}:{rest // 60:02d}:{rest % 60:02d}"
        return text + f".{size.microseconds:06d}".rstrip("0") if size.microseconds else text
    return str(value)
