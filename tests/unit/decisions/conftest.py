"""The decision-log backends the contract tests run against: SQLite always, PostgreSQL when it is
reachable (else skipped with the reason printed; a failure under COOPSCORE_REQUIRE_SERVICES=1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from decisions.base import DecisionLogReader, DecisionLogWriter


def open_writer(target: str) -> DecisionLogWriter:
    """The writer for a backend target: a PostgreSQL URL, else a SQLite file path (picklable, so a
    spawned process can open its own)."""
    if target.startswith("postgresql://"):
        from decisions.postgres import PostgresDecisionLogWriter

        return PostgresDecisionLogWriter(target)
    from decisions.sqlite import SqliteDecisionLogWriter

    return SqliteDecisionLogWriter(Path(target))


def open_reader(target: str) -> DecisionLogReader:
    """The read-only reader for a backend target (see `open_writer`)."""
    if target.startswith("postgresql://"):
        from decisions.postgres import PostgresDecisionLogReader

        return PostgresDecisionLogReader(target)
    from decisions.sqlite import SqliteDecisionLogReader

    return SqliteDecisionLogReader(Path(target))


class LogBackend:
    """One backend under test: open its writer and reader, and query its tables directly (portable
    SQL without parameters) to check what was stored."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.target = target

    def writer(self) -> DecisionLogWriter:
        return open_writer(self.target)

    def reader(self) -> DecisionLogReader:
        return open_reader(self.target)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.name == "sqlite":
            import sqlite3

            con = sqlite3.connect(self.target)
            try:
                return con.execute(sql).fetchall()
            finally:
                con.close()
        from decisions.postgres import PostgresTarget

        with PostgresTarget.from_url(self.target).connect() as pg:
            return pg.execute(sql).fetchall()  # type: ignore[arg-type]

    def execute(self, sql: str) -> None:
        """Run one statement that returns no rows (DDL, to make an older log's schema), committed."""
        if self.name == "sqlite":
            import sqlite3

            con = sqlite3.connect(self.target, isolation_level=None)
            try:
                con.execute(sql)
            finally:
                con.close()
            return
        from decisions.postgres import PostgresTarget

        with PostgresTarget.from_url(self.target).connect() as pg:
            pg.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> LogBackend:
    """Each decision-log backend in turn (PostgreSQL in a fresh schema, dropped after the test)."""
    if request.param == "sqlite":
        return LogBackend("sqlite", str(tmp_path / "d.sqlite"))
    return LogBackend("postgresql", request.getfixturevalue("postgres_url"))
