"""The ingest ledger: per-file status and reason, migration of older ledgers, the quarantine index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from features.ledger import EMPTY, FAILED, STORED, STORED_WITH_QUARANTINE, IngestLedger, SourceRecord

# The ledger's tables as they were before per-file statuses (and without the quarantine index).
_OLD_SCHEMA = """
CREATE TABLE batches (
    batch_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT,
    status TEXT NOT NULL CHECK (status IN ('started', 'complete', 'aborted')), origin TEXT NOT NULL
);
CREATE TABLE sources (
    batch_id TEXT NOT NULL REFERENCES batches(batch_id), source TEXT NOT NULL, checksum TEXT NOT NULL,
    table_kind TEXT NOT NULL, rows_read INTEGER NOT NULL, accepted INTEGER NOT NULL,
    duplicates INTEGER NOT NULL, quarantined INTEGER NOT NULL, PRIMARY KEY (batch_id, source)
);
CREATE INDEX sources_checksum ON sources(checksum);
"""


def _record(source: str, checksum: str, *, status: str = STORED, **counts: int) -> SourceRecord:
    numbers = {"rows_read": 0, "accepted": 0, "duplicates": 0, "quarantined": 0} | counts
    reason = f"{source}: broken" if status == FAILED else None
    return SourceRecord(source, checksum, "events", **numbers, status=status, reason=reason)


def test_an_old_ledger_gets_status_and_reason_from_its_counts(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    con = sqlite3.connect(path)
    con.executescript(_OLD_SCHEMA)
    con.execute("INSERT INTO batches VALUES ('b1', '2025-01-01', '2025-01-01', 'complete', 'cli')")
    con.executemany(
        "INSERT INTO sources VALUES ('b1', ?, ?, 'events', ?, ?, ?, ?)",
        [("a.csv", "ca", 10, 10, 0, 0), ("b.csv", "cb", 5, 3, 0, 2), ("c.csv", "cc", 0, 0, 0, 0)],
    )
    con.commit()
    con.close()
    ledger = IngestLedger(path)
    again = IngestLedger(path)  # a second opening finds it migrated
    try:
        statuses = {row["source"]: (row["status"], row["reason"]) for row in again.latest_sources()}
        assert statuses == {
            "a.csv": (STORED, None),
            "b.csv": (STORED_WITH_QUARANTINE, None),
            "c.csv": (EMPTY, None),
        }
        previous = ledger.completed_source("cb", "events")
        assert previous is not None and (previous.quarantined, previous.status) == (2, STORED_WITH_QUARANTINE)
        # And it takes new rows with their status.
        ledger.start_batch("b2", "cli")
        ledger.finish_batch("b2", [_record("d.csv", "cd", status=FAILED)])
        assert ledger.latest_sources()[-1]["status"] == FAILED
    finally:
        ledger.close()
        again.close()


def test_a_failed_file_is_never_taken_for_completed(tmp_path: Path) -> None:
    ledger = IngestLedger(tmp_path / "ledger.sqlite")
    try:
        ledger.start_batch("b1", "cli")
        ledger.finish_batch(
            "b1", [_record("gbk.csv", "c1", status=FAILED), _record("ok.csv", "c2", rows_read=4)]
        )
        assert ledger.completed_source("c1", "events") is None
        assert ledger.completed_source("c2", "events") is not None
        assert [b["failed_sources"] for b in ledger.batches()] == [1]
        # Fixed and stored later: the file's latest status is stored, and the failure is history.
        ledger.start_batch("b2", "cli")
        ledger.finish_batch("b2", [_record("gbk.csv", "c3", rows_read=7, accepted=7)])
        latest = {row["source"]: row["status"] for row in ledger.latest_sources()}
        assert latest == {"gbk.csv": STORED, "ok.csv": STORED}
    finally:
        ledger.close()


def test_the_quarantine_index_forgets_an_aborted_batch(tmp_path: Path) -> None:
    ledger = IngestLedger(tmp_path / "ledger.sqlite")
    try:
        ledger.start_batch("done", "cli")
        ledger.add_quarantined("done", ["h1", "h2"])
        ledger.finish_batch("done", [])
        ledger.start_batch("dead", "cli")
        ledger.add_quarantined("dead", ["h3"])
        assert ledger.quarantined_already({"h1", "h3", "h9"}) == {"h1", "h3"}
        ledger.abort_batch("dead")  # its quarantine folder is removed too: its records are not there
        assert ledger.quarantined_already({"h1", "h3", "h9"}) == {"h1"}
        assert ledger.quarantine_batches() == {"done"}
        many = {f"x{i}" for i in range(1200)}  # more than one IN (...) list
        ledger.add_quarantined("done", sorted(many))
        assert ledger.quarantined_already(many | {"nope"}) == many
    finally:
        ledger.close()
