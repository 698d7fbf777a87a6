"""Kill a real `coopscore ingest` with SIGKILL mid-way, re-run it, and check nothing is lost or doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from features.contracts import EVENT_TYPES, WIDE_EVENT_CONTRACT
from features.event_log import EventLog
from features.ledger import IngestLedger

pytestmark = pytest.mark.integration

ROWS = 400_000
BAD_EVERY = 997  # one malformed amount per ~1,000 rows
DUP_EVERY = 101  # and a re-sent row per ~100


def _write_feed(path: Path) -> tuple[set[str], int]:
    """A large wide CSV export of deliveries; returns the valid event_ids and the number of bad rows."""
    ids = [f"crash-{i:07d}" for i in range(ROWS)]
    bad = {i for i in range(ROWS) if i % BAD_EVERY == 0}
    amounts = ["oops元" if i in bad else f"{100 + i % 900}.5" for i in range(ROWS)]
    dup_rows = [i for i in range(ROWS) if i % DUP_EVERY == 7 and i not in bad]
    order = list(range(ROWS)) + dup_rows
    columns: dict[str, list[str | None]] = dict.fromkeys(WIDE_EVENT_CONTRACT.names)  # type: ignore[arg-type]
    constant = {
        "coop_id": "c01",
        "event_type": "produce_delivery",
        "product": "茶叶",
        "quantity_kg": "10",
        "quality_grade": "B",
    }
    for name in WIDE_EVENT_CONTRACT.names:
        columns[name] = [constant.get(name)] * len(order)
    columns["event_id"] = [ids[i] for i in order]
    columns["member_id"] = [f"m{i % 5000:05d}" for i in order]
    columns["event_time"] = [f"2025-0{1 + i % 9}-1{i % 10}T08:00:00Z" for i in order]
    columns["recorded_at"] = [f"2025-0{1 + i % 9}-1{i % 10}T09:00:00Z" for i in order]
    columns["amount_cny"] = [amounts[i] for i in order]
    pacsv.write_csv(pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}), path)
    return {ids[i] for i in range(ROWS) if i not in bad}, len(bad)


def _ingest(feed: Path, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "COOPSCORE_DATA_DIR": str(data_dir), "COOPSCORE_INGEST_CHUNK_ROWS": "20000"}
    return subprocess.Popen(
        [sys.executable, "-m", "coopscore", "ingest", str(feed), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigkill_mid_ingest_then_rerun_stores_every_valid_row_exactly_once(tmp_path: Path) -> None:
    feed = tmp_path / "feed.csv"
    valid_ids, bad_rows = _write_feed(feed)
    data = tmp_path / "data"
    parts = data / "events" / "event_type=produce_delivery"

    victim = _ingest(feed, data)
    deadline = time.monotonic() + 120
    while (
        victim.poll() is None and time.monotonic() < deadline and len(list(parts.glob("part-*.parquet"))) < 3
    ):
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, "ingest finished before it could be killed"
    committed_before_rerun = len(list(parts.glob("part-*.parquet")))
    assert committed_before_rerun >= 3

    rerun = _ingest(feed, data)
    _out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()

    log = EventLog(data / "events", data / "tables")
    stored = [i for t in EVENT_TYPES for i in log.read_events(t, ["event_id"]).column(0).to_pylist()]
    assert len(stored) == len(set(stored)), "an event was stored twice"
    assert set(stored) == valid_ids, "a valid event was lost"
    assert not list(data.glob("**/.part-*.tmp-*")), "temp files left behind"
    quarantined = sum(pq.read_metadata(p).num_rows for p in (data / "quarantine").glob("batch=*/*.parquet"))
    assert quarantined == bad_rows, "bad rows must be quarantined once, not once per attempt"
    ledger = IngestLedger(data / "ledger.sqlite")
    try:
        statuses = sorted(b["status"] for b in ledger.batches())
        assert statuses == ["aborted", "complete"]
    finally:
        ledger.close()
