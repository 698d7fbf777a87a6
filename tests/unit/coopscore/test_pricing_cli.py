"""`coopscore pricing check` and `coopscore serve --pricing-policy`: a valid policy's version and
digest; a bad one refused with one line naming the field (exit 2), before any server starts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coopscore.cli.main import app
from coopscore.settings import get_settings
from models.pricing import DEFAULT_PRICING_POLICY, load_pricing_policy


@pytest.fixture(autouse=True)
def _own_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    # `serve --pricing-policy` sets COOPSCORE_PRICING_POLICY for its workers: undone after each test.
    monkeypatch.setenv("COOPSCORE_PRICING_POLICY", "")
    monkeypatch.setenv("COOPSCORE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _bad_policy(tmp_path: Path) -> Path:
    path = tmp_path / "pricing.yaml"
    text = DEFAULT_PRICING_POLICY.read_text(encoding="utf-8")
    path.write_text(text.replace("count_feature: green_verified_count_365d", "count_feature: green_count"))
    return path


def test_check_prints_the_version_and_digest_of_a_valid_policy(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["pricing", "check", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    default = load_pricing_policy()
    assert (summary["version"], summary["digest"]) == (default.version, default.digest)
    assert summary["policy"]["rate"]["lgd"] == default.policy.rate.lgd


@pytest.mark.parametrize("command", [["pricing", "check"], ["serve", "--port", "1", "--pricing-policy"]])
def test_a_bad_policy_is_one_line_naming_the_field_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    bad = _bad_policy(tmp_path)
    result = CliRunner().invoke(app, [*command, str(bad)])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"bad_input: pricing policy {bad.resolve() if command[0] == 'serve' else bad}: ")
    assert "green.count_feature: 'green_count' is not a feature of the catalogue" in line
