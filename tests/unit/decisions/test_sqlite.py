"""The decision log's contract on every backend (SQLite, and PostgreSQL when reachable): group commit,
durability per row, idempotency-key conflicts, reviews, two writers at once, the read-only reader;
and SQLite's own: WAL checkpoints off the commit path, the file lock, a reader that creates nothing."""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from decisions.base import DecisionRecord
from decisions.sqlite import SqliteDecisionLogReader, SqliteDecisionLogWriter
from tests.unit.decisions.conftest import LogBackend


def record(
    i: int,
    *,
    key: str | None = None,
    sha: str | None = None,
    padding: int = 0,
    response_json: str | None = None,
    caller: str = "lender-a",
) -> DecisionRecord:
    return DecisionRecord(
        request_id=f"{i:032x}",
        application_id=f"app-{i}",
        member_id="m1",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        model_name="coopscore-pd",
        model_version="1",
        pd=0.05,
        score=610.0,
        grade="B",
        decision="approve",
        application={"amount_cny": 5000},
        features={"savings_balance": 10.0, "tenure_months": None},
        reasons=[],
        response={
            "request_id": f"{i:032x}",
            "score": 610.0,
            **({"padding": "x" * padding} if padding else {}),
        },
        latency_ms=1.0,
        idempotency_key=key,
        body_sha256=sha,
        response_json=response_json,
        caller=caller,
        model_digest="d" * 64,
    )


def test_concurrent_appends_are_grouped_into_few_commits_and_all_durable(backend: LogBackend) -> None:
    log = backend.writer()

    async def many() -> list[object]:
        return await asyncio.gather(*(log.append(record(i)) for i in range(400)))

    results = asyncio.run(many())
    assert results == [None] * 400
    commits = log.commits
    log.close()
    assert commits < 400  # rows waiting together were committed together
    assert backend.query("SELECT count(*) FROM decisions") == [(400,)]
    if backend.name == "sqlite":
        assert backend.query("PRAGMA journal_mode") == [("wal",)]


def test_same_idempotency_key_returns_the_first_stored_response(backend: LogBackend) -> None:
    log = backend.writer()

    async def race() -> list[object]:
        return await asyncio.gather(*(log.append(record(i, key="k1", sha="s")) for i in range(5)))

    results = asyncio.run(race())
    first = [r for r in results if r is None]
    replays = [r for r in results if r is not None]
    assert len(first) == 1 and len(replays) == 4
    stored = log.by_idempotency_key("lender-a", "k1")
    assert stored is not None and stored.body_sha256 == "s"
    assert all(r.response == stored.response for r in replays)  # type: ignore[union-attr]
    assert len(log.request_ids()) == 1
    log.close()


def test_reviews_are_kept_beside_the_decision(backend: LogBackend) -> None:
    log = backend.writer()
    log.submit(record(1)).result(timeout=10)
    log.add_review(
        f"{1:032x}", "officer li", "override", "decline", "income proof missing", reviewed_by_key="admin-1"
    )
    found = log.get(f"{1:032x}")
    assert found is not None
    assert found["decision"] == "approve"
    assert found["reviews"][0]["final_decision"] == "decline"
    assert found["reviews"][0]["reviewer"] == "officer li"
    assert found["reviews"][0]["reviewed_by_key"] == "admin-1"
    log.close()


def test_feature_rows_for_monitoring(backend: LogBackend) -> None:
    log = backend.writer()
    for i in range(3):
        log.submit(record(i)).result(timeout=10)
    rows = log.feature_rows(last=2)
    assert len(rows) == 2
    assert rows[0]["savings_balance"] == 10.0 and rows[0]["tenure_months"] is None
    assert {"pd", "score", "decision", "created_at"} <= rows[0].keys()
    log.close()


