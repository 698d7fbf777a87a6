"""The online store named by configuration (`Settings.online_store`), Feast style: callers ask for
"the online store" and never name a backend class, so adding a backend touches this file only."""

from __future__ import annotations

from typing import Final

from coopscore.settings import Settings
from features.online.base import OnlineStore

SUPPORTED: Final = ("sqlite:///PATH",)


def online_store(settings: Settings) -> OnlineStore:
    """Open the configured online store; an unknown scheme raises a one-line `UnsupportedBackendError`."""
    url = settings.online_store_url
    if url.scheme == "sqlite":
        from features.online.sqlite import SqliteOnlineStore

        return SqliteOnlineStore(url.sqlite_path())
    raise url.unsupported(SUPPORTED)
