"""Ingestion: stream feed files through vectorized validation and dedupe into the Parquet event log.

Guarantees: every rejected row lands in quarantine with its reasons, once (a record already there, by
the hash of its content, is counted but not written again); every valid row is stored exactly once
(dedupe by `event_id` for events and by key for reference tables, against the whole log); a file whose
exact bytes were ingested before is skipped and reported as duplicates; a process killed at any point
leaves only whole part files behind, and re-running the same ingest completes it.

A bad file never stops the others: each file ends `stored`, `stored with quarantined rows`, `empty` or
`failed` with a one-line reason, and for every file `rows_read = accepted + duplicates + quarantined`.
A failed file is not marked done, so the next run reads it again. If a reader fails part-way through a
file, the records it handed on before the failure are kept (stored or quarantined as usual, like those
of a killed run): the fixed file's re-run counts them as duplicates and stores only the rest.

How it stays fast: each chunk is validated by one generated DuckDB query (see `validation`) that returns
flags, key hashes and the few columns that needed typing (a small chunk, such as an API call's, by a
light query that only types and hashes, its rules checked by Arrow: the same answers, property-tested);
columns that arrive typed (or as clean text) are stored as read, repetitive text stays
dictionary-encoded, and reasons are only built for bad rows.
Dedupe holds 64-bit key hashes in sorted runs behind a Bloom filter (`KeySet`) and confirms every hash
match on the key text; the stored keys come from the persistent key index (`key_index`), not from the
log, and each chunk's fresh keys are added to it beside its parts. Validation is the only step on the
calling thread: each chunk's dedupe (sequential, on one thread of its own, so every chunk is checked
against all keys before it) and its writes (gather of each event type's rows, then encode and fsync, on
two threads) overlap the next chunk's read and validation, and the next file's SHA-256 is computed in
the background.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from coopscore.files import private_dir
from features.contracts import EVENT_CONTRACTS, EVENT_TYPES, REFERENCE_CONTRACTS, TableContract
from features.event_log import EventLog, write_parquet_atomic
from features.key_index import KeyIndex
from features.key_index import KeySet as KeySet  # re-exported: tests and callers import it from here
from features.ledger import (
    EMPTY,
    FAILED,
    FILE_STATUSES,
    STORED,
    STORED_WITH_QUARANTINE,
    IngestLedger,
    SourceRecord,
    file_sha256,
)
from features.readers import (
    DATA_SUFFIXES,
    TEXT_SUFFIXES,
    BrokenLine,
    FileChunk,
    FileReadError,
    iter_chunks,
    json_scalar,
    read_header,
)
from features.validation import (
    COMPUTED,
    EVENTS,
    PARSED_PREFIX,
    PASSTHROUGH,
    PATCH_PREFIX,
    Limits,
    ValidationPlan,
    clean_text_columns,
    contract_for,
    matching_id_columns,
    unsupported_columns,
    validation_plan,
)

TABLE_KINDS = (EVENTS, *REFERENCE_CONTRACTS)
# Folder names a feed export uses for each table; `truth/` is never ingested.
_FOLDER_KINDS = {
    "events": EVENTS,
    "applications": "applications",
    "outcomes": "outcomes",
    "members": "member_profiles",
    "member_profiles": "member_profiles",
    "cooperatives": "cooperatives",
}
_SKIPPED_FOLDERS = {"truth"}
# The table kind of a file whose kind could not be told (unreadable, empty, or columns of no table).
UNKNOWN_KIND = "unknown"

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("table_kind", pa.string(), nullable=False),
        pa.field("record_index", pa.int64()),
        pa.field("line_number", pa.int64()),
        pa.field("reasons", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),
        # Hash of the record's content (see `quarantine_record_hash`): the same record is quarantined once.
        pa.field("record_hash", pa.string(), nullable=False),
    ]
)

ProgressCallback = Callable[[int, int], None]
# What a validation plan depends on: table kind, input schema, clean and matching columns, and the
# limits with their clock left out (a cached plan is moved to each batch's clock).
PlanKey = tuple[str, pa.Schema, frozenset[str], frozenset[str], Limits]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_PLANS = 256


@dataclass
class SourceCounts:
    """Running counts for one source file within a batch, and what became of it.

    `quarantined` counts every record of the file that broke a rule or could not be parsed;
    `quarantined_before` is the part of those already in quarantine (from an earlier run, or earlier in
    this one: a re-export), which are not written there again. `reason` is set when the file failed.
    """

    source: str
    checksum: str
    table_kind: str
    rows_read: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantined_before: int = 0
    skipped_as_already_ingested: bool = False
    reason: str | None = None

    @property
    def status(self) -> str:
        """`failed`, `empty` (no records), `stored with quarantined rows` or `stored`."""
        if self.reason is not None:
            return FAILED
        if self.rows_read == 0:
            return EMPTY
        return STORED_WITH_QUARANTINE if self.quarantined else STORED

    def record(self) -> SourceRecord:
        """The ledger row for this source."""
        return SourceRecord(
            self.source,
            self.checksum,
            self.table_kind,
            self.rows_read,
            self.accepted,
            self.duplicates,
            self.quarantined,
            self.status,
            self.reason,
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready, status first after the file's name."""
        return {"source": self.source, "status": self.status, **asdict(self)}


_COUNTS = ("rows_read", "accepted", "duplicates", "quarantined", "quarantined_before")


