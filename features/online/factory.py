"""The online store named by configuration (`Settings.online_store`), Feast style: callers ask for
"the online store" and never name a backend class, so adding a backend touches this file only."""

from __future__ import annotations

from typing import Final

from coopscore.settings import Settings
from features.online.base import OnlineStore

SUPPORTED: Final = ("sqlite:///PATH", "redis://[:PASSWORD@]HOST:PORT/DB?prefix=..&retired_ttl=..")


def online_store(settings: Settings) -> OnlineStore:
    """Open the configured online store. An unknown scheme or a malformed URL raises a one-line
    `UnsupportedBackendError`; a server that does not answer, a one-line `BackendUnavailableError`."""
    url = settings.online_store_url
    if url.scheme == "sqlite":
        from features.online.sqlite import SqliteOnlineStore

        return SqliteOnlineStore(url.sqlite_path())
    if url.scheme in ("redis", "rediss"):
        from features.online.redis import RedisOnlineStore

        store = RedisOnlineStore(url.url, setting=url.setting)
        try:
            store.ping()  # an unreachable server is one line here, not a traceback mid-command
        except BaseException:
            store.close()
            raise
        return store
    raise url.unsupported(SUPPORTED)


def check_online_store(settings: Settings) -> None:
    """Open and close the configured store, so `coopscore serve` fails in one line before it binds
    (`BackendUnavailableError`, `UnsupportedBackendError`); a SQLite store is left to the server."""
    if settings.online_store_url.scheme != "sqlite":
        online_store(settings).close()


def online_store_exists(settings: Settings) -> bool:
    """Whether a store has been materialized: the SQLite file exists, or Redis has a live generation.

    Checking the file first keeps a read-only command from creating an empty SQLite store.
    """
    url = settings.online_store_url
    if url.scheme == "sqlite":
        return url.sqlite_path().exists()
    with online_store(settings) as store:
        return store.live_generation() is not None
