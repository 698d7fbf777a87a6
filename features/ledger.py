"""The ingest ledger: one row per batch and one per source file, in SQLite (WAL).

It answers "was this exact file loaded already?" (by SHA-256; a file that failed does not count, so a
re-run reads it again), "what did each batch do, file by file?" (status and reason per source), and its
checksum fingerprints the event log for training runs.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from coopscore.files import private_file

# What became of one source file in one batch (see `features.ingest.SourceCounts.status`).
STORED: Final = "stored"
STORED_WITH_QUARANTINE: Final = "stored with quarantined rows"
EMPTY: Final = "empty"
FAILED: Final = "failed"
FILE_STATUSES: Final = (STORED, STORED_WITH_QUARANTINE, EMPTY, FAILED)

_STATUS_CHECK = "CHECK (status IN (" + ", ".join(f"'{s}'" for s in FILE_STATUSES) + "))"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS batches (
    batch_id    TEXT PRIMARY KEY,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL CHECK (status IN ('started', 'complete', 'aborted')),
    origin      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sources (
    batch_id    TEXT NOT NULL REFERENCES batches(batch_id),
    source      TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    table_kind  TEXT NOT NULL,
    rows_read   INTEGER NOT NULL,
    accepted    INTEGER NOT NULL,
    duplicates  INTEGER NOT NULL,
    quarantined INTEGER NOT NULL,
    status      TEXT NOT NULL DEFAULT '{STORED}' {_STATUS_CHECK},
    reason      TEXT,
    PRIMARY KEY (batch_id, source)
);
CREATE INDEX IF NOT EXISTS sources_checksum ON sources(checksum);
-- Which bad records are in quarantine (by content hash), so a re-export's are not written again.
CREATE TABLE IF NOT EXISTS quarantine_records (
    record_hash TEXT NOT NULL,
    batch_id    TEXT NOT NULL,
    PRIMARY KEY (record_hash, batch_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS quarantine_records_batch ON quarantine_records(batch_id);
"""


