"""The decision log named by configuration (`Settings.decision_log`): the server asks for the writer,
monitoring, audits and the CLI for a reader; nobody else names a backend class."""

from __future__ import annotations

from typing import Final

from coopscore.settings import Settings
from decisions.base import DecisionLogReader, DecisionLogWriter

SUPPORTED: Final = ("sqlite:///PATH",)


def decision_log_writer(settings: Settings) -> DecisionLogWriter:
    """The server's writer (one per process; it starts the backend's writer machinery)."""
    url = settings.decision_log_url
    if url.scheme == "sqlite":
        from decisions.sqlite import SqliteDecisionLogWriter

        return SqliteDecisionLogWriter(url.sqlite_path())
    raise url.unsupported(SUPPORTED)


def decision_log_reader(settings: Settings) -> DecisionLogReader:
    """A read-only view of the log: no thread, no lock. FileNotFoundError if nothing was logged yet."""
    url = settings.decision_log_url
    if url.scheme == "sqlite":
        from decisions.sqlite import SqliteDecisionLogReader

        return SqliteDecisionLogReader(url.sqlite_path())
    raise url.unsupported(SUPPORTED)
