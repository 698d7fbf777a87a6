"""The Redis online store's own guarantees: URL options, password redaction, expiry of retired and
half-written generations, aborts, missing members, chunked reads pinned to one generation.
(What it shares with SQLite, parity and atomic switches, is in test_online_parity.py.)"""

from __future__ import annotations

import re
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis

from coopscore.settings import BackendUnavailableError, BackendUrl, Settings, UnsupportedBackendError
from features.online import redis as redis_module
from features.online.base import FeatureBatch
from features.online.factory import online_store, online_store_exists
from features.online.redis import RedisOnlineStore, RedisOptions
from features.online.sqlite import SqliteOnlineStore

NAMES = ("a", "b", "c")
AS_OF = datetime(2024, 3, 1, 12, 30, 0, 7, tzinfo=UTC)


def _batch(members: list[str], value: float) -> FeatureBatch:
    values = np.full((len(members), len(NAMES)), value)
    values[:, 1] = np.nan
    values[:, 2] = np.arange(len(members)) / 3.0
    return FeatureBatch(member_ids=members, as_of=AS_OF, feature_names=NAMES, values=values)


def _keys(store: RedisOnlineStore, generation: int) -> list[bytes]:
    return list(store.client.scan_iter(match=f"{store.prefix}:gen:{generation}:*", count=1_000))


def test_url_options_are_split_from_the_connection_url_and_checked() -> None:
    options = RedisOptions.from_url(
        "redis://:s3cret@127.0.0.1:6379/15?prefix=p1&retired_ttl=60&writing_ttl=5"
    )
    assert options.prefix == "p1" and options.retired_ttl == 60 and options.writing_ttl == 5
    assert options.connection_url == "redis://:s3cret@127.0.0.1:6379/15"
    defaults = RedisOptions.from_url("redis://127.0.0.1:6379/0")
    assert (defaults.prefix, defaults.retired_ttl, defaults.writing_ttl) == (
        "coopscore:online",
        86_400,
        86_400,
    )
    for bad in ("retired_ttl=0", "writing_ttl=soon", "prefix="):
        with pytest.raises(ValueError, match=bad.split("=")[0]):
            RedisOptions.from_url(f"redis://127.0.0.1:6379/0?{bad}")


def test_password_never_shows_in_the_displayed_url() -> None:
    url = BackendUrl.parse("COOPSCORE_ONLINE_STORE", "redis://app:s3cret@cache.internal:6379/2?prefix=x")
    assert url.redacted == "redis://app:***@cache.internal:6379/2?prefix=x"
    assert "s3cret" not in url.display()
    bare = BackendUrl.parse("COOPSCORE_ONLINE_STORE", "redis://:s3cret@h:6379/0")
    assert bare.display() == "redis://:***@h:6379/0"
    plain = BackendUrl.parse("COOPSCORE_ONLINE_STORE", "redis://h:6379/0?prefix=a@b")
    assert plain.redacted == "redis://h:6379/0?prefix=a@b"
    in_query = BackendUrl.parse("COOPSCORE_ONLINE_STORE", "redis://h:6379/0?password=s3cret&prefix=p")
    assert in_query.redacted == "redis://h:6379/0?password=***&prefix=p"
    assert BackendUrl.parse("X", "sqlite:////tmp/x.sqlite").display() == "/tmp/x.sqlite"
    # A user name alone has no password to hide: shown as written, not as ':***' (serve's start line).
    user = BackendUrl.parse("COOPSCORE_DECISION_LOG", "postgresql://postgres@db:5432/test?schema=s")
    assert user.display() == "postgresql://postgres@db:5432/test?schema=s"