@dataclass
class IngestReport:
    """What one `ingest` call did, per source and in total."""

    batch_id: str
    sources: list[SourceCounts] = field(default_factory=list)
    unrecognised: list[str] = field(default_factory=list)
    recovered_batches: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def totals(self) -> dict[str, int]:
        """Summed counts over every source."""
        return {k: sum(int(getattr(s, k)) for s in self.sources) for k in _COUNTS}

    def by_table(self) -> dict[str, dict[str, int]]:
        """Summed counts per table kind."""
        out: dict[str, dict[str, int]] = {}
        for s in self.sources:
            row = out.setdefault(s.table_kind, {"files": 0, **dict.fromkeys(_COUNTS, 0)})
            row["files"] += 1
            for k in _COUNTS:
                row[k] += int(getattr(s, k))
        return out

    def by_status(self) -> dict[str, int]:
        """How many files ended in each status (every status listed, zeros included)."""
        counts = dict.fromkeys(FILE_STATUSES, 0)
        for s in self.sources:
            counts[s.status] += 1
        return counts

    @property
    def failed(self) -> list[SourceCounts]:
        """The files that could not be read (their good rows, if any, are in `accepted`)."""
        return [s for s in self.sources if s.status == FAILED]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            "batch_id": self.batch_id,
            "seconds": round(self.seconds, 3),
            "totals": self.totals(),
            "files": self.by_status(),
            "by_table": self.by_table(),
            "sources": [s.to_dict() for s in self.sources],
            "unrecognised": self.unrecognised,
            "recovered_batches": self.recovered_batches,
        }


@dataclass(frozen=True)
class FeedFile:
    """A data file found under the paths given, its table kind, and why it cannot be read (if known)."""

    path: Path
    kind: str
    problem: str | None = None


def discover(
    paths: list[Path], *, encoding: str | None = None, sheet: str | None = None
) -> tuple[list[FeedFile], list[str]]:
    """Data files under `paths` with their table kind (by folder name, else by columns), and the
    other files skipped. A data file whose kind cannot be told is still listed, with its problem:
    it is reported as failed (or empty), never dropped in silence."""
    found: list[FeedFile] = []
    unrecognised: list[str] = []
    for root in paths:
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or folder")
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in candidates:
            rel_parts = path.relative_to(root).parts[:-1] if root.is_dir() else ()
            if any(part in _SKIPPED_FOLDERS or part.startswith(".") for part in rel_parts):
                continue
            if path.suffix.lower() not in DATA_SUFFIXES or path.name.startswith("."):
                if path.suffix.lower() not in (".json", ".md", ".txt"):
                    unrecognised.append(f"{path}: not a data file")
                continue
            kind = _kind_from_folders(path)
            if kind is not None:
                found.append(FeedFile(path, kind))
                continue
            try:
                columns = read_header(path, encoding=encoding, sheet=sheet)
            except Exception as exc:  # any reader failure is this file's, reported with its name
                found.append(FeedFile(path, UNKNOWN_KIND, _failure(path, exc)))
                continue
            kind = _kind_from_columns(columns)
            if kind is not None:
                found.append(FeedFile(path, kind))
            elif not columns:
                found.append(FeedFile(path, UNKNOWN_KIND))  # empty, or no column names: see `_read_file`
            else:
                shown = ", ".join(columns[:8]) + (", ..." if len(columns) > 8 else "")
                problem = (
                    f"{path.name}: its columns ({shown}) match no table; an events file needs event_id "
                    "and event_type (see the contracts in the README), or put it in a folder named for "
                    "its table (events/, applications/, outcomes/, members/, cooperatives/)"
                )
                found.append(FeedFile(path, UNKNOWN_KIND, problem))
    return found, unrecognised


def _failure(path: Path, exc: BaseException) -> str:
    """A reader's failure as one line: the file's name, the line or byte offset where known, and why."""
    if isinstance(exc, FileReadError):
        where = "".join(
            [
                f", line {exc.line}" if exc.line is not None else "",
                f", byte {exc.byte_offset}" if exc.byte_offset is not None else "",
            ]
        )
        return f"{path.name}{where}: " + " ".join(exc.reason.split())
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{path.name}: {text}"


def _kind_from_folders(path: Path) -> str | None:
    for part in reversed(path.parts[:-1]):
        if part in _FOLDER_KINDS:
            return _FOLDER_KINDS[part]
    return None


def _kind_from_columns(columns: list[str]) -> str | None:
    names = set(columns)
    if {"event_id", "event_type"} <= names:
        return EVENTS
    if {"application_id", "defaulted"} <= names:
        return "outcomes"
    if {"application_id", "applied_at"} <= names:
        return "applications"
    if {"member_id", "gender", "birth_year"} <= names:
        return "member_profiles"
    if {"coop_id", "founded_at"} <= names:
        return "cooperatives"
    return None


