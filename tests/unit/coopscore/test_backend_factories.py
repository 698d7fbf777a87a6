"""Backends chosen by configuration: the online store and decision log factories read `Settings`,
default to SQLite under data_dir, honour sqlite:///PATH, and refuse other schemes in one line that
names the setting."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from coopscore.settings import Settings, UnsupportedBackendError
from decisions.factory import decision_log_reader, decision_log_writer
from features.online.base import FeatureBatch
from features.online.factory import online_store


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)  # type: ignore[call-arg, arg-type]


def test_defaults_are_sqlite_files_under_data_dir(tmp_path: Path) -> None:
    configured = settings(tmp_path)
    assert configured.online_store_path == tmp_path / "data" / "online" / "features.sqlite"
    assert configured.decision_log_path == tmp_path / "data" / "decisions.sqlite"


def test_sqlite_urls_name_the_file_relative_or_absolute(tmp_path: Path) -> None:
    configured = settings(tmp_path, online_store=f"sqlite:///{tmp_path}/o.db", decision_log="sqlite:///d.db")
    assert configured.online_store_path == tmp_path / "o.db"
    assert configured.decision_log_path == Path("d.db")


def test_the_online_store_factory_opens_the_configured_file_and_lists_members(tmp_path: Path) -> None:
    configured = settings(tmp_path, online_store=f"sqlite:///{tmp_path}/elsewhere/o.db")
    names = ("a", "b")
    as_of = datetime(2026, 3, 1, tzinfo=UTC)
    with online_store(configured) as store:
        assert store.member_ids(limit=5) == []
        with store.refresh(feature_names=names, feature_set_version="v1", as_of=as_of) as refresh:
            values = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
            store.online_write_batch(refresh, FeatureBatch(["m2", "m1", "m3"], as_of, names, values))
        assert sorted(store.member_ids(limit=5)) == ["m1", "m2", "m3"]
        assert len(store.member_ids(limit=2)) == 2
    assert (tmp_path / "elsewhere" / "o.db").is_file()


def test_the_decision_log_factories_share_one_file(tmp_path: Path) -> None:
    configured = settings(tmp_path)
    with pytest.raises(FileNotFoundError, match="no decision log"):
        decision_log_reader(configured)
    writer = decision_log_writer(configured)
    writer.add_outcomes([("app-1", False, datetime(2026, 1, 1, tzinfo=UTC))])
    with decision_log_reader(configured) as reader:
        assert reader.outcome_rows() == {"app-1": 0}
    writer.close()
    assert configured.decision_log_path.is_file()


@pytest.mark.parametrize(
    ("field", "variable", "url"),
    [
        ("online_store", "COOPSCORE_ONLINE_STORE", "memcached://:s3cret@localhost:11211"),
        ("decision_log", "COOPSCORE_DECISION_LOG", "postgresql://db/coopscore"),
    ],
)
def test_an_unsupported_scheme_is_one_line_naming_the_setting(
    tmp_path: Path, field: str, variable: str, url: str
) -> None:
    configured = settings(tmp_path, **{field: url})
    openers: dict[str, list[Callable[[Settings], object]]] = {
        "online_store": [online_store],
        "decision_log": [decision_log_writer, decision_log_reader],
    }
    for opener in openers[field]:
        with pytest.raises(UnsupportedBackendError) as caught:
            opener(configured)
        message = str(caught.value)
        assert "\n" not in message and variable in message and "not supported yet" in message
    assert not (tmp_path / "data").exists()  # refused before creating anything


def test_a_value_that_is_not_a_url_is_refused_naming_the_setting(tmp_path: Path) -> None:
    configured = settings(tmp_path, online_store="features.sqlite")
    with pytest.raises(UnsupportedBackendError, match=re.escape("COOPSCORE_ONLINE_STORE='features.sqlite'")):
        online_store(configured)