def test_factory_picks_the_backend_by_scheme(redis_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, online_store=redis_url)
    assert not online_store_exists(settings)
    with online_store(settings) as store:
        assert isinstance(store, RedisOnlineStore)
        with store.refresh(feature_names=NAMES, feature_set_version="v1", as_of=AS_OF) as r:
            store.online_write_batch(r, _batch(["m1"], 1.0))
    assert online_store_exists(settings)
    sqlite = Settings(data_dir=tmp_path)
    assert not online_store_exists(sqlite)
    assert not (tmp_path / "online" / "features.sqlite").exists()  # the check creates nothing
    with online_store(sqlite) as store:
        assert isinstance(store, SqliteOnlineStore)


def test_values_missing_members_and_duplicates_round_trip(redis_url: str) -> None:
    store = RedisOnlineStore(redis_url)
    assert store.online_read(["m1"]) == [None]
    assert store.live_generation() is None and store.member_ids(5) == []
    members = [f"m{i}" for i in range(5)]
    with store.refresh(feature_names=NAMES, feature_set_version="v1", as_of=AS_OF) as r:
        store.online_write_batch(r, _batch(members, -0.0))
    got = store.online_read(["m3", "nobody", "m3", "m0"])
    assert [v.member_id if v else None for v in got] == ["m3", None, "m3", "m0"]
    vector = got[0]
    assert vector is not None
    assert vector.as_of == AS_OF and vector.feature_set_version == "v1"
    assert list(vector.features) == list(NAMES)
    assert np.signbit(vector.features["a"]) and np.isnan(vector.features["b"])
    assert vector.features["c"] == 1.0  # 3 / 3.0, exactly
    assert got[3] is not None and got[3].features["c"] == 0.0
    info = store.live_generation()
    assert info is not None and info.member_count == 5 and info.feature_names == NAMES
    assert sorted(store.member_ids(10)) == members and len(store.member_ids(2)) == 2
    store.close()


def test_retired_generation_expires_and_readers_of_it_finish(redis_url: str) -> None:
    store = RedisOnlineStore(redis_url + "&retired_ttl=1")
    members = [f"m{i}" for i in range(50)]
    with store.refresh(feature_names=NAMES, feature_set_version="v1", as_of=AS_OF) as first:
        store.online_write_batch(first, _batch(members, 1.0))
    assert all(store.client.ttl(k) == -1 for k in _keys(store, first.generation))  # live: permanent
    with store.refresh(feature_names=NAMES, feature_set_version="v1", as_of=AS_OF) as second:
        store.online_write_batch(second, _batch(members, 2.0))
    old = _keys(store, first.generation)
    assert len(old) == 52  # 50 member hashes, the member set, the meta hash
    assert all(0 < store.client.ttl(k) <= 1 for k in old)
    assert all(store.client.ttl(k) == -1 for k in _keys(store, second.generation))
    assert {v.features["a"] for v in store.online_read(members) if v} == {2.0}
    time.sleep(1.3)
    assert _keys(store, first.generation) == []
    assert len(_keys(store, second.generation)) == 52
    store.close()


def test_a_crashed_materialization_expires_and_an_abort_deletes(redis_url: str) -> None:
    store = RedisOnlineStore(redis_url + "&writing_ttl=1")
    with store.refresh(feature_names=NAMES, feature_set_version="v1", as_of=AS_OF) as live:
        store.online_write_batch(live, _batch(["m1", "m2"], 1.0))
    crashed = store.begin_refresh(feature_names=NAMES, feature_set_version="v2", as_of=AS_OF)
    store.online_write_batch(crashed, _batch(["m1", "m2", "m3"], 9.0))  # never committed
    assert len(_keys(store, crashed.generation)) == 5
    assert store.online_read(["m3"]) == [None]
    aborted = store.begin_refresh(feature_names=NAMES, feature_set_version="v2", as_of=AS_OF)
    store.online_write_batch(aborted, _batch(["m1"], 7.0))
    store.abort_refresh(aborted)
    assert [k.decode() for k in _keys(store, aborted.generation)] == [
        f"{store.prefix}:gen:{aborted.generation}:meta"
    ]
    with pytest.raises(ValueError, match="not being written"):
        store.online_write_batch(aborted, _batch(["m1"], 7.0))
    with pytest.raises(ValueError, match="features differ"):
        store.online_write_batch(
            crashed,
            FeatureBatch(member_ids=["x"], as_of=AS_OF, feature_names=("z",), values=np.zeros((1, 1))),
        )
    time.sleep(1.3)
    assert _keys(store, crashed.generation) == []
    assert store.online_read(["m1"])[0].features["a"] == 1.0  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="not being written"):
        store.commit_refresh(crashed)
    store.close()


