"""The decision log named by configuration (`Settings.decision_log`): the server asks for the writer,
monitoring, audits and the CLI for a reader; nobody else names a backend class."""

from __future__ import annotations

from typing import Final

from coopscore.settings import Settings
from decisions.base import DecisionLogReader, DecisionLogWriter

SUPPORTED: Final = ("sqlite:///PATH", "postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DB?schema=NAME")
POSTGRES_SCHEMES: Final = ("postgresql", "postgres")


def decision_log_writer(settings: Settings) -> DecisionLogWriter:
    """The server's writer (one per process; it starts the backend's writer machinery).

    Raises:
        DecisionLogUnavailableError: a database server that cannot be reached (one line, no password).
    """
    url = settings.decision_log_url
    if url.scheme == "sqlite":
        from decisions.sqlite import SqliteDecisionLogWriter

        return SqliteDecisionLogWriter(url.sqlite_path())
    if url.scheme in POSTGRES_SCHEMES:
        from decisions.postgres import PostgresDecisionLogWriter

        return PostgresDecisionLogWriter(url.url)
    raise url.unsupported(SUPPORTED)


def decision_log_reader(settings: Settings) -> DecisionLogReader:
    """A read-only view of the log: no thread, no lock. FileNotFoundError if nothing was logged yet;
    DecisionLogUnavailableError if its database server cannot be reached."""
    url = settings.decision_log_url
    if url.scheme == "sqlite":
        from decisions.sqlite import SqliteDecisionLogReader

        return SqliteDecisionLogReader(url.sqlite_path())
    if url.scheme in POSTGRES_SCHEMES:
        from decisions.postgres import PostgresDecisionLogReader

        return PostgresDecisionLogReader(url.url)
    raise url.unsupported(SUPPORTED)


def check_decision_log(settings: Settings) -> None:
    """Fail fast before a server starts: a database-backed log must be reachable (its schema is
    created here too). Nothing to check for SQLite, whose file the server creates.

    Raises:
        DecisionLogUnavailableError: the server cannot be reached (one line, password redacted).
        UnsupportedBackendError: an unknown scheme.
    """
    url = settings.decision_log_url
    if url.scheme == "sqlite":
        url.sqlite_path()
        return
    if url.scheme in POSTGRES_SCHEMES:
        from decisions.postgres import PostgresTarget, create_schema

        create_schema(PostgresTarget.from_url(url.url))
        return
    raise url.unsupported(SUPPORTED)
