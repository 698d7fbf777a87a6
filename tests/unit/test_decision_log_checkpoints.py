"""The decision log checkpoints its WAL on a background thread: commits never carry a checkpoint."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from serving.decision_log import DecisionLog, DecisionRecord


def _record(i: int) -> DecisionRecord:
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
        features={"savings_balance": 10.0},
        reasons=[],
        response={"request_id": f"{i:032x}", "padding": "x" * 2000},
        latency_ms=1.0,
        response_json=None if i % 2 else f'{{"request_id":"{i:032x}"}}',
    )


def test_background_checkpoints_keep_the_wal_small_and_every_row_durable(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    log = DecisionLog(path, checkpoint_rows=50)
    assert log._writer_con.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0

    async def write(start: int) -> None:
        await asyncio.gather(*(log.append(_record(i)) for i in range(start, start + 50)))

    for start in range(0, 1000, 50):
        asyncio.run(write(start))
    deadline = time.monotonic() + 10
    while log.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.checkpoints >= 1
    # ~2 KB a row: without checkpoints the WAL would hold all 1000 rows (> 2 MB).
    assert Path(f"{path}-wal").stat().st_size < 1_500_000
    log.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM decisions").fetchone()[0] == 1000
    # A pre-encoded response is stored as given; otherwise the dict is encoded.
    assert con.execute(f"SELECT response FROM decisions WHERE request_id = '{0:032x}'").fetchone()[0] == (
        f'{{"request_id":"{0:032x}"}}'
    )


def test_two_worker_processes_logs_share_one_file_without_losing_a_row(tmp_path: Path) -> None:
    # `coopscore serve --workers 2`: two logs (one per process) append to the same file; their
    # writers take turns on a file lock rather than SQLite's sleeping busy handler.
    path = tmp_path / "d.sqlite"
    first, second = DecisionLog(path), DecisionLog(path)

    async def both() -> list[object]:
        return await asyncio.gather(
            *(first.append(_record(i)) for i in range(0, 300, 2)),
            *(second.append(_record(i)) for i in range(1, 300, 2)),
        )

    assert asyncio.run(both()) == [None] * 300
    first.close()
    second.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM decisions").fetchone()[0] == 300