def test_large_reads_are_chunked_yet_see_one_generation(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_module, "_READ_CHUNK", 7)
    monkeypatch.setattr(redis_module, "_WRITE_CHUNK", 5)
    store = RedisOnlineStore(redis_url)
    members = [f"m{i:03d}" for i in range(60)]
    with store.refresh(feature_names=NAMES, feature_set_version="v1", as_of=AS_OF) as r:
        store.online_write_batch(r, _batch(members, 1.0))
    calls: list[int] = []
    script = store._read

    def counting(*, args: list[str]) -> object:
        calls.append(len(args) - 2)
        if len(calls) == 2:  # a refresh commits between the first and second chunk
            with store.refresh(
                feature_names=NAMES, feature_set_version="v1", as_of=AS_OF + timedelta(days=1)
            ) as fresh:
                store.online_write_batch(fresh, _batch(members, 2.0))
        return script(args=args)

    monkeypatch.setattr(store, "_read", counting)
    got = store.online_read(members)
    assert calls == [7] * 8 + [4]  # 60 ids in 9 round trips, one script call each
    assert {v.features["a"] for v in got if v} == {1.0} and all(got)
    assert {v.features["a"] for v in store.online_read(members) if v} == {2.0}
    store.close()


def test_unreachable_redis_is_one_line_naming_the_setting_without_the_password(tmp_path: Path) -> None:
    url = "redis://:s3cret@127.0.0.1:1/0?prefix=p"
    store = RedisOnlineStore(url, socket_timeout=0.5)
    with pytest.raises(BackendUnavailableError) as caught:
        store.online_read(["m1"])
    store.close()
    message = str(caught.value)
    assert message.startswith("COOPSCORE_ONLINE_STORE=redis://:***@127.0.0.1:1/0?prefix=p: Redis is")
    assert "s3cret" not in message and "\n" not in message
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    # The factory pings at open, so a command fails before it does any work.
    with pytest.raises(BackendUnavailableError):
        online_store(Settings(data_dir=tmp_path, online_store=url))


@pytest.mark.parametrize("url", ["redis://127.0.0.1:port/0", "redis://127.0.0.1:6379/zero"])
def test_a_malformed_redis_url_is_refused_as_configuration(url: str) -> None:
    with pytest.raises(UnsupportedBackendError, match=re.escape(f"COOPSCORE_ONLINE_STORE={url}: ")):
        RedisOnlineStore(url)


def test_the_cli_says_one_line_and_exits_7_when_redis_does_not_answer(tmp_path: Path) -> None:
    """Without building a world: `features get` opens the store first (the journey covers the rest)."""
    import os
    import subprocess
    import sys

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COOPSCORE_")}
    env |= {
        "COOPSCORE_DATA_DIR": str(tmp_path / "data"),
        "COOPSCORE_ONLINE_STORE": f"redis://:s3cret@127.0.0.1:{port}/15",
        "NO_COLOR": "1",
    }
    command = [sys.executable, "-m", "coopscore", "features", "get", "M1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 7, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
    assert done.stderr.startswith(f"unavailable: COOPSCORE_ONLINE_STORE=redis://:***@127.0.0.1:{port}/15: ")
    assert "s3cret" not in done.stderr
    debug = subprocess.run(
        [*command[:3], "--debug", *command[3:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr
