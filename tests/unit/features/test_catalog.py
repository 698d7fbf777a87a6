"""The feature declarations: coverage, validation, versioning, the shared application-feature
function, the engine-neutral SQL, the generated reference and the `coopscore features list` CLI."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from coopscore.cli.features import app
from features.catalog import (
    REASON_GROUPS,
    WINDOW_DAYS,
    Condition,
    Feature,
    FeatureRegistry,
    application_features,
    application_features_for_request,
    default_registry,
    render_feature_reference,
)
from features.contracts import EVENT_TYPES
from features.offline import compile_feature_sql

REPO = Path(__file__).resolve().parents[3]
REGISTRY = default_registry()

# Functions and keywords that DuckDB and Spark SQL both accept with the same meaning.
SHARED_CALLS = {
    "sum", "count", "avg", "min", "max", "cast", "coalesce", "nullif", "year", "month", "dayofyear",
    "hour", "minute", "second", "floor", "power",
    "bit_or", "bit_count", "row_number", "least", "greatest", "exists", "in", "filter", "over",
    "as", "and", "or", "not", "on", "join", "from", "select", "where", "when", "then", "else",
    "end", "case", "all",
}  # fmt: skip
DUCKDB_ONLY = [
    "::", "QUALIFY", "EXCLUDE", "EXCEPT", "read_parquet", "epoch", "list_", "struct_",
    "date_diff", "datediff", "strftime", "arg_max", "arg_min", "any_value", "ILIKE", "USING SAMPLE",
    "DISTINCT ON", "COLUMNS(", "make_timestamp", "hash(", "PIVOT", "ASOF",
]  # fmt: skip


def _template(**changes: object) -> dict[str, object]:
    base = REGISTRY.by_name["delivery_amount_90d"].model_dump()
    return {**base, **changes}


def test_registry_covers_the_issue_with_60_to_120_features() -> None:
    names = REGISTRY.names
    assert 60 <= len(names) <= 120
    assert len(set(names)) == len(names)
    assert {f.reason_group for f in REGISTRY.features} == {g for g, _, _ in REASON_GROUPS}
    sources = {s for f in REGISTRY.features for s in f.sources}
    assert set(EVENT_TYPES) <= sources
    assert {"applications", "outcomes", "request"} <= sources
    for required in (
        "delivery_amount_trend_90d",
        "delivery_months_365d",
        "input_credit_amount_365d",
        "savings_balance",
        "repayment_on_time_share_lifetime",
        "repayment_max_days_late_lifetime",
        "months_since_last_late_payment",
        "meeting_count_365d",
        "training_count_lifetime",
        "coop_tenure_months",
        "mobile_in_amount_90d",
        "green_verified_count_lifetime",
        "coop_past_default_rate",
        "village_past_default_rate",
        "coop_member_count",
        "event_count_365d",
        "history_months",
        "has_prior_loan",
        "application_amount_cny",
        "application_term_months",
        "application_amount_to_delivery_income_365d",
    ):
        assert required in REGISTRY.by_name, required
    assert {f.entity for f in REGISTRY.features} == {"member", "cooperative", "village"}


def test_every_feature_is_fully_described() -> None:
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for f in REGISTRY.features:
        assert f.direction in (-1, 0, 1)
        assert f.window_days in (*WINDOW_DAYS, None)
        assert cjk.search(f.description_zh), f.name
        assert f.description_en and not cjk.search(f.description_en), f.name
    assert REGISTRY.monotone_constraints()["repayment_late_count_365d"] == 1
    assert REGISTRY.monotone_constraints()["delivery_amount_365d"] == -1
    assert REGISTRY.group("late_repayment").label_zh == "逾期还款"


def test_declarations_are_frozen_and_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        Feature(**_template(windw_days=30))
    with pytest.raises(ValidationError):
        Condition(column="days_late", op="gt")  # needs a value
    feature = REGISTRY.features[0]
    with pytest.raises(ValidationError):
        feature.name = "renamed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sources": ("harvest_gossip",)}, "event types"),
        ({"window_days": 60}, "window"),
        ({"column": "loan_id"}, "not in"),
        ({"where": (Condition(column="grade", op="eq", value="A"),)}, "filter column"),
        ({"aggregation": "distinct_months", "column": None, "window_days": None}, "365"),
        ({"dtype": "int64"}, "yields"),
        ({"reason_group": "astrology"}, "reason group"),
        ({"name": "Delivery Amount"}, "snake_case"),
        ({"entity": "village"}, "describe the member"),
    ],
)
def test_invalid_declarations_fail_loudly(changes: dict[str, object], message: str) -> None:
    rogue = Feature(**_template(**{"name": "rogue", **changes}))
    with pytest.raises(ValueError, match=message):
        FeatureRegistry(features=(*REGISTRY.features, rogue), reason_groups=REGISTRY.reason_groups)


def test_derived_features_may_only_use_earlier_features() -> None:
    first, *rest = REGISTRY.features
    derived = Feature(
        **{
            **REGISTRY.by_name["delivery_grade_a_share_365d"].model_dump(),
            "inputs": ("delivery_grade_a_count_365d", "not_declared_yet"),
        }
    )
    with pytest.raises(ValueError, match="earlier member features"):
        FeatureRegistry(features=(first, derived), reason_groups=REGISTRY.reason_groups)
    assert rest


def test_feature_set_version_tracks_semantics_not_wording() -> None:
    assert REGISTRY.version == default_registry().version
    assert re.fullmatch(r"[0-9a-f]{16}", REGISTRY.version)

    def variant(**changes: object) -> FeatureRegistry:
        features = tuple(
            Feature(**{**f.model_dump(), **changes}) if f.name == "delivery_amount_90d" else f
            for f in REGISTRY.features
        )
        return FeatureRegistry(
            features=features, reason_groups=REGISTRY.reason_groups, actions=REGISTRY.actions
        )

    assert variant(description_en="Produce sold, 90 days").version == REGISTRY.version
    # What recourse may do with a feature does not change what it computes.
    assert variant(levers=()).version == REGISTRY.version
    assert variant(direction=0).version != REGISTRY.version
    assert variant(window_days=180).version != REGISTRY.version


def test_application_features_are_one_function_for_batches_and_requests() -> None:
    member = {
        "delivery_amount_365d": np.array([12_000.0, 0.0, np.nan, 6_000.0]),
        "savings_balance": np.array([3_000.0, 500.0, 0.0, -10.0]),
    }
    amount = np.array([6_000.0, 1_000.0, 1_000.0, 3_000.0])
    term = np.array([12.0, 6.0, 12.0, 0.0])
    batch = application_features(member, amount_cny=amount, term_months=term)
    assert set(batch) == {f.name for f in REGISTRY.application_features}
    np.testing.assert_array_equal(batch["application_amount_cny"], amount)
    np.testing.assert_allclose(
        batch["application_amount_to_delivery_income_365d"], [0.5, np.nan, np.nan, 0.5]
    )
    np.testing.assert_allclose(
        batch["application_installment_to_monthly_income"], [0.5, np.nan, np.nan, np.nan]
    )
    np.testing.assert_allclose(batch["application_amount_to_savings_balance"], [2.0, 2.0, np.nan, np.nan])
    for i in range(len(amount)):
        vector = {name: float(values[i]) for name, values in member.items()}
        one = application_features_for_request(vector, amount_cny=float(amount[i]), term_months=int(term[i]))
        for name, values in batch.items():
            assert one[name] == values[i] or (math.isnan(one[name]) and math.isnan(values[i]))
    missing = application_features_for_request(
        {"delivery_amount_365d": None, "savings_balance": None},  # type: ignore[dict-item]
        amount_cny=100.0,
        term_months=6,
    )
    assert math.isnan(missing["application_amount_to_delivery_income_365d"])


def test_generated_sql_stays_in_the_dialect_duckdb_and_spark_share() -> None:
    for dedupe in ((), EVENT_TYPES):
        sql = compile_feature_sql(REGISTRY, deduplicate=dedupe)
        assert sql == compile_feature_sql(REGISTRY, deduplicate=dedupe)  # deterministic
        calls = {m.lower() for m in re.findall(r"([A-Za-z_]+)\s*\(", sql)}
        assert calls <= SHARED_CALLS, calls - SHARED_CALLS
        for construct in DUCKDB_ONLY:
            assert construct.lower() not in sql.lower(), construct
        assert "INTERVAL '30' DAY" in sql


def test_docs_reference_is_generated_from_the_declarations() -> None:
    text = (REPO / "docs" / "features.md").read_text(encoding="utf-8")
    assert text == render_feature_reference(REGISTRY), (
        "docs/features.md is stale: coopscore features list --markdown > docs/features.md"
    )
    for f in REGISTRY.features:
        assert f"`{f.name}`" in text


def test_cli_list_prints_the_registry() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["count"] == len(REGISTRY.features)
    assert payload["feature_set_version"] == REGISTRY.version
    first = payload["features"][0]
    assert {"name", "window", "direction", "reason_group", "description_zh", "description_en"} <= set(first)
    table = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    assert "delivery_amount_90d" in table.output
    assert runner.invoke(app, ["list", "--markdown"]).output == render_feature_reference(REGISTRY)