def _new_batch_id() -> str:
    """Sortable by start time, unique across processes."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


# A relation (`con.sql`) is planned twice, once to bind its schema and once to run: ~8 ms each for a
# validation query, most of a small POST's time. For small inputs the DB-API path (planned once) is
# used instead; its extra copy of a few rows costs nothing, so its warning about that is silenced here.
_SMALL_QUERY_ROWS = 10_000
# Up to this many records a chunk's bad flags are computed by Arrow from a light query's parsed values
# (`ValidationPlan.light_sql`, `fast_bad`) instead of by the main query, whose wide rule expression costs
# DuckDB ~8 ms to set up however few the rows. Beyond it the main query is as cheap per row, and one pass.
FAST_CHECK_ROWS = 1_000


def _silence_copy_warning() -> None:
    """Ignore DuckDB's extra-copy warning for this module's queries only. Re-applied per call (it
    replaces itself, costs microseconds) because a test runner resets the filters of an import."""
    warnings.filterwarnings(
        "ignore", message="Arrow output on a DB-API result", category=UserWarning, module=r"features\.ingest"
    )


def _fetch(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None, *, small: bool = False
) -> pa.Table:
    """Run a query and return its whole result as one Arrow table (`small`: planned once, see above)."""
    if small:
        _silence_copy_warning()
        table: pa.Table = con.execute(sql, params or []).to_arrow_table()
        return table
    table = con.sql(sql, params=params).to_arrow_table()
    return table


@contextmanager
def _writer_lock(data_dir: Path) -> Iterator[None]:
    """One writer at a time per data dir: dedupe is only exact if nobody appends meanwhile."""
    private_dir(data_dir)
    with (data_dir / ".ingest.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _rebatched(table: pa.Table, rows: int = 1 << 17) -> pa.Table:
    """The same table in batches of at most `rows`, so DuckDB scans it with all its threads."""
    return pa.Table.from_batches(table.to_batches(max_chunksize=rows), schema=table.schema)


def _single(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One contiguous array (a chunked `take` would concatenate once per call)."""
    if not isinstance(column, pa.ChunkedArray):
        return column
    if column.num_chunks == 1:
        return column.chunk(0)
    if pa.types.is_dictionary(column.type):  # pieces may carry different dictionaries
        column = column.cast(column.type.value_type)
    return column.combine_chunks()


def _patched(raw: pa.Array, rows: np.ndarray, patch: pa.Array) -> pa.Array:
    """Apply validation's rewrites of a text column: `patch[i]` is for row `rows[i]` (NULL: keep the
    cell, '': store NULL, else: store this text)."""
    if patch.null_count == len(patch):
        return raw
    if pa.types.is_dictionary(raw.type):
        raw = raw.cast(raw.type.value_type)
    given = pc.is_valid(patch)
    mask = np.zeros(len(raw), np.bool_)
    mask[rows[given.to_numpy(zero_copy_only=False)]] = True
    replacements = patch.filter(given).cast(raw.type)
    replacements = pc.if_else(pc.equal(replacements, ""), pa.scalar(None, raw.type), replacements)
    return pc.replace_with_mask(raw, pa.array(mask), replacements)


