"""`coopscore train --table` refuses awkward input in one line with exit 2, and internal errors are
one line with exit 1 unless `coopscore --debug` asks for the traceback."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from coopscore.cli import app
from coopscore.cli import train as train_cli
from coopscore.cli.output import debug_enabled, set_debug
from simulator.lender_table import write_lender_table


@pytest.fixture(autouse=True)
def no_debug() -> Iterator[None]:
    set_debug(False)
    yield
    set_debug(False)


@pytest.fixture
def table(tmp_path: Path) -> Path:
    return write_lender_table(tmp_path / "loans.csv", 300, seed=2)


def _train(table: Path, *extra: str) -> tuple[int, dict[str, object], str]:
    result = CliRunner().invoke(app, ["train", "--table", str(table), *extra, "--json"])
    return result.exit_code, json.loads(result.stdout), result.stderr


def test_a_wrong_column_name_is_one_line_with_close_matches(table: Path) -> None:
    code, payload, err = _train(table, "--label", "outcom", "--time", "applied_on")
    assert code == 2 and payload["status"] == "bad_input"
    assert "did you mean 'outcome'" in str(payload["message"])
    assert err.strip().count("\n") == 0 and "Traceback" not in err


def test_day_first_dates_text_label_and_a_third_label_value_each_stop_with_exit_2(table: Path) -> None:
    code, payload, _ = _train(table, "--label", "outcome", "--time", "applied_on")
    assert code == 2 and "values seen: 'default', 'pending', 'repaid'" in str(payload["message"])
    code, payload, _ = _train(table, "--label", "outcome", "--time", "applied_on", "--bad-value", "default")
    assert code == 2 and "--good-value" in str(payload["message"])
    code, payload, _ = _train(
        table,
        "--label",
        "outcome",
        "--time",
        "applied_on",
        "--bad-value",
        "default",
        "--good-value",
        "repaid",
    )
    assert code == 2 and "could not be parsed" in str(payload["message"])


def test_protected_columns_that_cannot_be_grouped_stop_with_exit_2(table: Path) -> None:
    label = ("--label", "outcome", "--time", "applied_on", "--time-format", "%d/%m/%Y")
    label += ("--bad-value", "default", "--good-value", "repaid")
    code, payload, _ = _train(table, *label, "--protected", "monthly_income")
    assert code == 2 and "pass --band monthly_income:" in str(payload["message"])
    code, payload, _ = _train(table, *label, "--protected", "gender", "--band", "age:25,40")
    assert code == 2 and "--band age: not a protected column" in str(payload["message"])
    result = CliRunner().invoke(app, ["train", "--table", str(table), *label, "--band", "age=25"])
    assert result.exit_code == 2 and "COLUMN:CUT,CUT" in result.output


def test_table_options_need_a_table() -> None:
    result = CliRunner().invoke(app, ["train", "--bad-value", "yes"])
    assert result.exit_code == 2 and "need --table" in result.output


def test_root_help_documents_debug_and_exit_codes() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert "--debug" in result.output and "Exit codes" in result.output
    assert "--time-format" in CliRunner().invoke(app, ["train", "--help"]).output
    CliRunner().invoke(app, ["--debug", "models", "--help"])
    assert debug_enabled()


def test_an_internal_error_is_one_line_without_debug(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as caught:
        train_cli._handle(RuntimeError("disk\nfull"), as_json=False)
    assert caught.value.exit_code == 1
    err = capsys.readouterr().err
    assert "RuntimeError: disk full" in err and "--debug" in err and "Traceback" not in err


def test_main_hides_the_traceback_unless_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    cli_main = importlib.import_module("coopscore.cli.main")  # the module, not the `main` function
    monkeypatch.setattr(cli_main, "app", broken)
    monkeypatch.setattr("sys.argv", ["coopscore", "train"])
    with pytest.raises(SystemExit) as caught:
        cli_main.main()
    assert caught.value.code == 1
    assert "RuntimeError: boom (run `coopscore --debug train ...`" in capsys.readouterr().err
    set_debug(True)
    with pytest.raises(RuntimeError, match="boom"):
        cli_main.main()
