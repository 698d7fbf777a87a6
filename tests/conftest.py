"""Shared fixtures: a fresh event log, ledger and quarantine under a temporary data dir."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from features.event_log import EventLog
from features.ingest import IngestReport, ingest_paths
from features.ledger import IngestLedger
from tests.utils.feeds import limits


@dataclass
class Store:
    """The storage one ingest writes to, rooted in a temporary data dir."""

    data_dir: Path
    log: EventLog
    ledger: IngestLedger
    quarantine_dir: Path

    def ingest(self, *paths: Path, chunk_rows: int = 1_000_000) -> IngestReport:
        return ingest_paths(
            list(paths), self.log, self.ledger, self.quarantine_dir, limits(), chunk_rows=chunk_rows
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    data = tmp_path / "data"
    ledger = IngestLedger(data / "ledger.sqlite")
    yield Store(data, EventLog(data / "events", data / "tables"), ledger, data / "quarantine")
    ledger.close()