class Ingestor:
    """Validates, dedupes and stores chunks of one ingest batch; dedupe and writes run in the background."""

    def __init__(
        self,
        log: EventLog,
        quarantine_dir: Path,
        limits: Limits,
        batch_id: str,
        chunk_rows: int = 1_000_000,
        memory_limit: str = "1GB",
        *,
        ledger: IngestLedger,
        write_threads: int = 2,
        writer: ThreadPoolExecutor | None = None,
        inline_store: bool = False,
        index: KeyIndex | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
        plans: dict[PlanKey, ValidationPlan] | None = None,
    ) -> None:
        self.log = log
        self.quarantine_dir = quarantine_dir
        # Its quarantine index says which bad records are in quarantine already (`_new_in_quarantine`).
        self._ledger = ledger
        self._quarantine_indexed = False
        self._quarantined_now: set[str] = set()
        # Hashes of the records this batch wrote to quarantine, added to the index in one transaction by
        # `flush` (a batch that dies first is aborted by the next run, which drops its quarantine).
        self._quarantine_pending: list[str] = []
        self.limits = limits
        self.batch_id = batch_id
        # A long-lived caller (the API) lends its connection and key index; otherwise they are this batch's.
        self._own_con = con is None
        self._con = con if con is not None else new_connection(memory_limit)
        self.index = index if index is not None else KeyIndex(log.events_dir.parent, log)
        self.chunk_rows = chunk_rows
        self._part = 0
        # Plans by input shape; a long-lived caller lends its cache (`plans`), whose plans are moved to
        # this batch's clock (`ValidationPlan.at`) rather than generated again.
        self._plans = plans if plans is not None else {}
        self._sources: list[SourceCounts] = []
        self._buffers: dict[str, _Buffer] = {}
        # Part files are written (and fsynced) by two threads while the next chunk is validated; at most
        # one chunk's writes are in flight, so memory stays bounded.
        # A long-lived caller lends its pool (`writer`), which outlives this batch.
        self._own_writer = writer is None
        self._writer = writer or ThreadPoolExecutor(
            max_workers=write_threads, thread_name_prefix="ingest-write"
        )
        self._in_flight: list[Future[object]] = []
        # Dedupe is sequential (each chunk against every key before it), so it runs on one thread of
        # its own, overlapping the next chunk's read and validation; at most one chunk is in this stage.
        # A single small chunk (`inline_store`: the API) has nothing to overlap: it dedupes in place.
        self._inline_store = inline_store
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-store")
        self._storing: Future[list[Future[object]]] | None = None
        # (record_index, reasons) of every quarantined parsed record, for callers that report them.
        self.rejections: list[tuple[int, str]] = []

    def close(self) -> None:
        """Wait for the writes still in flight and release the DuckDB connection."""
        self._store_thread.shutdown(wait=True)
        if self._own_writer:
            self._writer.shutdown(wait=True)
        else:
            # The lent pool lives on; this batch's writes must still end before the lock is let go.
            wait_all(self._in_flight)
        if self._own_con:
            self._con.close()

    def _wait_for_writes(self) -> None:
        """Wait for the dedupe in progress and every write in flight, including those it started."""
        storing, self._storing = self._storing, None
        pending, self._in_flight = self._in_flight, []
        try:
            if storing is not None:
                pending += storing.result()
        finally:
            for future in pending:
                future.result()

    def _append_events(
        self, event_type: str, columns: dict[str, pa.Array], names: list[str], rows: np.ndarray, part: str
    ) -> Path:
        return self.log.append_events(event_type, _take(columns, names, rows), part)

    def _append_table(
        self, table_kind: str, columns: dict[str, pa.Array], names: list[str], rows: np.ndarray, part: str
    ) -> Path:
        return self.log.append_table(table_kind, _take(columns, names, rows), part)

    def add(self, table_kind: str, chunk: FileChunk, counts: SourceCounts) -> None:
        """Buffer one chunk of one source; small files are pooled so each write stays large."""
        contract = contract_for(table_kind)
        records = _conform(chunk.records, contract)
        n = records.num_rows
        source_index = len(self._sources)
        self._sources.append(counts)
        counts.rows_read += n + len(chunk.broken)
        counts.quarantined += len(chunk.broken)
        buffer = self._buffers.setdefault(table_kind, _Buffer())
        if buffer.tables and buffer.tables[0].schema != records.schema:
            self._flush(table_kind)
            buffer = self._buffers[table_kind] = _Buffer()
        buffer.tables.append(records)
        buffer.segments.append((source_index, chunk.first_record_index, n))
        buffer.rows += n
        buffer.broken += [(source_index, line) for line in chunk.broken]
        # Readers cut chunks of about `chunk_rows`; one that is most of a chunk is not held back for
        # the next, which would only make a larger, more costly one.
        if buffer.rows >= self.chunk_rows // 2:
            self._flush(table_kind)

    def flush(self) -> None:
        """Process everything still buffered, wait until every part file is durable, and index the
        records written to quarantine."""
        for table_kind in list(self._buffers):
            self._flush(table_kind)
        self._wait_for_writes()
        if self._quarantine_pending:
            self._ledger.add_quarantined(self.batch_id, self._quarantine_pending)
            self._quarantine_pending = []

    def _flush(self, table_kind: str) -> None:
        buffer = self._buffers.pop(table_kind, None)
        if buffer is None or (not buffer.rows and not buffer.broken):
            return
        records = pa.concat_tables(buffer.tables) if buffer.tables else None
        self._part += 1
        part_name = f"{self.batch_id}-{self._part:05d}"
        rejected = None
        store = None
        if records is not None:
            rejected, store = self._store(table_kind, records, buffer.segments, part_name)
        quarantine = self._quarantine_table(table_kind, rejected, buffer.broken)
        # Let the previous chunk's dedupe and writes finish (they overlapped this chunk's validation),
        # then hand this chunk over: its dedupe runs on the store thread, its writes on the write threads.
        self._wait_for_writes()
        if quarantine is not None:
            path = self.quarantine_dir / f"batch={self.batch_id}" / f"part-{part_name}.parquet"
            self._in_flight.append(self._writer.submit(write_parquet_atomic, quarantine, path))
        if store is not None and self._inline_store:
            self._in_flight += store()
        elif store is not None:
            self._storing = self._store_thread.submit(store)

    def _plan(self, table_kind: str, records: pa.Table) -> ValidationPlan:
        contract = contract_for(table_kind)
        clean = clean_text_columns(records, contract)
        matching = matching_id_columns(records, contract)
        limits = replace(self.limits, now=_EPOCH)  # any clock: see `ValidationPlan.at`
        key = (table_kind, records.schema, clean, matching, limits)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:  # clients sending ever new shapes: start over
                self._plans.clear()
            plan = self._plans[key] = validation_plan(
                table_kind, records.schema, self.limits, clean, matching
            )
        return plan.at(self.limits)

    def _query(self, sql: str, records: pa.Table, seq: np.ndarray) -> pa.Table:
        """Run a validation query over `records` (as relation `chunk_in`, with `seq` as `_seq`); the
        result comes back in the order of `seq`."""
        self._con.register("chunk_in", _rebatched(records.append_column("_seq", pa.array(seq))))
        try:
            result = _fetch(self._con, sql, small=records.num_rows <= _SMALL_QUERY_ROWS)
        finally:
            self._con.unregister("chunk_in")
        returned = result.column("_seq").to_numpy()
        if not np.array_equal(returned, seq):
            result = result.take(pa.array(np.argsort(returned)))
        return result

    def _store(
        self, table_kind: str, records: pa.Table, segments: list[tuple[int, int, int]], part_name: str
    ) -> tuple[_Rejected, Callable[[], list[Future[object]]]]:
        """Validate pooled records; return the rejected ones and the step that dedupes the rest and
        starts their writes (it runs on the store thread, see `_flush`)."""
        contract = contract_for(table_kind)
        n = records.num_rows
        plan = self._plan(table_kind, records)
        seq = np.arange(n, dtype=np.int64)
        if n <= FAST_CHECK_ROWS:
            checked = plan.fast_check(records, self._query(plan.light_sql("chunk_in"), records, seq))
            bad = checked.column("_bad").to_numpy(zero_copy_only=False)
        else:
            checked = self._query(plan.sql("chunk_in"), records, seq)
            bad = checked.column("_bad").to_numpy(zero_copy_only=False)
        fix = checked.column("_fix").to_numpy(zero_copy_only=False)
        # The few records that are bad or need a text cell blanked or trimmed get a second, detailed look.
        flagged = np.flatnonzero(bad | fix)
        # Nothing flagged (the usual small API call or clean chunk): the detail query is not run at all.
        details = (
            self._query(plan.detail_sql("chunk_in"), records.take(pa.array(flagged)), flagged)
            if flagged.size
            else None
        )
        # Where each pooled row came from: its source and its record index in that source.
        source_of = np.repeat(
            np.array([s for s, _, _ in segments], np.int64), [rows for _, _, rows in segments]
        )
        bad_rows = np.flatnonzero(bad)
        bad_details = pa.array(np.searchsorted(flagged, bad_rows))
        empty = pa.chunked_array([], pa.string())
        rejected = _Rejected(
            source_of[bad_rows],
            _record_indexes(segments, bad_rows),
            empty if details is None else details.column("_reasons").take(bad_details),
            empty if details is None else details.column("_raw").take(bad_details),
        )
        # The stored value of every contract column (see ValidationPlan): as read, patched or typed.
        columns: dict[str, pa.Array] = {}
        for name, output in plan.outputs.items():
            if output == PASSTHROUGH:
                columns[name] = _single(records.column(name))
            elif output == COMPUTED:
                columns[name] = _single(checked.column(PARSED_PREFIX + name))
            elif details is None:
                columns[name] = _single(records.column(name))
            else:
                columns[name] = _patched(
                    _single(records.column(name)), flagged, _single(details.column(PATCH_PREFIX + name))
                )
        valid_rows = np.flatnonzero(~bad)
        hashes = checked.column("_h").to_numpy()[valid_rows]
        codes = checked.column("_t").fill_null(0).to_numpy() if table_kind == EVENTS else None
        source_of_valid = source_of[valid_rows]
        rejected_n = np.bincount(rejected.sources, minlength=len(self._sources))
        for index in np.flatnonzero(rejected_n).tolist():
            self._sources[index].quarantined += int(rejected_n[index])
        key_set = self.index.keys(table_kind)
        key_column = columns[plan.key]
        sources = list(self._sources)

        def store() -> list[Future[object]]:
            """Dedupe against every earlier key (in chunk order: one chunk at a time on one thread),
            count, and hand the writes of the fresh rows to the write threads."""
            repeated, kept = key_set.dedupe_sorted(hashes, valid_rows, key_column)
            fresh_rows = valid_rows[~repeated]
            valid_n = np.bincount(source_of_valid, minlength=len(sources))
            accepted_n = np.bincount(source_of_valid[~repeated], minlength=len(sources))
            for index in np.flatnonzero(valid_n).tolist():
                counts = sources[index]
                counts.accepted += int(accepted_n[index])
                counts.duplicates += int(valid_n[index] - accepted_n[index])
            writes: list[Callable[[], object]] = []
            parts: list[Path] = []
            if codes is not None:
                # One stable sort by type code; each type's rows are gathered by its own write thread.
                fresh_codes = codes[fresh_rows].astype(np.intp)
                by_type = fresh_rows[np.argsort(fresh_codes, kind="stable")]
                per_type = np.bincount(fresh_codes, minlength=len(EVENT_TYPES))
                bounds = np.concatenate([[0], np.cumsum(per_type)])
                for i, etype in enumerate(EVENT_TYPES):
                    if bounds[i + 1] > bounds[i]:
                        names = EVENT_CONTRACTS[etype].names
                        rows = by_type[bounds[i] : bounds[i + 1]]
                        path = self.log.event_part_path(etype, part_name)
                        if self._inline_store:
                            # A small call's parts are encoded here, one after the other, and only
                            # written and fsynced side by side: a dozen threads each encoding a few
                            # rows would mostly wait for one another's turn at the interpreter.
                            data = self.log.encode_events(etype, _take(columns, names, rows))
                            writes.append(partial(self.log.write_part, data, path))
                        else:
                            append = partial(self._append_events, etype, columns, names, rows, part_name)
                            writes.append(append)
                        parts.append(path)
            elif fresh_rows.size:
                names = contract.names
                writes.append(partial(self._append_table, table_kind, columns, names, fresh_rows, part_name))
                parts.append(self.log.table_part_path(table_kind, part_name))
            if parts:
                # The fresh keys' index segment is written beside their parts (see `key_index` for
                # why that order is safe): hashes already sorted by dedupe, texts taken in that order.
                segment_keys = key_column.take(pa.array(valid_rows[kept]))
                writes.append(
                    partial(self.index.add_segment, table_kind, part_name, parts, hashes[kept], segment_keys)
                )
            return [self._writer.submit(write) for write in writes]

        return rejected, store

    def _quarantine_table(
        self,
        table_kind: str,
        rejected: _Rejected | None,
        broken: list[tuple[int, BrokenLine]],
    ) -> pa.Table | None:
        """The quarantine rows of one flush, less the records already in quarantine (counted per
        source as `quarantined_before`); their hashes join the ledger's quarantine index at `flush`."""
        bad = 0 if rejected is None else len(rejected.sources)
        record_indexes: list[int | None] = []
        reasons: list[str] = []
        raws: list[str] = []
        source_indexes: list[int] = []
        if rejected is not None and bad:
            record_indexes += rejected.record_indexes.tolist()
            reasons += rejected.reasons.to_pylist()
            raws += rejected.raw.cast(pa.string()).to_pylist()
            source_indexes += rejected.sources.tolist()
            self.rejections += zip(rejected.record_indexes.tolist(), reasons, strict=True)
        record_indexes += [None] * len(broken)
        line_numbers = [None] * bad + [b.line_number for _, b in broken]
        reasons += [b.reason for _, b in broken]
        raws += [b.text for _, b in broken]
        source_indexes += [i for i, _ in broken]
        if not raws:
            return None
        hashes = [quarantine_record_hash(table_kind, raw) for raw in raws]
        keep = self._new_in_quarantine(hashes)
        for row in np.flatnonzero(~keep).tolist():
            self._sources[source_indexes[row]].quarantined_before += 1
        if not keep.any():
            return None
        rows = np.flatnonzero(keep).tolist()
        self._quarantine_pending += [hashes[i] for i in rows]
        return pa.table(
            {
                "batch_id": pa.array([self.batch_id] * len(rows), pa.string()),
                "source": pa.array([self._sources[source_indexes[i]].source for i in rows], pa.string()),
                "table_kind": pa.array([table_kind] * len(rows), pa.string()),
                "record_index": pa.array([record_indexes[i] for i in rows], pa.int64()),
                "line_number": pa.array([line_numbers[i] for i in rows], pa.int64()),
                "reasons": pa.array([reasons[i] for i in rows], pa.string()),
                "raw": pa.array([raws[i] for i in rows], pa.string()),
                "record_hash": pa.array([hashes[i] for i in rows], pa.string()),
            },
            schema=QUARANTINE_SCHEMA,
        )

    def _new_in_quarantine(self, hashes: list[str]) -> np.ndarray:
        """For each record hash, True unless that record is in quarantine already (from an earlier
        batch, or earlier in this one) or repeats an earlier hash of the list."""
        if not self._quarantine_indexed:
            index_quarantine(self.quarantine_dir, self._ledger)
            self._quarantine_indexed = True
        known = self._ledger.quarantined_already(set(hashes) - self._quarantined_now)
        keep = np.zeros(len(hashes), np.bool_)
        for i, digest in enumerate(hashes):
            if digest not in known and digest not in self._quarantined_now:
                keep[i] = True
                self._quarantined_now.add(digest)
        return keep


