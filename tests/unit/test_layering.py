"""The packages the layout issue split out stay below the layers that use them: importing the
simulator or the decision log pulls in none of serving, training, models or monitoring."""

from __future__ import annotations

import subprocess
import sys

import pytest

UPPER = ("serving", "training", "models", "monitoring")


@pytest.mark.parametrize(
    ("modules", "allowed_features"),
    [
        (("simulator.world", "simulator.scenarios"), {"features", "features.contracts"}),
        (("decisions.factory", "decisions.sqlite", "decisions.base"), set()),
    ],
)
def test_a_split_out_package_imports_no_upper_layer(
    modules: tuple[str, ...], allowed_features: set[str]
) -> None:
    script = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    tops = {name.split(".")[0] for name in loaded}
    assert not tops & set(UPPER), sorted(tops & set(UPPER))
    features = {name for name in loaded if name == "features" or name.startswith("features.")}
    assert features <= allowed_features, sorted(features - allowed_features)


def test_the_layering_contract_holds() -> None:
    """`lint-imports` checks the contracts in pyproject.toml: arrows point down the layers only."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=root,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout
