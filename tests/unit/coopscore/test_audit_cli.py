"""`coopscore audit fairness` on a table of decisions through the real CLI: exit 0 when no group
breaks a threshold, 3 when one does, 2 with a message for bad input; `--json` prints the stored audit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coopscore.cli import app
from coopscore.settings import get_settings


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("COOPSCORE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _decisions(path: Path, gap: float, n: int = 4000, seed: int = 0) -> Path:
    """Decisions for two groups; group b's PD is raised by `gap` (0: no gap)."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b"], n, p=[0.55, 0.45])
    pd_ = np.clip(rng.beta(2, 18, n) + np.where(group == "b", gap, 0.0), 0, 1)
    defaulted = (rng.random(n) < pd_).astype(float)
    decision = np.where(pd_ <= 0.08, "approve", np.where(pd_ >= 0.2, "decline", "review"))
    frame = pd.DataFrame(
        {"pd": pd_, "decision": decision, "defaulted": defaulted, "group": group, "village": group}
    )
    frame.to_csv(path, index=False)
    return path


def _audit(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["audit", "fairness", *args])
    return result.exit_code, result.stdout, result.stderr


def test_no_gap_passes_and_json_is_the_stored_audit(env: Path) -> None:
    data = _decisions(env / "fair.csv", gap=0.0)
    code, out, _ = _audit("--data", str(data), "--protected", "group", "--n-boot", "0", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["passed"] is True
    assert payload["n"] == 4000
    assert set(payload["attributes"]) == {"group"}
    directory = Path(payload["outputs"]["directory"])
    assert directory.parent == env / "data" / "audits"
    assert Path(payload["outputs"]["report"]).is_file()
    assert json.loads((directory / "audit.json").read_text())["n"] == 4000


def test_a_gap_is_flagged_with_exit_3_and_proxies_scanned(env: Path) -> None:
    data = _decisions(env / "unfair.csv", gap=0.12)
    code, out, _ = _audit("--data", str(data), "--protected", "group", "--n-boot", "0", "--json")
    payload = json.loads(out)
    assert code == 3 and payload["passed"] is False and payload["flags"]
    proxies = payload["explanations"]["group"]["proxies"]
    assert proxies[0]["feature"] == "village"  # the one other column is a perfect proxy


def test_bad_input_exits_2_with_a_message(env: Path) -> None:
    data = _decisions(env / "d.csv", gap=0.0)
    code, _, err = _audit("--data", str(env / "nope.csv"), "--protected", "group")
    assert code == 2 and "no such file" in err
    code, _, err = _audit("--data", str(data))
    assert code == 2 and "give --protected COL (one or more) or --profiles FILE" in err
    code, _, err = _audit("--data", str(data), "--protected", "county")
    assert code == 2 and "--protected column 'county' is not in the data" in err
    code, _, err = _audit("--data", str(data), "--protected", "group", "--score-col", "score")
    assert code == 2 and "columns missing from" in err and "'score'" in err
    code, _, err = _audit("--data", "oot")
    assert code == 2 and "--data oot needs --model" in err
    code, _, err = _audit("--data", "decision-log", "--protected", "group")
    assert code == 2 and "no decision log at" in err
    (env / "table.xml").write_text("<x/>")
    code, _, err = _audit("--data", str(env / "table.xml"), "--protected", "group")
    assert code == 2 and "expected .parquet, .csv or .json(l)" in err


def test_the_console_shows_proxy_strength_and_direction_and_protected_inputs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from coopscore.cli.audit import _print_audit

    payload = {
        "passed": False,
        "n": 10,
        "n_labelled": 10,
        "min_group_size": 1,
        "attributes": {},
        "flags": [],
        "warnings": ["age is a protected attribute AND a model input (--protected-input): ..."],
        "explanations": {
            "gender": {
                "proxies": [
                    {
                        "feature": "leave_days",
                        "attribute": "gender",
                        "group": "female",
                        "auc": 0.0,
                        "strength": 1.0,
                        "describe": "lower values → female",
                    }
                ]
            }
        },
        "outputs": {"report": "r.html"},
    }
    _print_audit(payload)
    out = capsys.readouterr().out
    assert "warning: age is a protected attribute AND a model input" in out
    assert "leave_days: lower values → female (strength 1.00, AUC 0.00)" in out