def _fail(counts: SourceCounts, reason: str) -> None:
    """Mark a file failed; if records were read before the failure, say what became of them."""
    counts.reason = reason
    if counts.rows_read:
        counts.reason += (
            f" (after {counts.rows_read:,} records, which were stored or quarantined as usual: "
            "the fixed file's re-run counts them as duplicates)"
        )


def quarantine_record_hash(table_kind: str, raw: str) -> str:
    """Identity of a quarantined record: its table kind and content (a parsed record's values as JSON in
    contract column order, or an unparsable line's text), with line endings normalised. So a re-export
    with CRLF line endings or its columns in another order hashes the same."""
    text = raw.replace("\\r\\n", "\\n").replace("\r\n", "\n").rstrip("\r\n")
    payload = f"{table_kind}\x1f{text}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def index_quarantine(quarantine_dir: Path, ledger: IngestLedger) -> int:
    """Add to the ledger's quarantine index the records of every quarantine batch folder it does not
    know yet (written before the index existed); returns how many batches were added."""
    known = ledger.quarantine_batches()
    missing = sorted(
        folder
        for folder in quarantine_dir.glob("batch=*")
        if folder.is_dir() and folder.name.removeprefix("batch=") not in known
    )
    for folder in missing:
        hashes: list[str] = []
        for part in sorted(folder.glob("part-*.parquet")):
            table = pq.read_table(part)
            if "record_hash" in table.column_names:
                hashes += table.column("record_hash").to_pylist()
            else:
                kinds = table.column("table_kind").to_pylist()
                raws = table.column("raw").to_pylist()
                hashes += [quarantine_record_hash(k, r) for k, r in zip(kinds, raws, strict=True)]
        ledger.add_quarantined(folder.name.removeprefix("batch="), hashes)
    return len(missing)