@dataclass(frozen=True)
class SourceRecord:
    """What one source file contributed to a batch."""

    source: str
    checksum: str  # SHA-256 of the file's bytes, and the read options given for it (`;encoding=...`)
    table_kind: str
    rows_read: int
    accepted: int
    duplicates: int
    quarantined: int
    status: str = STORED
    reason: str | None = None  # why a file failed: its name, and the line or byte where it applies


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class IngestLedger:
    """Append-only record of ingest batches; a batch is 'complete' only once all its rows are stored."""

    def __init__(self, path: Path) -> None:
        private_file(path)  # 0600 before SQLite opens it (its -wal/-shm take the same mode)
        self.path = path
        self._con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=FULL")
        self._con.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Give a ledger written before per-file statuses its `status` and `reason` columns; old rows get
        the status their counts imply (none of them failed: a failing file used to stop the batch)."""
        if "status" in self._source_columns():
            return
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")  # another process may be migrating the same file
            if "status" in self._source_columns():
                return
            self._con.execute(
                f"ALTER TABLE sources ADD COLUMN status TEXT NOT NULL DEFAULT '{STORED}' {_STATUS_CHECK}"
            )
            self._con.execute("ALTER TABLE sources ADD COLUMN reason TEXT")
            self._con.execute(
                f"""UPDATE sources SET status = CASE WHEN rows_read = 0 THEN '{EMPTY}'
                                                    WHEN quarantined > 0 THEN '{STORED_WITH_QUARANTINE}'
                                                    ELSE '{STORED}' END"""
            )

    def _source_columns(self) -> set[str]:
        return {row[1] for row in self._con.execute("PRAGMA table_info(sources)")}

    def close(self) -> None:
        """Close the SQLite connection."""
        self._con.close()

    def start_batch(self, batch_id: str, origin: str) -> None:
        """Record that a batch began (it stays 'started' if the process dies)."""
        self._con.execute(
            "INSERT INTO batches (batch_id, started_at, status, origin) VALUES (?, ?, 'started', ?)",
            (batch_id, _now(), origin),
        )

    def finish_batch(self, batch_id: str, sources: list[SourceRecord]) -> None:
        """Record every source's counts and mark the batch complete, in one transaction."""
        with self._con:
            self._con.execute("BEGIN")
            self._con.executemany(
                """INSERT INTO sources (batch_id, source, checksum, table_kind, rows_read, accepted,
                                        duplicates, quarantined, status, reason)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [
                    (
                        batch_id,
                        s.source,
                        s.checksum,
                        s.table_kind,
                        s.rows_read,
                        s.accepted,
                        s.duplicates,
                        s.quarantined,
                        s.status,
                        s.reason,
                    )
                    for s in sources
                ],
            )
            self._con.execute(
                "UPDATE batches SET status = 'complete', finished_at = ? WHERE batch_id = ?",
                (_now(), batch_id),
            )

    def crashed_batches(self) -> list[str]:
        """Batches that started but never finished: their process died mid-way."""
        rows = self._con.execute("SELECT batch_id FROM batches WHERE status = 'started'")
        return [r[0] for r in rows.fetchall()]

    def abort_batch(self, batch_id: str) -> None:
        """Mark a crashed batch aborted (its stored events stay; re-ingest dedupes against them). Its
        quarantine is dropped with it (see `features.ingest.recover_crashed`), so is its index."""
        with self._con:
            self._con.execute("BEGIN")
            self._con.execute(
                "UPDATE batches SET status = 'aborted', finished_at = ? WHERE batch_id = ?",
                (_now(), batch_id),
            )
            self._con.execute("DELETE FROM quarantine_records WHERE batch_id = ?", (batch_id,))

    def add_quarantined(self, batch_id: str, record_hashes: list[str]) -> None:
        """Note that these records were written to quarantine by `batch_id`."""
        with self._con:
            self._con.execute("BEGIN")
            self._con.executemany(
                "INSERT OR IGNORE INTO quarantine_records VALUES (?, ?)",
                [(h, batch_id) for h in sorted(record_hashes)],  # in key order: ~3x faster
            )

    def quarantined_already(self, record_hashes: set[str]) -> set[str]:
        """Those of `record_hashes` whose record is in quarantine already."""
        hashes = sorted(record_hashes)
        found: set[str] = set()
        for start in range(0, len(hashes), 500):
            part = hashes[start : start + 500]
            rows = self._con.execute(
                "SELECT DISTINCT record_hash FROM quarantine_records WHERE record_hash IN "
                f"({', '.join('?' * len(part))})",
                part,
            )
            found.update(r[0] for r in rows.fetchall())
        return found

    def quarantine_batches(self) -> set[str]:
        """Batches whose quarantined records are in the quarantine index."""
        rows = self._con.execute("SELECT DISTINCT batch_id FROM quarantine_records")
        return {r[0] for r in rows.fetchall()}

    def completed_source(self, checksum: str, table_kind: str) -> SourceRecord | None:
        """The earliest complete ingest of a file with these exact bytes, if any. A file that failed
        was not completed, whatever its batch did: the next run reads it again."""
        row = self._con.execute(
            f"""SELECT s.source, s.checksum, s.table_kind, s.rows_read, s.accepted, s.duplicates,
                      s.quarantined, s.status, s.reason
               FROM sources s JOIN batches b USING (batch_id)
               WHERE b.status = 'complete' AND s.checksum = ? AND s.table_kind = ?
                 AND s.status <> '{FAILED}'
               ORDER BY b.started_at LIMIT 1""",
            (checksum, table_kind),
        ).fetchone()
        return None if row is None else SourceRecord(*row)

    def latest_sources(self) -> list[dict[str, object]]:
        """Each source path's most recent record in a complete batch (its current status), by path:
        a file that failed and was fixed since shows as stored."""
        cur = self._con.execute(
            """SELECT source, table_kind, status, reason, rows_read, accepted, duplicates, quarantined,
                      batch_id, finished_at
               FROM (SELECT s.*, b.finished_at, row_number() OVER (
                            PARTITION BY s.source ORDER BY b.started_at DESC) AS newest
                     FROM sources s JOIN batches b USING (batch_id) WHERE b.status = 'complete')
               WHERE newest = 1 ORDER BY source"""
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def batch_sources(self, batch_ids: list[str]) -> list[dict[str, object]]:
        """The source files of these batches with their status, reason and counts (the console's
        onboarding page), by batch then path."""
        if not batch_ids:
            return []
        cur = self._con.execute(
            f"""SELECT batch_id, source, table_kind, status, reason, rows_read, accepted, duplicates,
                      quarantined
               FROM sources WHERE batch_id IN ({", ".join("?" * len(batch_ids))})
               ORDER BY batch_id, source""",
            batch_ids,
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def batches(self) -> list[dict[str, object]]:
        """Every batch with its summed counts and its number of failed files, oldest first."""
        cur = self._con.execute(
            f"""SELECT b.batch_id, b.started_at, b.finished_at, b.status, b.origin,
                      COUNT(s.source), COALESCE(SUM(s.rows_read), 0), COALESCE(SUM(s.accepted), 0),
                      COALESCE(SUM(s.duplicates), 0), COALESCE(SUM(s.quarantined), 0),
                      COUNT(s.source) FILTER (WHERE s.status = '{FAILED}')
               FROM batches b LEFT JOIN sources s USING (batch_id)
               GROUP BY b.batch_id ORDER BY b.started_at"""
        )
        names = [
            "batch_id",
            "started_at",
            "finished_at",
            "status",
            "origin",
            "sources",
            "rows_read",
            "accepted",
            "duplicates",
            "quarantined",
            "failed_sources",
        ]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def checksum(self) -> str:
        """SHA-256 over every complete batch's sources and counts: the event log's fingerprint."""
        digest = hashlib.sha256()
        rows = self._con.execute(
            """SELECT s.batch_id, s.source, s.checksum, s.table_kind, s.accepted
               FROM sources s JOIN batches b USING (batch_id)
               WHERE b.status = 'complete' ORDER BY b.started_at, s.source"""
        )
        for row in rows:
            digest.update("\x1f".join(str(v) for v in row).encode())
            digest.update(b"\x1e")
        return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
