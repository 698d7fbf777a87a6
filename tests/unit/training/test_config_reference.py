"""The `--config` format: documented field by field (docs/config.md cannot go stale), read from JSON
or YAML, and overridden by the policy-target flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training.config import TrainingConfig, config_reference, config_reference_markdown
from training.job_setup import training_config

DOCS = Path(__file__).resolve().parents[3] / "docs" / "config.md"


def _leaves(data: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += _leaves(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def test_docs_config_md_is_the_generated_reference_and_lists_every_field() -> None:
    assert DOCS.read_text(encoding="utf-8") == config_reference_markdown(), (
        "docs/config.md is stale: coopscore train --print-config --markdown > docs/config.md"
    )
    fields = _leaves(TrainingConfig().model_dump())
    assert [row["field"] for row in config_reference()] == fields
    text = DOCS.read_text(encoding="utf-8")
    for name in fields:
        assert f"| `{name}` |" in text, name
    assert all(row["description"] for row in config_reference()), "a field without a description"


def test_yaml_and_json_configs_read_the_same(tmp_path: Path) -> None:
    data = {
        "policy": {"mode": "target_approval_rate", "target_approval_rate": 0.6},
        "splits": {"oot_months": 4},
    }
    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps(data))
    as_yaml = tmp_path / "c.yaml"
    as_yaml.write_text(
        "policy:\n  mode: target_approval_rate\n  target_approval_rate: 0.6\nsplits:\n  oot_months: 4\n"
    )
    assert training_config(as_yaml) == training_config(as_json)
    assert training_config(as_yaml).policy.target_approval_rate == 0.6
    bad = tmp_path / "bad.yml"
    bad.write_text("policy:\n  mode: target_approval_rate\n")  # no target given for its mode
    with pytest.raises(ValueError, match="target_approval_rate is set exactly when mode"):
        training_config(bad)


def test_target_flags_set_the_policy_mode() -> None:
    config = training_config(None, target_bad_rate=0.08, review_band=0.1)
    assert config.policy.mode == "target_bad_rate" and config.target_bad_rate == 0.08
    assert config.policy.review_band == 0.1
    config = training_config(None, target_approval_rate=0.55)
    assert config.policy.mode == "target_approval_rate" and config.policy.target_approval_rate == 0.55
    with pytest.raises(ValueError, match="mutually exclusive"):
        training_config(None, target_bad_rate=0.08, target_approval_rate=0.5)
    assert training_config(None, source="table").policy.mode == "target_bad_rate"
    assert training_config(None, source="event_log").policy.mode == "fixed"