@dataclass
class _Rejected:
    """The rows of one chunk that broke a rule: their source index, record index, reasons and JSON."""

    sources: np.ndarray
    record_indexes: np.ndarray
    reasons: pa.ChunkedArray
    raw: pa.ChunkedArray


@dataclass
class _Buffer:
    """Records pooled from several small sources until there are enough for one write."""

    tables: list[pa.Table] = field(default_factory=list)
    # (source index, index of the first record in its source, rows), one per pooled table.
    segments: list[tuple[int, int, int]] = field(default_factory=list)
    rows: int = 0
    # (source index, line), one per line that could not be parsed.
    broken: list[tuple[int, BrokenLine]] = field(default_factory=list)


def _record_indexes(segments: list[tuple[int, int, int]], rows: np.ndarray) -> np.ndarray:
    """The record index, within its own source, of each pooled row."""
    sizes = np.array([n for _, _, n in segments], np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    firsts = np.array([first for _, first, _ in segments], np.int64)
    segment = np.searchsorted(starts, rows, side="right") - 1
    indexes: np.ndarray = firsts[segment] + rows - starts[segment]
    return indexes


def _conform(records: pa.Table, contract: TableContract) -> pa.Table:
    """Exactly the contract's columns, in order; a column a feed leaves out becomes typed NULLs."""
    n = records.num_rows
    columns = [
        records.column(spec.name) if spec.name in records.column_names else pa.nulls(n, spec.type)
        for spec in contract.fields
    ]
    return pa.table(columns, names=contract.names)


def _estimated_rows(path: Path) -> int:
    """Rough row count, only for the progress bar: from the file size and, for text, the average line
    length of its first MiB. Nothing here may fail, nor parse a file before it is validated."""
    try:
        size = path.stat().st_size
        if path.suffix.lower() not in TEXT_SUFFIXES:
            return size // 40  # binary formats: about 40 bytes a row, compressed
        with path.open("rb") as handle:
            sample = handle.read(1 << 20)
    except OSError:
        return 0
    if not sample:
        return 0
    return max(1, size * max(sample.count(b"\n"), 1) // len(sample))


def ingest_paths(
    paths: list[Path],
    log: EventLog,
    ledger: IngestLedger,
    quarantine_dir: Path,
    limits: Limits,
    chunk_rows: int = 1_000_000,
    origin: str = "cli",
    progress: ProgressCallback | None = None,
    *,
    encoding: str | None = None,
    sheet: str | None = None,
) -> IngestReport:
    """Ingest every data file under `paths` as one batch and record it in the ledger, file by file.

    A file that cannot be read is reported `failed` with its reason and never stops the others;
    `encoding` and `sheet` are handed to the readers (text encoding; the sheet of a workbook).
    """
    started = time.perf_counter()
    batch_id = _new_batch_id()
    report = IngestReport(batch_id=batch_id)
    files, report.unrecognised = discover(paths, encoding=encoding, sheet=sheet)
    with _writer_lock(log.events_dir.parent):
        report.recovered_batches = recover_crashed(log, ledger, quarantine_dir)
        ledger.start_batch(batch_id, origin)
        ingestor = Ingestor(log, quarantine_dir, limits, batch_id, chunk_rows, ledger=ledger)
        estimates = [_estimated_rows(f.path) for f in files]
        total_estimate, done_estimate = sum(estimates), 0
        # The next file's SHA-256 is computed on a background thread while this one is ingested.
        hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-sha256")
        checksums = [hasher.submit(file_sha256, f.path) for f in files[:1]]
        try:
            for index, (feed, estimate) in enumerate(zip(files, estimates, strict=True)):
                if index + 1 < len(files):
                    checksums.append(hasher.submit(file_sha256, files[index + 1].path))
                counts = SourceCounts(str(feed.path), "", feed.kind)
                report.sources.append(counts)
                on_chunk = partial(_progress_within, progress, done_estimate, estimate, total_estimate)
                _ingest_file(
                    ingestor,
                    ledger,
                    feed,
                    counts,
                    checksums[index],
                    chunk_rows,
                    on_chunk,
                    encoding=encoding,
                    sheet=sheet,
                )
                done_estimate += estimate
                if progress is not None:
                    progress(done_estimate, total_estimate)
            ingestor.flush()
            ingestor.index.compact()
        finally:
            hasher.shutdown(wait=True, cancel_futures=True)
            ingestor.close()
        ledger.finish_batch(batch_id, [s.record() for s in report.sources])
    report.seconds = time.perf_counter() - started
    return report


def _ingest_file(
    ingestor: Ingestor,
    ledger: IngestLedger,
    feed: FeedFile,
    counts: SourceCounts,
    checksum: Future[str],
    chunk_rows: int,
    on_chunk: Callable[[int], None],
    *,
    encoding: str | None,
    sheet: str | None,
) -> None:
    """One file of a batch: failed if it cannot be hashed or its kind told, skipped if these exact bytes
    were stored before (its rows count as duplicates), else read."""
    try:
        counts.checksum = checksum.result() + _read_options(feed.path, encoding, sheet)
    except OSError as exc:
        counts.reason = _failure(feed.path, exc)
        return
    if feed.problem is not None:
        counts.reason = feed.problem
        return
    previous = ledger.completed_source(counts.checksum, feed.kind)
    if previous is not None:
        counts.rows_read = previous.rows_read
        counts.duplicates = previous.accepted + previous.duplicates
        counts.quarantined = counts.quarantined_before = previous.quarantined
        counts.skipped_as_already_ingested = True
        return
    _read_file(ingestor, feed, counts, chunk_rows, on_chunk, encoding=encoding, sheet=sheet)


def _read_options(path: Path, encoding: str | None, sheet: str | None) -> str:
    """The options a file is read with, as a suffix of its checksum: the same bytes read another way
    (another declared encoding, another sheet) are another source, not one ingested already."""
    suffix = path.suffix.lower()
    if encoding is not None and suffix in TEXT_SUFFIXES:
        return f";encoding={encoding}"
    if sheet is not None and suffix not in TEXT_SUFFIXES and suffix != ".parquet":
        return f";sheet={sheet}"
    return ""


def _read_file(
    ingestor: Ingestor,
    feed: FeedFile,
    counts: SourceCounts,
    chunk_rows: int,
    on_chunk: Callable[[int], None],
    *,
    encoding: str | None,
    sheet: str | None,
) -> None:
    """Hand every chunk of one file to the ingestor. Whatever a reader raises fails this file only
    (`counts.reason`); an error of the ingestor itself (say, a full disk) is not the file's and
    propagates."""
    chunks = iter_chunks(feed.path, chunk_rows, encoding=encoding, sheet=sheet)
    try:
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except Exception as exc:  # the reader's failure, whatever its type: this file's problem
                _fail(counts, _failure(feed.path, exc))
                return
            if feed.kind == UNKNOWN_KIND:
                if chunk.records.num_rows or chunk.broken:
                    _fail(
                        counts,
                        f"{feed.path.name}: no column names found, so its table cannot be told; put it "
                        "in a folder named for its table (events/, applications/, ...)",
                    )
                    return
                continue
            unsupported = unsupported_columns(chunk.records.schema, contract_for(feed.kind))
            if unsupported:
                _fail(
                    counts,
                    f"{feed.path.name}: columns of a type no contract accepts: {', '.join(unsupported)}",
                )
                return
            ingestor.add(feed.kind, chunk, counts)
            on_chunk(counts.rows_read)
    finally:
        if isinstance(chunks, Generator):
            chunks.close()


def _progress_within(
    progress: ProgressCallback | None, done: int, estimate: int, total: int, rows_read: int
) -> None:
    """Progress part-way through a file: the files before it, and its rows read so far."""
    if progress is not None:
        progress(done + min(rows_read, estimate), total)


def new_connection(memory_limit: str = "1GB") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection set up for validation (two threads, UTC)."""
    con = duckdb.connect(config={"memory_limit": memory_limit, "threads": 2})
    con.execute("SET TimeZone = 'UTC'")
    return con


def ingest_records(
    rows: list[dict[str, object]],
    source: str,
    log: EventLog,
    ledger: IngestLedger,
    quarantine_dir: Path,
    limits: Limits,
    origin: str = "api",
    *,
    index: KeyIndex | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    writer: ThreadPoolExecutor | None = None,
    plans: dict[PlanKey, ValidationPlan] | None = None,
) -> tuple[IngestReport, list[tuple[int, str]]]:
    """Ingest events pushed as records (the API's path) with the same validation, dedupe and ledger.

    `index`, `con`, `writer` (the pool that writes the parts) and `plans` (validation plans by input
    shape) are a long-lived caller's (see `RecordIngest`): the index is refreshed with what other
    writers added, not loaded again. Returns
    the report and, per quarantined row, its index in `rows` and its reasons.
    """
    started = time.perf_counter()
    batch_id = _new_batch_id()
    report = IngestReport(batch_id=batch_id)
    # Every field any row has, in first-seen order, as text (a row without it: NULL). Text and missing
    # cells, nearly all of them, skip the call that converts other JSON values.
    names = dict.fromkeys(name for row in rows for name in row)
    records = pa.table(
        {
            name: pa.array(
                [v if v is None or type(v) is str else json_scalar(v) for v in (r.get(name) for r in rows)],
                pa.string(),
            )
            for name in names
        }
    )
    canonical = json.dumps(rows, sort_keys=True, ensure_ascii=False, default=str).encode()
    counts = SourceCounts(source, hashlib.sha256(canonical).hexdigest(), EVENTS)
    report.sources.append(counts)
    with _writer_lock(log.events_dir.parent):
        report.recovered_batches = recover_crashed(log, ledger, quarantine_dir, clean_always=index is None)
        if index is not None:
            if report.recovered_batches:
                index.forget()  # a writer died: check every segment against the parts again
            else:
                index.refresh()
        ledger.start_batch(batch_id, origin)
        # The parts of one small call (one per event type) and its index segment are written and
        # fsynced side by side, so the call waits for about one fsync, not one per file.
        ingestor = Ingestor(
            log,
            quarantine_dir,
            limits,
            batch_id,
            max(len(rows), 1),
            ledger=ledger,
            index=index,
            con=con,
            write_threads=len(EVENT_TYPES) + 1,
            writer=writer,
            inline_store=True,
            plans=plans,
        )
        try:
            ingestor.add(EVENTS, FileChunk(records, [], 0), counts)
            ingestor.flush()
            ingestor.index.compact()
        finally:
            ingestor.close()
        ledger.finish_batch(batch_id, [counts.record()])
    report.seconds = time.perf_counter() - started
    return report, sorted(ingestor.rejections)


class RecordIngest:
    """The API's ingest path kept warm across requests: one DuckDB connection, the ledger, and the key
    index loaded once (then refreshed under the writer lock with the segments other writers added).

    Requests are taken one at a time (they would wait for the writer lock anyway). If one fails part-way,
    the keys it put in memory may not all be stored, so the index is dropped and opened from disk again.
    """

    def __init__(self, log: EventLog, ledger: IngestLedger, quarantine_dir: Path) -> None:
        self.log = log
        self.ledger = ledger
        self.quarantine_dir = quarantine_dir
        self.index = KeyIndex(log.events_dir.parent, log)
        self._con = new_connection()
        # One thread per event type and one for the index segment: a call's files are fsynced together.
        self._writer = ThreadPoolExecutor(max_workers=len(EVENT_TYPES) + 1, thread_name_prefix="events-write")
        self._lock = threading.Lock()
        # Validation plans by input shape, kept across requests (see `ValidationPlan.at`).
        self._plans: dict[PlanKey, ValidationPlan] = {}

    def warm(self) -> None:
        """Load the events key index now (at server start) rather than in the first request."""
        with self._lock, _writer_lock(self.log.events_dir.parent):
            self.index.keys(EVENTS)

    def ingest(
        self, rows: list[dict[str, object]], source: str, limits: Limits, origin: str = "api"
    ) -> tuple[IngestReport, list[tuple[int, str]]]:
        """`ingest_records` with this process's connection and index."""
        with self._lock:
            try:
                return ingest_records(
                    rows,
                    source,
                    self.log,
                    self.ledger,
                    self.quarantine_dir,
                    limits,
                    origin,
                    index=self.index,
                    con=self._con,
                    writer=self._writer,
                    plans=self._plans,
                )
            except BaseException:
                self.index.forget()
                raise

    def close(self) -> None:
        """Release the connection and the ledger (after the request in progress, if any)."""
        with self._lock:
            self._writer.shutdown(wait=True)
            self._con.close()
            self.ledger.close()


def recover_crashed(
    log: EventLog, ledger: IngestLedger, quarantine_dir: Path, *, clean_always: bool = True
) -> list[str]:
    """Clean up after ingests that died: drop temp files and their quarantine, mark them aborted.

    Their committed event part files stay: every row in them is valid and deduplicated, and the
    re-run counts them as duplicates (their keys missing from the key index are read back from them
    when it opens). Their quarantine is dropped because the re-run writes it again. Temp files are only
    written inside a started batch, so `clean_always=False` (the API's per-request call) skips the
    walk over the log when no batch died.
    """
    crashed = ledger.crashed_batches()
    if clean_always or crashed:
        log.clean_temp_files()
    for batch_id in crashed:
        folder = quarantine_dir / f"batch={batch_id}"
        if folder.exists():
            for part in folder.glob("*"):
                part.unlink()
            folder.rmdir()
        ledger.abort_batch(batch_id)
    return crashed


def _take(columns: dict[str, pa.Array], names: list[str], rows: np.ndarray) -> pa.Table:
    """The `rows` of `columns`, as a table of `names` (one event type's or table kind's part)."""
    indices = pa.array(rows)
    return pa.table([columns[c].take(indices) for c in names], names=names)
