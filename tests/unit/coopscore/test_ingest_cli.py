"""`coopscore ingest`: exit codes (0 read, 4 some files failed, 2 usage, 1 internal), output, options."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from coopscore.cli import app
from coopscore.settings import get_settings
from tests.utils.bad_files import truncated_copy, write_parquet
from tests.utils.feeds import event_row, varied_rows, write_csv


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("COOPSCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def _ingest(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["ingest", *args])
    return result.exit_code, result.stdout, result.stderr


def _ingest_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = _ingest(*args, "--json")
    payload: dict[str, Any] = json.loads(out)
    return code, payload


def test_quarantined_rows_are_normal_and_exit_0(data_dir: Path, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "events" / "a.csv", [event_row(event_id="ok"), event_row(event_id="bad", amount_cny="x")]
    )
    code, report = _ingest_json(str(path))
    assert code == 0
    assert report["files"] == {"stored": 0, "stored with quarantined rows": 1, "empty": 0, "failed": 0}
    [source] = report["sources"]
    assert (source["status"], source["accepted"], source["quarantined"], source["reason"]) == (
        "stored with quarantined rows",
        1,
        1,
        None,
    )


def test_a_failed_file_exits_4_and_is_named_while_the_others_are_stored(
    data_dir: Path, tmp_path: Path
) -> None:
    exports = tmp_path / "exports" / "events"
    write_csv(exports / "good.csv", varied_rows(count=20))
    truncated_copy(
        write_parquet(tmp_path / "x.parquet", varied_rows(count=20, prefix="p")), exports / "cut.parquet"
    )
    code, report = _ingest_json(str(tmp_path / "exports"))
    assert code == 4
    statuses = {Path(s["source"]).name: (s["status"], s["accepted"]) for s in report["sources"]}
    assert statuses == {"good.csv": ("stored", 20), "cut.parquet": ("failed", 0)}
    failed = next(s for s in report["sources"] if s["status"] == "failed")
    assert failed["reason"].startswith("cut.parquet: ")

    code, out, err = _ingest(str(tmp_path / "exports"))
    assert code == 4
    assert "Traceback" not in out + err
    assert f"failed {exports / 'cut.parquet'}: " in err
    assert "1 file(s) failed" in err


def test_a_missing_path_or_an_unknown_encoding_is_a_usage_error(data_dir: Path, tmp_path: Path) -> None:
    code, _, err = _ingest(str(tmp_path / "nowhere"))
    assert code == 2 and "no such file or folder" in err
    path = write_csv(tmp_path / "events" / "a.csv", varied_rows(count=3))
    code, _, err = _ingest(str(path), "--encoding", "klingon-8")
    assert code == 2 and "unknown encoding" in err
    code, _ = _ingest_json(str(path), "--encoding", "gb18030", "--sheet", "Sheet1")
    assert code == 0


def test_an_internal_error_exits_1_with_a_message_and_a_traceback_only_with_debug(
    data_dir: Path, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "events" / "a.csv", varied_rows(count=30))
    data_dir.mkdir(parents=True)
    (data_dir / "events").write_text("a file where the event log's folder should be")
    code, out, err = _ingest(str(path))
    assert code == 1
    assert "internal error" in err and "--debug" in err
    assert "Traceback" not in out + err
    code, report = _ingest_json(str(path))
    assert code == 1 and report["error"].startswith("internal error: ")
    result = CliRunner().invoke(app, ["ingest", str(path), "--debug"])
    assert result.exit_code == 1
    assert result.exception is not None and not isinstance(result.exception, SystemExit)
