"""The CLI's shared output helpers and its layering: stdout JSON stays strict, `fail` exits with its
code, `coopscore.settings` pulls in no upper layer, and the CLI defers heavy imports to its commands."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import typer

from coopscore.cli.output import emit, fail

UPPER_LAYERS = ("coopscore.cli", "serving", "training", "monitoring", "features", "models")


def test_emit_prints_one_strict_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    emit({"auc": math.nan, "nested": {"x": [1.5, math.inf]}, "name": "合作社", "path": object})
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out, parse_constant=lambda token: pytest.fail(f"non-JSON token {token}")) == {
        "auc": None,
        "nested": {"x": [1.5, None]},
        "name": "合作社",
        "path": str(object),
    }


def test_fail_prints_and_exits_with_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as caught:
        fail("no such file: x.csv")
    assert caught.value.exit_code == 2
    with pytest.raises(typer.Exit) as caught:
        fail("too few rows", 5, label="insufficient_data", payload={"status": "insufficient_data"})
    assert caught.value.exit_code == 5
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"status": "insufficient_data"}
    assert "no such file: x.csv" in captured.err and "insufficient_data: too few rows" in captured.err


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_settings_pull_in_no_upper_layer() -> None:
    loaded = _loaded_after("import coopscore.settings")
    assert [m for m in loaded if m.startswith(UPPER_LAYERS)] == []


def test_the_cli_defers_heavy_imports_to_its_commands() -> None:
    loaded = _loaded_after("import coopscore.cli")
    heavy = ("pandas", "numpy", "duckdb", "lightgbm", "mlflow", "serving", "training", "features", "models")
    assert [m for m in loaded if m.split(".")[0] in heavy] == []
