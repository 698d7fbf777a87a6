"""Ingestion: stream feed files through vectorized validation and dedupe into the Parquet event log.

Guarantees: every rejected row lands in quarantine with its reasons; every valid row is stored exactly
once (dedupe by `event_id` for events and by key for reference tables, against the whole log); a file
whose exact bytes were ingested before is skipped and reported as duplicates; a process killed at any
point leaves only whole part files behind, and re-running the same ingest completes it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.contracts import EVENT_TYPES, REFERENCE_CONTRACTS
from features.event_log import EventLog, write_parquet_atomic
from features.ledger import IngestLedger, SourceRecord, file_sha256
from features.readers import DATA_SUFFIXES, BrokenLine, FileChunk, iter_chunks, json_scalar, read_header
from features.validation import (
    EVENTS,
    PARSED_PREFIX,
    Limits,
    contract_for,
    raw_json_sql,
    reasons_sql,
    validation_sql,
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

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("table_kind", pa.string(), nullable=False),
        pa.field("record_index", pa.int64()),
        pa.field("line_number", pa.int64()),
        pa.field("reasons", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),
    ]
)

ProgressCallback = Callable[[int, int], None]


@dataclass
class SourceCounts:
    """Running counts for one source file within a batch."""

    source: str
    checksum: str
    table_kind: str
    rows_read: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    skipped_as_already_ingested: bool = False

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
        )


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
        keys = ("rows_read", "accepted", "duplicates", "quarantined")
        return {k: sum(int(getattr(s, k)) for s in self.sources) for k in keys}

    def by_table(self) -> dict[str, dict[str, int]]:
        """Summed counts per table kind."""
        out: dict[str, dict[str, int]] = {}
        for s in self.sources:
            row = out.setdefault(
                s.table_kind,
                {"files": 0, "rows_read": 0, "accepted": 0, "duplicates": 0, "quarantined": 0},
            )
            row["files"] += 1
            for k in ("rows_read", "accepted", "duplicates", "quarantined"):
                row[k] += int(getattr(s, k))
        return out

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            "batch_id": self.batch_id,
            "seconds": round(self.seconds, 3),
            "totals": self.totals(),
            "by_table": self.by_table(),
            "sources": [asdict(s) for s in self.sources],
            "unrecognised": self.unrecognised,
            "recovered_batches": self.recovered_batches,
        }


def discover(paths: list[Path]) -> tuple[list[tuple[Path, str]], list[str]]:
    """Data files under `paths` with their table kind (by folder name, else by columns)."""
    found: list[tuple[Path, str]] = []
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
            kind = _kind_from_folders(path) or _kind_from_columns(read_header(path))
            if kind is None:
                unrecognised.append(f"{path}: columns match no table")
            else:
                found.append((path, kind))
    return found, unrecognised


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


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> pa.Table:
    """Run a query and return its whole result as one Arrow table."""
    table: pa.Table = con.sql(sql, params=params).to_arrow_table()
    return table


@contextmanager
def _writer_lock(data_dir: Path) -> Iterator[None]:
    """One writer at a time per data dir: dedupe is only exact if nobody appends meanwhile."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / ".ingest.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Ingestor:
    """Holds the dedupe state of one ingest batch over an event log, in an in-process DuckDB."""

    def __init__(
        self,
        log: EventLog,
        quarantine_dir: Path,
        limits: Limits,
        batch_id: str,
        chunk_rows: int = 1_000_000,
        memory_limit: str = "2GB",
    ) -> None:
        self.log = log
        self.quarantine_dir = quarantine_dir
        self.limits = limits
        self.batch_id = batch_id
        self._con = duckdb.connect(config={"memory_limit": memory_limit, "threads": 2})
        self._con.execute("SET TimeZone = 'UTC'")
        self.chunk_rows = chunk_rows
        self._part = 0
        self._loaded_keys: set[str] = set()
        self._sources: list[SourceCounts] = []
        self._buffers: dict[str, _Buffer] = {}
        # (record_index, reasons) of every quarantined parsed record, for callers that report them.
        self.rejections: list[tuple[int, str]] = []

    def close(self) -> None:
        """Release the DuckDB connection."""
        self._con.close()

    def _seen_table(self, table_kind: str) -> str:
        """Temp table of every key already stored for this table kind, loaded once per batch."""
        name = f"seen_{table_kind}"
        if table_kind in self._loaded_keys:
            return name
        key = contract_for(table_kind).key[0]
        files = self.log.event_files() if table_kind == EVENTS else self.log.table_files(table_kind)
        if files:
            listing = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
            self._con.execute(f"CREATE TEMP TABLE {name} AS SELECT {key} AS k FROM read_parquet([{listing}])")
        else:
            self._con.execute(f"CREATE TEMP TABLE {name} (k VARCHAR)")
        self._loaded_keys.add(table_kind)
        return name

    def add(self, table_kind: str, chunk: FileChunk, counts: SourceCounts) -> None:
        """Buffer one chunk of one source; small files are pooled so each write stays large."""
        contract = contract_for(table_kind)
        records = _conform(chunk.records, contract.names)
        n = records.num_rows
        source_index = len(self._sources)
        self._sources.append(counts)
        records = records.append_column("_source", pa.repeat(pa.scalar(source_index, pa.int32()), n))
        records = records.append_column(
            "_row", pa.array(range(chunk.first_record_index, chunk.first_record_index + n), pa.int64())
        )
        counts.rows_read += n + len(chunk.broken)
        counts.quarantined += len(chunk.broken)
        buffer = self._buffers.setdefault(table_kind, _Buffer())
        if buffer.tables and buffer.tables[0].schema != records.schema:
            self._flush(table_kind)
            buffer = self._buffers[table_kind]
        buffer.tables.append(records)
        buffer.rows += n
        buffer.broken += [(counts.source, line) for line in chunk.broken]
        if buffer.rows >= self.chunk_rows:
            self._flush(table_kind)

    def flush(self) -> None:
        """Process everything still buffered."""
        for table_kind in list(self._buffers):
            self._flush(table_kind)

    def _flush(self, table_kind: str) -> None:
        buffer = self._buffers.pop(table_kind, None)
        if buffer is None or (not buffer.rows and not buffer.broken):
            return
        records = pa.concat_tables(buffer.tables) if buffer.tables else None
        self._part += 1
        part_name = f"{self.batch_id}-{self._part:05d}"
        rejected = self._store(table_kind, records, part_name) if records is not None else None
        self._quarantine(table_kind, rejected, buffer.broken, part_name)

    def _store(self, table_kind: str, records: pa.Table, part_name: str) -> pa.Table:
        """Validate, dedupe and append pooled records; return the rejected ones with reasons."""
        con = self._con
        contract = contract_for(table_kind)
        key = contract.key[0]
        seen = self._seen_table(table_kind)
        records = records.append_column("_seq", pa.array(range(records.num_rows), pa.int64()))
        con.register("chunk_in", records)
        try:
            checked = _fetch(con, validation_sql(table_kind, records.schema, self.limits, "chunk_in"))
            bad_mask = checked.column("_bad")
            bad = checked.filter(bad_mask)
            con.register("bad_rows", bad)
            reasons = reasons_sql(table_kind, records.schema, self.limits)
            rejected = _fetch(
                con,
                f"SELECT c._source, c._row AS record_index, {reasons} AS reasons, "
                f"{raw_json_sql(records.schema)} AS raw "
                "FROM bad_rows c JOIN chunk_in USING (_seq) ORDER BY _seq",
            )
        finally:
            con.unregister("chunk_in")
            con.unregister("bad_rows")
        valid = checked.filter(pc.invert(bad_mask))
        # Repeats are rare: find the few rows to drop (a later repeat of a key within the pool, or a
        # key already stored) instead of sorting or windowing every row.
        con.register("valid_keys", valid.select([PARSED_PREFIX + key, "_seq"]).rename_columns(["k", "_seq"]))
        try:
            dropped = _fetch(
                con,
                f"""WITH repeated AS (
                        SELECT k, min(_seq) AS first FROM valid_keys GROUP BY k HAVING count(*) > 1)
                    SELECT v._seq FROM valid_keys v JOIN repeated r ON v.k = r.k WHERE v._seq > r.first
                    UNION
                    SELECT v._seq FROM valid_keys v JOIN {seen} s ON s.k = v.k""",
            ).column("_seq")
        finally:
            con.unregister("valid_keys")
        if len(dropped):
            valid = valid.filter(
                pc.invert(pc.is_in(valid.column("_seq"), value_set=dropped.combine_chunks()))
            )
        fresh = valid.select([PARSED_PREFIX + n for n in contract.names] + ["_source"]).rename_columns(
            [*contract.names, "_source"]
        )
        counts_by_source = _count_by(records.column("_source"))
        rejected_by_source = _count_by(rejected.column("_source"))
        accepted_by_source = _count_by(fresh.column("_source"))
        for index, total in counts_by_source.items():
            counts = self._sources[index]
            valid = total - rejected_by_source.get(index, 0)
            accepted = accepted_by_source.get(index, 0)
            counts.accepted += accepted
            counts.duplicates += valid - accepted
            counts.quarantined += rejected_by_source.get(index, 0)
        fresh = fresh.drop_columns(["_source"])
        if table_kind == EVENTS:
            # One stable sort by type code, then zero-copy slices: cheaper than a filter per type.
            codes = pc.index_in(fresh.column("event_type"), value_set=pa.array(EVENT_TYPES)).to_numpy(
                zero_copy_only=False
            )
            order = np.argsort(codes, kind="stable")
            grouped = fresh.take(pa.array(order))
            bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(EVENT_TYPES)))])
            for i, etype in enumerate(EVENT_TYPES):
                if bounds[i + 1] > bounds[i]:
                    self.log.append_events(
                        etype, grouped.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])), part_name
                    )
        elif fresh.num_rows:
            self.log.append_table(table_kind, fresh, part_name)
        con.register("fresh_keys", fresh.select([key]))
        try:
            con.execute(f"INSERT INTO {seen} SELECT {key} FROM fresh_keys")
        finally:
            con.unregister("fresh_keys")
        return rejected

    def _quarantine(
        self,
        table_kind: str,
        rejected: pa.Table | None,
        broken: list[tuple[str, BrokenLine]],
        part_name: str,
    ) -> None:
        bad = 0 if rejected is None else rejected.num_rows
        total = bad + len(broken)
        if rejected is not None and bad:
            self.rejections += zip(
                rejected.column("record_index").to_pylist(),
                rejected.column("reasons").to_pylist(),
                strict=True,
            )
        if not total:
            return
        sources = (
            []
            if rejected is None
            else [self._sources[i].source for i in rejected.column("_source").to_pylist()]
        )
        table = pa.table(
            {
                "batch_id": pa.array([self.batch_id] * total, pa.string()),
                "source": pa.array(sources + [source for source, _ in broken], pa.string()),
                "table_kind": pa.array([table_kind] * total, pa.string()),
                "record_index": pa.array(
                    ([] if rejected is None else rejected.column("record_index").to_pylist())
                    + [None] * len(broken),
                    pa.int64(),
                ),
                "line_number": pa.array([None] * bad + [b.line_number for _, b in broken], pa.int64()),
                "reasons": pa.array(
                    ([] if rejected is None else rejected.column("reasons").to_pylist())
                    + [b.reason for _, b in broken],
                    pa.string(),
                ),
                "raw": pa.array(
                    ([] if rejected is None else rejected.column("raw").cast(pa.string()).to_pylist())
                    + [b.text for _, b in broken],
                    pa.string(),
                ),
            },
            schema=QUARANTINE_SCHEMA,
        )
        write_parquet_atomic(
            table, self.quarantine_dir / f"batch={self.batch_id}" / f"part-{part_name}.parquet"
        )


@dataclass
class _Buffer:
    """Records pooled from several small sources until there are enough for one write."""

    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    broken: list[tuple[str, BrokenLine]] = field(default_factory=list)


def _conform(records: pa.Table, names: list[str]) -> pa.Table:
    """Exactly the contract's columns, in order; a column a feed leaves out becomes NULL text."""
    n = records.num_rows
    columns = [
        records.column(name) if name in records.column_names else pa.nulls(n, pa.string()) for name in names
    ]
    return pa.table(columns, names=names)


def _count_by(indexes: pa.ChunkedArray) -> dict[int, int]:
    """How many rows carry each source index."""
    counted = pc.value_counts(indexes)
    return {
        int(v): int(c)
        for v, c in zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True)
    }


def _estimated_rows(path: Path) -> int:
    """Rough row count for progress: exact for Parquet, from the average line length otherwise."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    size = path.stat().st_size
    with path.open("rb") as handle:
        sample = handle.read(1 << 20)
    lines = max(sample.count(b"\n"), 1)
    return max(1, int(size / (len(sample) / lines)))


def ingest_paths(
    paths: list[Path],
    log: EventLog,
    ledger: IngestLedger,
    quarantine_dir: Path,
    limits: Limits,
    chunk_rows: int = 1_000_000,
    origin: str = "cli",
    progress: ProgressCallback | None = None,
) -> IngestReport:
    """Ingest every data file under `paths` as one batch and record it in the ledger."""
    started = time.perf_counter()
    batch_id = _new_batch_id()
    report = IngestReport(batch_id=batch_id)
    files, report.unrecognised = discover(paths)
    with _writer_lock(log.events_dir.parent):
        report.recovered_batches = recover_crashed(log, ledger, quarantine_dir)
        ledger.start_batch(batch_id, origin)
        ingestor = Ingestor(log, quarantine_dir, limits, batch_id, chunk_rows)
        estimates = [_estimated_rows(p) for p, _ in files]
        total_estimate, done_estimate = sum(estimates), 0
        try:
            for (path, kind), estimate in zip(files, estimates, strict=True):
                checksum = file_sha256(path)
                counts = SourceCounts(str(path), checksum, kind)
                report.sources.append(counts)
                previous = ledger.completed_source(checksum, kind)
                if previous is not None:
                    counts.rows_read = previous.rows_read
                    counts.duplicates = previous.accepted + previous.duplicates
                    counts.skipped_as_already_ingested = True
                else:
                    for chunk in iter_chunks(path, chunk_rows):
                        ingestor.add(kind, chunk, counts)
                        if progress is not None:
                            progress(done_estimate + min(counts.rows_read, estimate), total_estimate)
                done_estimate += estimate
                if progress is not None:
                    progress(done_estimate, total_estimate)
            ingestor.flush()
        finally:
            ingestor.close()
        ledger.finish_batch(batch_id, [s.record() for s in report.sources])
    report.seconds = time.perf_counter() - started
    return report


def ingest_records(
    rows: list[dict[str, object]],
    source: str,
    log: EventLog,
    ledger: IngestLedger,
    quarantine_dir: Path,
    limits: Limits,
    origin: str = "api",
) -> tuple[IngestReport, list[tuple[int, str]]]:
    """Ingest events pushed as records (the API's path) with the same validation, dedupe and ledger.

    Returns the report and, per quarantined row, its index in `rows` and its reasons.
    """
    started = time.perf_counter()
    batch_id = _new_batch_id()
    report = IngestReport(batch_id=batch_id)
    columns: dict[str, list[str | None]] = {}
    for index, row in enumerate(rows):
        for name in row.keys() - columns.keys():
            columns[name] = [None] * index
        for name, values in columns.items():
            values.append(json_scalar(row.get(name)))
    records = pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})
    canonical = json.dumps(rows, sort_keys=True, ensure_ascii=False, default=str).encode()
    counts = SourceCounts(source, hashlib.sha256(canonical).hexdigest(), EVENTS)
    report.sources.append(counts)
    with _writer_lock(log.events_dir.parent):
        report.recovered_batches = recover_crashed(log, ledger, quarantine_dir)
        ledger.start_batch(batch_id, origin)
        ingestor = Ingestor(log, quarantine_dir, limits, batch_id, max(len(rows), 1))
        try:
            ingestor.add(EVENTS, FileChunk(records, [], 0), counts)
            ingestor.flush()
        finally:
            ingestor.close()
        ledger.finish_batch(batch_id, [counts.record()])
    report.seconds = time.perf_counter() - started
    return report, sorted(ingestor.rejections)


def recover_crashed(log: EventLog, ledger: IngestLedger, quarantine_dir: Path) -> list[str]:
    """Clean up after ingests that died: drop temp files and their quarantine, mark them aborted.

    Their committed event part files stay: every row in them is valid and deduplicated, and the
    re-run counts them as duplicates. Their quarantine is dropped because the re-run writes it again.
    """
    log.clean_temp_files()
    crashed = ledger.crashed_batches()
    for batch_id in crashed:
        folder = quarantine_dir / f"batch={batch_id}"
        if folder.exists():
            for part in folder.glob("*"):
                part.unlink()
            folder.rmdir()
        ledger.abort_batch(batch_id)
    return crashed
