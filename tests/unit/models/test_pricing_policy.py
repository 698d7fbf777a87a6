"""The pricing policy file: the default one is valid, its digest follows the content (not the format),
and a bad file is refused with one line naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from models.pricing import DEFAULT_PRICING_POLICY, PricingPolicyError, load_pricing_policy


def _default() -> dict[str, object]:
    raw = yaml.safe_load(DEFAULT_PRICING_POLICY.read_text(encoding="utf-8"))
    assert isinstance(raw, dict)
    return raw


def test_the_default_policy_is_valid_and_names_catalogue_features() -> None:
    loaded = load_pricing_policy()
    assert loaded.source == str(DEFAULT_PRICING_POLICY)
    assert loaded.version == _default()["version"] and len(loaded.digest) == 64
    assert loaded.policy.green.count_feature == "green_verified_count_365d"
    assert [s.feature for s in loaded.policy.affordability.income] == [
        "delivery_amount_365d",
        "mobile_in_amount_365d",
    ]


def test_the_digest_follows_the_content_not_the_format(tmp_path: Path) -> None:
    as_json = tmp_path / "policy.json"
    as_json.write_text(json.dumps(_default(), ensure_ascii=False, indent=2), encoding="utf-8")
    assert load_pricing_policy(as_json).digest == load_pricing_policy().digest
    changed = _default()
    changed["rate"] = {**changed["rate"], "margin_bps": 101}  # type: ignore[dict-item]
    as_json.write_text(json.dumps(changed), encoding="utf-8")
    assert load_pricing_policy(as_json).digest != load_pricing_policy().digest


def _with(section: str, **values: object) -> dict[str, object]:
    raw = _default()
    raw[section] = {**raw[section], **values}  # type: ignore[dict-item]
    return raw


@pytest.mark.parametrize(
    ("raw", "field", "problem"),
    [
        (_with("rate", margin_bp=100), "rate.margin_bp", "unknown field"),
        (_with("rate", floor_bps=2_000), "rate", "floor_bps 2000 is above cap_bps 1800"),
        (_with("rate", lgd=1.5), "rate.lgd", "less than or equal to 1"),
        (
            _with("product", min_amount_cny=500_000),
            "product",
            "min_amount_cny 500000 is above max_amount_cny",
        ),
        (
            _with("affordability", income=[{"feature": "delivery_amount_356d", "share": 0.7}]),
            "affordability.income.0.feature",
            "not a feature of the catalogue",
        ),
        (
            _with("affordability", income=[{"feature": "delivery_count_365d", "share": 0.7}]),
            "affordability.income.0.feature",
            "not an amount over a recent window",
        ),
        (
            _with(
                "affordability",
                pd_bands=[
                    {"up_to_pd": 0.1, "limit_multiplier": 0.5},
                    {"up_to_pd": 1.0, "limit_multiplier": 0.8},
                ],
            ),
            "affordability.pd_bands",
            "a riskier applicant never gets a larger limit",
        ),
        (
            _with("affordability", pd_bands=[{"up_to_pd": 0.5, "limit_multiplier": 0.5}]),
            "affordability.pd_bands",
            "must reach up_to_pd 1",
        ),
        (
            _with("green", count_feature="green_practice_count_365d"),
            "green.count_feature",
            "does not count verified",
        ),
        ({**_default(), "version": 2026.1}, "version", "valid string"),
        ({k: v for k, v in _default().items() if k != "green"}, "green", "Field required"),
    ],
)
def test_a_bad_policy_fails_with_one_line_naming_the_field(
    tmp_path: Path, raw: dict[str, object], field: str, problem: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PricingPolicyError) as caught:
        load_pricing_policy(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"pricing policy {path}: {field}: ")
    assert problem in message


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("policy.yaml", "version: x\nproduct: [1, 2\n", "not valid YAML at line 3"),
        ("policy.json", '{"version": "x",}', "not valid JSON at line 1, column 17"),
        ("policy.toml", "version = 'x'", "name a .yaml, .yml or .json file"),
        ("policy.yaml", "- just\n- a list\n", "expected a mapping of fields"),
    ],
)
def test_an_unreadable_policy_fails_with_one_line(tmp_path: Path, name: str, text: str, problem: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PricingPolicyError, match=problem) as caught:
        load_pricing_policy(path)
    assert "\n" not in str(caught.value)
    with pytest.raises(PricingPolicyError, match="no such file"):
        load_pricing_policy(tmp_path / "missing.yaml")
