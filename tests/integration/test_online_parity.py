"""Online/offline parity and the online store's refresh guarantees.

Parity: for a sample of members, the vector `materialize` wrote equals, value for value, the offline
builder's row for that member as of the materialization time; request-time application features
computed on the online vector equal the offline ones. Store: a refresh is invisible until committed,
a reader never sees half of one, an aborted refresh leaves the live generation untouched.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coopscore.cli.features import app
from coopscore.settings import get_settings
from features.catalog import application_features_for_request, default_registry
from features.materialize import materialize
from features.offline import DuckDBEngine, EngineConfig, build_features, member_spine
from features.online.base import FeatureBatch, OnlineStore
from features.online.redis import RedisOnlineStore
from features.online.sqlite import SqliteOnlineStore
from tests.utils.feature_fixtures import at, seeded_world

REGISTRY = default_registry()
ENGINE = DuckDBEngine(EngineConfig(threads=1, memory_limit="1GB"))
AS_OF = at(520) + timedelta(hours=7, microseconds=123)


@pytest.fixture(scope="module")
def world_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("world")
    return seeded_world(seed=11, members=40, events=2_500, applications=80).write(root)


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], OnlineStore]:
    """Opens a store (a new client each call) on one backend: the same tests run on SQLite and Redis."""
    if request.param == "sqlite":
        return lambda: SqliteOnlineStore(tmp_path / "online.sqlite")
    url: str = request.getfixturevalue("redis_url")
    return lambda: RedisOnlineStore(url)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_online_vectors_equal_offline_vectors_at_materialization_time(
    world_dirs: tuple[Path, Path], open_store: Callable[[], OnlineStore]
) -> None:
    events_dir, tables_dir = world_dirs
    store = open_store()
    report = materialize(
        events_dir=events_dir, tables_dir=tables_dir, store=store, as_of=AS_OF, engine=ENGINE
    )
    assert report.members == 40
    assert report.feature_set_version == REGISTRY.version

    sample = [f"m{i:03d}" for i in np.random.default_rng(5).choice(40, size=12, replace=False)]
    spine = member_spine(sample, AS_OF).assign(
        amount_cny=np.linspace(500, 20_000, len(sample)), term_months=12.0
    )
    offline = build_features(spine, events_dir=events_dir, tables_dir=tables_dir, engine=ENGINE)
    online = store.online_read(sample)
    store.close()

    for vector, (_, row), (_, request) in zip(online, offline.iterrows(), spine.iterrows(), strict=True):
        assert vector is not None
        assert vector.member_id == row["member_id"]
        assert vector.as_of == AS_OF
        assert vector.feature_set_version == REGISTRY.version
        mismatched = [
            f.name for f in REGISTRY.member_features if not _same(vector.features[f.name], float(row[f.name]))
        ]
        assert not mismatched, (vector.member_id, mismatched)
        # Serving computes application features on the vector with the very same function.
        at_request = application_features_for_request(
            vector.features,
            amount_cny=float(request["amount_cny"]),
            term_months=int(request["term_months"]),
        )
        for name, value in at_request.items():
            assert _same(value, float(row[name])), (vector.member_id, name)


def _batch(members: list[str], value: float, as_of: datetime) -> FeatureBatch:
    names = ("a", "b", "c")
    return FeatureBatch(
        member_ids=members,
        as_of=as_of,
        feature_names=names,
        values=np.full((len(members), len(names)), value),
    )


def _refresh(store: OnlineStore, members: list[str], value: float, *, pause: float = 0):
    as_of = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=value)
    with store.refresh(feature_names=("a", "b", "c"), feature_set_version="v", as_of=as_of) as r:
        for start in range(0, len(members), 50):
            store.online_write_batch(r, _batch(members[start : start + 50], value, as_of))
            time.sleep(pause)
    return r


def test_refresh_is_invisible_until_committed_and_atomic_for_readers(
    open_store: Callable[[], OnlineStore],
) -> None:
    members = [f"m{i:04d}" for i in range(400)]
    writer = open_store()
    assert writer.online_read(["m0000"]) == [None]
    assert writer.live_generation() is None
    _refresh(writer, members, 1.0)

    reader = open_store()
    seen: set[float] = set()
    torn: list[str] = []
    reads = 0
    stop = threading.Event()

    def read_forever() -> None:
        nonlocal reads
        while not stop.is_set():
            reads += 1
            vectors = reader.online_read(members)  # > one statement: one read transaction
            values = {v.features["a"] for v in vectors if v is not None}
            stamps = {v.as_of for v in vectors if v is not None}
            if len(values) != 1 or len(stamps) != 1 or any(v is None for v in vectors):
                torn.append(f"{values} {stamps}")
            seen.update(values)

    thread = threading.Thread(target=read_forever)
    thread.start()
    try:
        for value in (2.0, 3.0, 4.0):
            _refresh(writer, members, value, pause=0.01)
    finally:
        stop.set()
        thread.join()
    assert not torn
    assert reads > 3, "the reader should have overlapped the refreshes"
    assert seen <= {1.0, 2.0, 3.0, 4.0}
    assert {v.features["a"] for v in reader.online_read(members) if v} == {4.0}

    # While a refresh is being written, readers keep the live generation.
    as_of = datetime(2025, 1, 1, tzinfo=UTC)
    refresh = writer.begin_refresh(feature_names=("a", "b", "c"), feature_set_version="v", as_of=as_of)
    writer.online_write_batch(refresh, _batch(members, 9.0, as_of))
    assert reader.online_read(["m0001"])[0].features["a"] == 4.0  # type: ignore[union-attr]
    writer.commit_refresh(refresh)
    assert reader.online_read(["m0001"])[0].features["a"] == 9.0  # type: ignore[union-attr]
    info = reader.live_generation()
    assert info is not None and info.member_count == 400 and info.as_of == as_of
    writer.close()
    reader.close()


def test_aborted_refresh_keeps_the_live_generation_and_old_ones_are_dropped(tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path / "online.sqlite", keep_retired=1)
    members = ["m1", "m2", "m3"]
    first = _refresh(store, members, 1.0)
    with pytest.raises(RuntimeError, match="boom"):
        as_of = datetime(2024, 6, 1, tzinfo=UTC)
        with store.refresh(feature_names=("a", "b", "c"), feature_set_version="v", as_of=as_of) as r:
            store.online_write_batch(r, _batch(members, 7.0, as_of))
            raise RuntimeError("boom")
    assert store.online_read(["m2"])[0].features["a"] == 1.0  # type: ignore[union-attr]
    _refresh(store, members, 2.0)
    _refresh(store, members, 3.0)
    con = store._reader()
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    states = dict(con.execute("SELECT generation, state FROM feature_generations").fetchall())
    assert f"vectors_{first.generation}" not in tables
    assert sorted(states.values()) == ["aborted", "dropped", "live", "retired"]
    assert f"vectors_{max(states)}" in tables
    assert [v.member_id if v else None for v in store.online_read(["m3", "nobody", "m1"])] == [
        "m3",
        None,
        "m1",
    ]
    as_of = datetime.now(UTC)
    refresh = store.begin_refresh(feature_names=("a", "b", "c"), feature_set_version="v", as_of=as_of)
    wrong = FeatureBatch(
        member_ids=members, as_of=as_of, feature_names=("x", "y", "z"), values=np.zeros((3, 3))
    )
    with pytest.raises(ValueError, match="features differ"):
        store.online_write_batch(refresh, wrong)
    store.abort_refresh(refresh)
    with pytest.raises(ValueError, match="shape"):
        FeatureBatch(member_ids=members, as_of=as_of, feature_names=("a",), values=np.zeros((3, 3)))
    store.close()


def test_cli_materialize_and_get(
    world_dirs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events_dir, tables_dir = world_dirs
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "events").symlink_to(events_dir)
    (data_dir / "tables").symlink_to(tables_dir)
    monkeypatch.setenv("COOPSCORE_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        missing = runner.invoke(app, ["get", "m001", "--json"])
        assert missing.exit_code == 1
        assert json.loads(missing.output)["found"] is False

        done = runner.invoke(
            app, ["materialize", "--as-of", "2024-06-01T08:00:00", "--threads", "1", "--json"]
        )
        assert done.exit_code == 0, done.output
        report = json.loads(done.output)
        assert report["members"] == 40
        assert report["as_of"] == "2024-06-01T08:00:00+00:00"
        assert report["feature_set_version"] == REGISTRY.version

        got = runner.invoke(app, ["get", "m001", "--json"])
        assert got.exit_code == 0, got.output
        vector = json.loads(got.output)
        assert vector["as_of"] == report["as_of"]
        assert set(vector["features"]) == {f.name for f in REGISTRY.member_features}
        spine = member_spine(["m001"], datetime(2024, 6, 1, 8, tzinfo=UTC))
        offline = build_features(spine, events_dir=events_dir, tables_dir=tables_dir, engine=ENGINE)
        for name, value in vector["features"].items():
            expected = float(offline.iloc[0][name])
            assert (value is None and math.isnan(expected)) or value == pytest.approx(expected)

        table = runner.invoke(app, ["get", "m001"], env={"COLUMNS": "200"})
        assert table.exit_code == 0 and "delivery_amount_365d" in table.output
        assert isinstance(pd.Timestamp(report["as_of"]), pd.Timestamp)
    finally:
        get_settings.cache_clear()


def test_sqlite_and_redis_hold_the_same_vectors_after_one_materialization(
    world_dirs: tuple[Path, Path], tmp_path: Path, redis_url: str
) -> None:
    """Every feature of every member, bit for bit (NaN included), as of two materialization times."""
    events_dir, tables_dir = world_dirs
    sqlite_store = SqliteOnlineStore(tmp_path / "online.sqlite")
    redis_store = RedisOnlineStore(redis_url)
    members = [f"m{i:03d}" for i in range(40)]
    compared = 0
    nans = 0
    try:
        for as_of in (AS_OF, AS_OF + timedelta(days=45, seconds=1)):
            reports = [
                materialize(events_dir=events_dir, tables_dir=tables_dir, store=s, as_of=as_of, engine=ENGINE)
                for s in (sqlite_store, redis_store)
            ]
            assert reports[0].members == reports[1].members == 40
            left = sqlite_store.online_read(members)
            right = redis_store.online_read(members)
            for a, b in zip(left, right, strict=True):
                assert a is not None and b is not None
                assert (a.member_id, a.as_of, a.feature_set_version) == (
                    b.member_id,
                    b.as_of,
                    b.feature_set_version,
                )
                assert a.as_of == as_of
                assert list(a.features) == list(b.features)
                for name, value in a.features.items():
                    other = b.features[name]
                    assert type(value) is type(other) is float
                    assert np.float64(value).tobytes() == np.float64(other).tobytes(), (a.member_id, name)
                    compared += 1
                    nans += math.isnan(value)
            live = [s.live_generation() for s in (sqlite_store, redis_store)]
            assert live[0] is not None and live[1] is not None
            assert live[0].member_count == live[1].member_count == 40
            assert live[0].feature_names == live[1].feature_names
            assert live[0].as_of == live[1].as_of == as_of
        assert sorted(redis_store.member_ids(100)) == sorted(sqlite_store.member_ids(100)) == members
    finally:
        sqlite_store.close()
        redis_store.close()
    features = len(REGISTRY.member_features)
    assert compared == 40 * 2 * features
    assert nans > 0, "the world should exercise undefined (NaN) features too"
    print(f"parity: 40 members x 2 as-of dates x {features} features = {compared} values ({nans} NaN)")