def test_background_checkpoints_keep_the_wal_small_and_every_row_durable(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    log = SqliteDecisionLogWriter(path, checkpoint_rows=50)
    assert log._writer_con.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0

    def padded(i: int) -> DecisionRecord:
        # ~2 KB a row; every other one arrives pre-encoded, as the score route sends it
        encoded = None if i % 2 else f'{{"request_id":"{i:032x}"}}'
        return record(i, padding=2000, response_json=encoded)

    async def write(start: int) -> None:
        await asyncio.gather(*(log.append(padded(i)) for i in range(start, start + 50)))

    for start in range(0, 1000, 50):
        before = log.checkpoints
        asyncio.run(write(start))
        # Each 50 rows asks the background thread for a checkpoint. Give it the time a loaded
        # machine may need, so the bound below tests checkpointing, not the scheduler.
        deadline = time.monotonic() + 10
        while log.checkpoints == before and time.monotonic() < deadline:
            time.sleep(0.01)
    assert log.checkpoints >= 10
    # ~2 KB a row: without checkpoints the WAL would hold all 1000 rows (> 2 MB); with them it holds
    # about one batch (the file keeps its high-water mark: a few batches at most).
    assert Path(f"{path}-wal").stat().st_size < 1_000_000
    log.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM decisions").fetchone()[0] == 1000
    # A pre-encoded response is stored as given; otherwise the dict is encoded.
    assert con.execute(f"SELECT response FROM decisions WHERE request_id = '{0:032x}'").fetchone()[0] == (
        f'{{"request_id":"{0:032x}"}}'
    )


def test_two_worker_processes_logs_share_one_log_without_losing_a_row(backend: LogBackend) -> None:
    # `coopscore serve --workers 2` (or two replicas): two writers append to the same log. SQLite's
    # take turns on a file lock rather than its sleeping busy handler; PostgreSQL's run concurrently.
    first, second = backend.writer(), backend.writer()

    async def both() -> list[object]:
        return await asyncio.gather(
            *(first.append(record(i)) for i in range(0, 300, 2)),
            *(second.append(record(i)) for i in range(1, 300, 2)),
        )

    assert asyncio.run(both()) == [None] * 300
    first.close()
    second.close()
    assert backend.query("SELECT count(*) FROM decisions") == [(300,)]


def test_a_reader_starts_no_thread_takes_no_lock_and_reads_what_a_writer_wrote(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    writer = SqliteDecisionLogWriter(path)
    for i in range(3):
        writer.submit(record(i)).result(timeout=10)
    writer.add_review(f"{1:032x}", "officer li", "confirm", "approve", "checked", reviewed_by_key="admin-1")
    writer.add_outcomes([("app-0", True, datetime(2026, 6, 1, tzinfo=UTC))])
    writer.close()

    threads, alive = threading.active_count(), set(threading.enumerate())
    reader = SqliteDecisionLogReader(path)
    assert reader.request_ids() == {f"{i:032x}" for i in range(3)}
    assert len(reader.feature_rows(last=2)) == 2
    assert reader.outcome_rows() == {"app-0": 1}
    assert reader.versions_by_application() == {f"app-{i}": "1" for i in range(3)}
    found = reader.get(f"{1:032x}")
    assert found is not None and found["reviews"][0]["reviewer"] == "officer li"
    assert threading.active_count() == threads  # reading started no writer or checkpointer
    assert set(threading.enumerate()) == alive  # (other tests' threads may still be alive: compare)

    # No lock held: the writers' lock file can be taken at once, and a writer opens and commits
    # while the reader stays open; the reader then sees the new row.
    lock_path = path.with_name(path.name + ".writelock")
    with lock_path.open("ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(lock, fcntl.LOCK_UN)
    second = SqliteDecisionLogWriter(path)
    second.submit(record(3)).result(timeout=10)
    assert f"{3:032x}" in reader.request_ids()
    second.close()

    # Read-only for real: the reader's connection refuses writes.
    with pytest.raises(sqlite3.OperationalError):
        reader._reader().execute("DELETE FROM decisions")
    reader.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM decisions").fetchone()[0] == 4


def test_a_reader_creates_nothing_where_no_log_exists(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "d.sqlite"
    with pytest.raises(FileNotFoundError, match="no decision log"):
        SqliteDecisionLogReader(path)
    assert not path.parent.exists()


def test_a_reader_opened_before_any_lock_file_does_not_create_one(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    writer = SqliteDecisionLogWriter(path)
    writer.submit(record(0)).result(timeout=10)
    writer.close()
    lock_path = path.with_name(path.name + ".writelock")
    lock_path.unlink()
    with SqliteDecisionLogReader(path) as reader:
        assert len(reader.feature_rows()) == 1
    assert not lock_path.exists()


def test_a_reader_reads_what_a_writer_wrote_and_refuses_to_write(backend: LogBackend) -> None:
    writer = backend.writer()
    for i in range(3):
        writer.submit(record(i)).result(timeout=10)
    writer.add_review(f"{1:032x}", "officer li", "confirm", "approve", "checked", reviewed_by_key="admin-1")
    assert writer.add_outcomes([("app-0", True, datetime(2026, 6, 1, tzinfo=UTC))]) == (1, 1)
    writer.close()
    threads = set(threading.enumerate())
    with backend.reader() as reader:
        assert reader.request_ids() == {f"{i:032x}" for i in range(3)}
        assert len(reader.feature_rows(last=2)) == 2
        assert reader.outcome_rows() == {"app-0": 1}
        assert reader.versions_by_application() == {f"app-{i}": "1" for i in range(3)}
        found = reader.get(f"{1:032x}")
        assert found is not None and found["reviews"][0]["reviewed_by_key"] == "admin-1"
        assert reader.get("nope") is None
        assert set(threading.enumerate()) <= threads  # no writer thread, no pool workers
        if backend.name == "postgresql":  # (SQLite's query_only is checked above)
            import psycopg

            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                reader._rows("DELETE FROM decisions")  # type: ignore[attr-defined]
    assert backend.query("SELECT count(*) FROM decisions") == [(3,)]
