"""The ingest ledger: one row per batch and one per source file, in SQLite (WAL).

It answers "was this exact file loaded already?" (by SHA-256) and "what did each batch do?", and its
checksum fingerprints the event log for training runs.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_SCHEMA = """
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
    PRIMARY KEY (batch_id, source)
);
CREATE INDEX IF NOT EXISTS sources_checksum ON sources(checksum);
"""


@dataclass(frozen=True)
class SourceRecord:
    """What one source file contributed to a batch."""

    source: str
    checksum: str
    table_kind: str
    rows_read: int
    accepted: int
    duplicates: int
    quarantined: int


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class IngestLedger:
    """Append-only record of ingest batches; a batch is 'complete' only once all its rows are stored."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=FULL")
        self._con.executescript(_SCHEMA)

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
                "INSERT INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        """Mark a crashed batch aborted (its stored events stay; re-ingest dedupes against them)."""
        self._con.execute(
            "UPDATE batches SET status = 'aborted', finished_at = ? WHERE batch_id = ?",
            (_now(), batch_id),
        )

    def completed_source(self, checksum: str, table_kind: str) -> SourceRecord | None:
        """The earliest complete ingest of a file with these exact bytes, if any."""
        row = self._con.execute(
            """SELECT s.source, s.checksum, s.table_kind, s.rows_read, s.accepted, s.duplicates,
                      s.quarantined
               FROM sources s JOIN batches b USING (batch_id)
               WHERE b.status = 'complete' AND s.checksum = ? AND s.table_kind = ?
               ORDER BY b.started_at LIMIT 1""",
            (checksum, table_kind),
        ).fetchone()
        return None if row is None else SourceRecord(*row)

    def batches(self) -> list[dict[str, object]]:
        """Every batch with its summed counts, oldest first."""
        cur = self._con.execute(
            """SELECT b.batch_id, b.started_at, b.finished_at, b.status, b.origin,
                      COUNT(s.source), COALESCE(SUM(s.rows_read), 0), COALESCE(SUM(s.accepted), 0),
                      COALESCE(SUM(s.duplicates), 0), COALESCE(SUM(s.quarantined), 0)
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
