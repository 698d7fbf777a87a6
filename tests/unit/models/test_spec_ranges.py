"""A table model's spec keeps what training saw of each column (ranges, missingness), and specs written
before those facts existed still load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from features.catalog import default_registry
from models.spec import ModelSpec, spec_for_table, spec_from_registry
from simulator.lender_table import lender_table
from tests.utils.tables import LENDER_TABLE_OPTIONS
from training.datasets import table_training_set


def test_table_spec_round_trips_ranges_and_missingness() -> None:
    spec = spec_for_table(
        ["age", "income", "crop"],
        categories={"crop": ["rice", "tea"]},
        ranges={"age": (22, 65), "income": (800.0, 9100.5)},
        with_missing=["income"],
    )
    age, income, crop = spec.features
    assert age.value_range == (22.0, 65.0) and age.missing_seen is False
    assert income.value_range == (800.0, 9100.5) and income.missing_seen is True
    assert crop.value_range is None and crop.missing_seen is False and crop.categories == ("rice", "tea")
    again = ModelSpec.from_dict(json.loads(spec.to_json()))
    assert again == spec


def test_a_spec_written_before_ranges_existed_loads_with_them_unknown() -> None:
    old = {
        "schema_version": 1,
        "source": "table",
        "feature_set_version": "abc",
        "reason_groups": [{"name": "age", "label_zh": "age", "label_en": "age"}],
        "features": [
            {
                "name": "age",
                "kind": "numeric",
                "direction": 0,
                "reason_group": "age",
                "description_zh": "age",
                "description_en": "age",
                "categories": [],
            }
        ],
        "extra": {},
    }
    spec = ModelSpec.from_dict(old)
    assert spec.features[0].value_range is None and spec.features[0].missing_seen is None
    # Unknown facts are not written back: the JSON is the old JSON.
    assert json.loads(spec.to_json()) == old


def test_catalog_specs_carry_no_table_facts() -> None:
    features = json.loads(spec_from_registry(default_registry()).to_json())["features"]
    assert not any("value_range" in f or "missing_seen" in f for f in features)


def test_bad_ranges_are_refused() -> None:
    with pytest.raises(KeyError, match="ranges for unknown columns"):
        spec_for_table(["age"], ranges={"agee": (1, 2)})
    with pytest.raises(KeyError, match="with_missing for unknown columns"):
        spec_for_table(["age"], with_missing=["agee"])
    with pytest.raises(ValueError, match="min <= max"):
        spec_for_table(["age"], ranges={"age": (3, 2)})
    with pytest.raises(ValueError, match="only a numeric input"):
        spec_for_table(["crop"], categories={"crop": ["a"]}, ranges={"crop": (0, 1)})
    with pytest.raises(ValueError, match="min <= max"):
        spec_for_table(["age"], ranges={"age": (0, math.inf)})


def test_training_on_a_table_records_each_columns_range_and_missingness(tmp_path: Path) -> None:
    table = lender_table(1200, seed=4)
    path = tmp_path / "applications.csv"
    table.to_csv(path, index=False)
    training_set = table_training_set(
        path, **LENDER_TABLE_OPTIONS, id_column="application_id", protected=("gender",)
    )
    spec = training_set.spec
    assert spec.names == ["age", "monthly_income", "land_mu", "late_payments", "loan_amount", "crop"]
    used = training_set.features
    for feature in spec.features:
        column = used[feature.name]
        assert feature.missing_seen is bool(column.isna().any())
        if feature.kind == "numeric":
            assert feature.value_range == (float(column.min()), float(column.max()))
        else:
            assert feature.value_range is None
    # The generator blanks some incomes and land areas, never an age or a crop.
    assert spec.by_name["monthly_income"].missing_seen and spec.by_name["land_mu"].missing_seen
    assert spec.by_name["age"].missing_seen is False and spec.by_name["crop"].missing_seen is False
    assert spec.by_name["crop"].categories == ("hogs", "maize", "rice", "tea")
    # The ranges are those of the rows used for training (rows without a label or time left out).
    assert len(used) < len(table)
    assert ModelSpec.from_dict(json.loads(spec.to_json())) == spec
