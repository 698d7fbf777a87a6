"""The alarm rule, data-quality checks, stored outputs and the functions serving reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import DriftPolicy, compute_drift, drift_gauges, monitored_columns
from monitoring.evidently_report import evidently_drift_report
from monitoring.monitor import (
    InsufficientWindowError,
    latest_drift_gauges,
    latest_drift_report_path,
    latest_drift_summary,
    run_drift_check,
)
from monitoring.performance import auc, cohort_performance
from monitoring.psi import ReferenceProfile
from monitoring.quality import QualityRule, check_feature, exceedance_p_value
from monitoring.sources import (
    Reference,
    current_from_decision_log,
    growing_features,
    match_reference_to_window,
    parse_window,
    registry_model_uri,
    shared_features,
)
from tests.utils.drift import feature_rows


def test_monitored_columns_skip_keys_scores_and_segments() -> None:
    frame = feature_rows(10, seed=1)
    assert monitored_columns(frame, "county_id") == [
        "delivery_amount_90d",
        "meeting_count_90d",
        "repayment_on_time_share_365d",
    ]


def test_samples_of_one_world_are_stable() -> None:
    summary = compute_drift(feature_rows(3_000, seed=1), feature_rows(1_500, seed=2), segment="county_id")
    assert summary.status == "stable", summary.reasons
    assert summary.reasons == ()
    assert {s.value for s in summary.segments} == {"county-01", "county-02"}


def test_a_shifted_feature_is_drift_and_tops_the_list() -> None:
    current = feature_rows(1_500, seed=2)
    current["meeting_count_90d"] = current["meeting_count_90d"] + 3
    summary = compute_drift(feature_rows(3_000, seed=1), current)
    assert summary.status == "drift"
    top = summary.top_features(1)[0]
    assert (top.name, top.band, top.supported, top.alarm) == ("meeting_count_90d", "shift", True, "drift")


def test_a_small_window_cannot_alarm_on_psi() -> None:
    current = feature_rows(60, seed=2)
    current["meeting_count_90d"] = current["meeting_count_90d"] + 1
    summary = compute_drift(feature_rows(3_000, seed=1), current)
    feature = next(f for f in summary.features if f.name == "meeting_count_90d")
    assert feature.band == "shift" and not feature.supported
    assert summary.insufficient_data
    assert summary.status == "stable"


def test_amounts_in_fen_for_a_few_percent_of_rows_are_a_quality_break() -> None:
    current = feature_rows(2_000, seed=2)
    fen = current.index[:60]  # one small cooperative, 3% of the window, exports in fen
    current.loc[fen, "delivery_amount_90d"] *= 100
    summary = compute_drift(feature_rows(4_000, seed=1), current)
    amount = next(f for f in summary.features if f.name == "delivery_amount_90d")
    assert amount.psi < 0.25  # PSI alone barely notices
    assert amount.quality is not None and "out_of_range" in amount.quality.issues
    assert summary.status == "drift"
    assert summary.top_features(1)[0].name == "delivery_amount_90d"


def test_a_missing_share_jump_is_a_quality_break_but_a_noisy_one_is_not() -> None:
    reference = feature_rows(4_000, seed=1)
    current = feature_rows(2_000, seed=2)
    current.loc[current.index[:100], "delivery_amount_90d"] = np.nan
    summary = compute_drift(reference, current)
    amount = next(f for f in summary.features if f.name == "delivery_amount_90d")
    assert amount.quality is not None and amount.quality.issues == ("missing_increase",)
    share = next(f for f in summary.features if f.name == "repayment_on_time_share_365d")
    assert share.quality is not None and share.quality.issues == ()  # often missing, within noise


def test_unseen_categories_and_new_segments() -> None:
    reference = feature_rows(3_000, seed=1)
    current = feature_rows(1_500, seed=2)
    current.loc[current.index[:80], "county_id"] = "county-09"
    summary = compute_drift(reference, current, segment="county_id")
    new = [s for s in summary.segments if s.new]
    assert [(s.value, s.status, s.n_current) for s in new] == [("county-09", "drift", 80)]
    assert summary.status == "drift"
    # As a feature column, the same change is an unseen category.
    summary = compute_drift(reference, current, features=["county_id"])
    quality = summary.features[0].quality
    assert quality is not None and quality.issues == ("unseen_categories",)


def test_ignored_features_are_reported_but_never_alarm() -> None:
    current = feature_rows(1_500, seed=2)
    current["meeting_count_90d"] = current["meeting_count_90d"] + 3
    policy = DriftPolicy(ignore=("meeting_count_90d",))
    summary = compute_drift(feature_rows(3_000, seed=1), current, policy=policy)
    assert summary.status == "stable"
    assert drift_gauges(summary.to_dict())["meeting_count_90d"] > 0.25


def test_score_and_pd_drift_count() -> None:
    current = feature_rows(1_500, seed=2)
    current["pd"] = current["pd"] * 3
    summary = compute_drift(feature_rows(3_000, seed=1), current)
    assert {f.name: f.alarm for f in summary.scores} == {"score": "none", "pd": "drift"}
    assert summary.status == "drift"


def test_missing_column_is_a_quality_issue() -> None:
    current = feature_rows(1_500, seed=2).drop(columns=["meeting_count_90d"])
    summary = compute_drift(feature_rows(3_000, seed=1), current)
    feature = next(f for f in summary.features if f.name == "meeting_count_90d")
    assert feature.quality is not None and feature.quality.issues == ("column_absent",)


def test_exceedance_probability_is_exact_for_small_cases() -> None:
    # 1 current row beyond the max of 1 reference row: 1/2; 2 of 2 beyond the max of 2: 1/6.
    assert exceedance_p_value(1, 1, 1) == pytest.approx(0.5)
    assert exceedance_p_value(2, 2, 2) == pytest.approx(1 / 6)
    assert exceedance_p_value(0, 10, 10) == 1.0


def test_out_of_range_needs_count_share_and_significance() -> None:
    profile = ReferenceProfile.fit(pd.DataFrame({"x": np.arange(1_000, dtype=float)})).features["x"]
    rule = QualityRule()
    few = pd.Series(np.r_[np.arange(990, dtype=float), np.full(9, 5_000.0)])
    assert check_feature(profile, few, len(few), rule).issues == ()
    many = pd.Series(np.r_[np.arange(980, dtype=float), np.full(20, 5_000.0)])
    assert check_feature(profile, many, len(many), rule).issues == ("out_of_range",)


def test_cohort_performance_by_month() -> None:
    rng = np.random.default_rng(3)
    n = 400
    pd_ = rng.uniform(0.01, 0.4, n)
    defaulted = pd.array(rng.random(n) < pd_, dtype="boolean")
    defaulted[300:] = pd.NA  # the newest cohort has no outcomes yet
    applied = pd.Series(pd.date_range("2025-01-01", periods=n, freq="12h", tz="UTC"), name="applied_at")
    rows = cohort_performance(pd.DataFrame({"applied_at": applied, "pd": pd_, "defaulted": defaulted}))
    assert [r["cohort"] for r in rows] == [
        "2025-01",
        "2025-02",
        "2025-03",
        "2025-04",
        "2025-05",
        "2025-06",
        "2025-07",
    ]
    first = rows[0]
    assert first["applications"] == first["outcomes"] == 62
    assert 0.5 < first["auc"] <= 1.0
    assert rows[-1]["outcomes"] == 0 and rows[-1]["auc"] is None
    assert rows[-1]["mean_pd"] == pytest.approx(
        float(np.mean(pd_[applied.dt.strftime("%Y-%m") == "2025-07"])), abs=1e-6
    )


def test_auc_by_ranks() -> None:
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert np.isnan(auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_current_from_decision_log_uses_the_callers_reader() -> None:
    calls = []

    def read_rows(since, until, last):
        calls.append((since, until, last))
        return [
            {"created_at": "2025-06-01T10:00:00+00:00", "pd": 0.1, "score": 640.0, "x": 1.5},
            {"created_at": "2025-06-02T10:00:00+00:00", "pd": 0.2, "score": 610.0, "x": None},
        ]

    since = datetime(2025, 5, 1, tzinfo=UTC)
    frame = current_from_decision_log(read_rows, since=since)
    assert calls == [(since, None, None)]
    assert frame["x"].dtype == np.float64 and np.isnan(frame["x"].iloc[1])
    assert str(frame["created_at"].dtype) == "datetime64[ns, UTC]"


def test_window_and_model_uri_parsing() -> None:
    assert parse_window("30d") == timedelta(days=30)
    assert parse_window("12h") == timedelta(hours=12)
    with pytest.raises(ValueError, match="30d"):
        parse_window("a month")
    assert registry_model_uri("champion", "coopscore-pd") == "models:/coopscore-pd@champion"
    assert registry_model_uri("3", "coopscore-pd") == "models:/coopscore-pd/3"


def test_a_stored_check_is_what_serving_reads_back(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert latest_drift_summary(data_dir) is None
    assert latest_drift_report_path(data_dir) is None
    current = feature_rows(1_500, seed=2)
    current["meeting_count_90d"] += 3
    first = run_drift_check(
        feature_rows(3_000, seed=1),
        feature_rows(1_500, seed=3),
        data_dir=data_dir,
        evidently=False,
        now=datetime(2025, 6, 1, tzinfo=UTC),
    )
    second = run_drift_check(
        feature_rows(3_000, seed=1),
        current,
        data_dir=data_dir,
        evidently=False,
        context={"window": "test"},
        now=datetime(2025, 7, 1, tzinfo=UTC),
    )
    assert (first.exit_code, second.exit_code) == (0, 3)
    summary = latest_drift_summary(data_dir)
    assert summary is not None and summary["status"] == "drift" and summary["window"] == "test"
    assert summary["top_features"][0]["name"] == "meeting_count_90d"
    report = latest_drift_report_path(data_dir)
    assert report == second.directory / "report.html"
    assert "meeting_count_90d" in report.read_text(encoding="utf-8")
    assert second.chart_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    profile = json.loads((second.directory / "reference_profile.json").read_text())
    assert ReferenceProfile.from_dict(profile).features.keys() == {
        "delivery_amount_90d",
        "meeting_count_90d",
        "repayment_on_time_share_365d",
    }
    gauges = latest_drift_gauges(data_dir)
    assert set(gauges) == {
        "delivery_amount_90d",
        "meeting_count_90d",
        "repayment_on_time_share_365d",
        "score",
        "pd",
    }
    assert gauges["meeting_count_90d"] > 0.25
    # A check still being written (no summary.json yet, or its hidden .partial folder) is not "latest".
    (data_dir / "monitoring" / "29990101T000000000000Z").mkdir()
    partial = data_dir / "monitoring" / ".29990102T000000000000Z.partial"
    partial.mkdir()
    (partial / "summary.json").write_text("{}")
    assert latest_drift_report_path(data_dir) == report


def test_the_evidently_report_covers_every_column_in_order_with_its_verdicts(tmp_path: Path) -> None:
    current = feature_rows(1_000, seed=2)
    current["meeting_count_90d"] += 3
    numeric = ["score", "pd", "meeting_count_90d", "delivery_amount_90d", "repayment_on_time_share_365d"]
    html = tmp_path / "evidently.html"
    found = evidently_drift_report(
        feature_rows(2_000, seed=1), current, numeric=numeric, categorical=["county_id"], html_path=html
    )
    assert list(found.column_scores) == [*numeric, "county_id"]
    assert found.column_scores["meeting_count_90d"] > 0.25
    # Drifted columns are Evidently's own test verdicts: PSI at or above the threshold (0.1).
    assert found.drifted_columns == sum(v >= 0.1 for v in found.column_scores.values()) >= 1
    assert found.drifted_share == found.drifted_columns / 6
    page = html.read_text(encoding="utf-8")
    assert all(name in page for name in found.column_scores)


def cooperative_rows(n: int, *, seed: int, cooperatives: int = 24, growth: float = 0.0) -> pd.DataFrame:
    """Applicants of `cooperatives` cooperatives: a member-level amount and the cooperative's own
    member count (one value per cooperative, `growth` members added to each since the reference)."""
    rng = np.random.default_rng(seed)
    coop = rng.integers(0, cooperatives, n)
    size = 40 + 25 * np.arange(cooperatives) + growth
    return pd.DataFrame(
        {
            "delivery_amount_90d": rng.lognormal(8.0, 0.8, n),
            "coop_member_count": size[coop] + rng.integers(0, 3, n) * (growth == 0),
        }
    )


def test_a_feature_shared_by_a_cooperative_is_judged_by_its_groups_not_its_rows() -> None:
    # Every cooperative gained a few members since the reference: all applicants of the largest
    # are beyond the reference maximum, and PSI over 24 values moves far. As rows that is a break;
    # as 24 cooperatives, one step of each is within what 24 observations can show.
    reference = cooperative_rows(3_000, seed=1)
    current = cooperative_rows(600, seed=2, growth=3)
    as_rows = compute_drift(reference, current)
    count = next(f for f in as_rows.features if f.name == "coop_member_count")
    assert count.alarm == "drift" and count.groups is None
    as_groups = compute_drift(reference, current, shared=["coop_member_count"])
    count = next(f for f in as_groups.features if f.name == "coop_member_count")
    assert count.groups == (24, 24) and not count.supported
    assert count.quality is not None and count.quality.issues == ()
    assert as_groups.status == "stable", as_groups.reasons


def test_a_shared_feature_still_alarms_when_most_groups_move_beyond_the_range() -> None:
    reference = cooperative_rows(3_000, seed=1, cooperatives=60)
    current = cooperative_rows(600, seed=2, cooperatives=60, growth=2_000)
    summary = compute_drift(reference, current, shared=["coop_member_count"])
    count = next(f for f in summary.features if f.name == "coop_member_count")
    assert count.supported and count.alarm == "drift"
    assert count.quality is not None and "out_of_range" in count.quality.issues


def test_artifact_columns_are_never_monitored() -> None:
    frame = feature_rows(10, seed=1).assign(_pd=0.1, _score=600.0, _applied_at=pd.Timestamp("2025-01-01"))
    assert not [c for c in monitored_columns(frame) if c.startswith("_")]


def test_the_evidently_report_skips_a_column_without_values_instead_of_failing(tmp_path: Path) -> None:
    current = feature_rows(500, seed=2)
    current["repayment_on_time_share_365d"] = np.nan  # a thin-file window: no repayment history
    found = evidently_drift_report(
        feature_rows(1_000, seed=1),
        current.drop(columns=["pd"]),
        numeric=["score", "pd", "meeting_count_90d", "repayment_on_time_share_365d"],
        html_path=tmp_path / "evidently.html",
    )
    assert found.skipped == ("pd", "repayment_on_time_share_365d")
    assert list(found.column_scores) == ["score", "meeting_count_90d"]


def test_a_window_below_min_rows_writes_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with pytest.raises(InsufficientWindowError, match="only 150 decisions"):
        run_drift_check(feature_rows(1_000, seed=1), feature_rows(150, seed=2), data_dir=data_dir)
    assert not (data_dir / "monitoring").exists()


def test_the_registry_says_which_features_are_shared_and_which_only_grow() -> None:
    names = ["savings_balance", "coop_member_count", "coop_past_default_rate", "village_past_outcome_count"]
    assert shared_features(names) == (
        "coop_member_count",
        "coop_past_default_rate",
        "village_past_outcome_count",
    )
    assert growing_features(names) == ("village_past_outcome_count",)


def seasonal_reference(days: int = 91, per_day: int = 10) -> Reference:
    """A quarter of applications whose 90-day delivery total follows the harvest (high in autumn)."""
    rng = np.random.default_rng(5)
    start = pd.Timestamp("2025-10-01", tz="UTC")
    applied = start + pd.to_timedelta(np.repeat(np.arange(days), per_day), unit="D")
    season = np.repeat(np.linspace(3.0, 1.0, days), per_day)  # the harvest fades over the quarter
    rows = pd.DataFrame(
        {"delivery_amount_90d": rng.lognormal(8.0 + season, 0.5), "applied_at": applied, "pd": 0.05}
    )
    return Reference(rows=rows, features=("delivery_amount_90d",), shared=(), label="test")


def test_a_window_of_one_materialization_is_compared_with_the_reference_rows_near_it() -> None:
    reference = seasonal_reference()
    as_of = pd.Series([pd.Timestamp("2025-12-20", tz="UTC")] * 300)
    rows = reference.rows
    current = rows.loc[rows["applied_at"] >= "2025-12-10"].sample(300, replace=True, random_state=1)
    whole = compute_drift(reference.rows, current, features=reference.features)
    assert whole.status == "drift"  # the late-quarter window against the harvest-heavy quarter
    matched, described = match_reference_to_window(reference, as_of, days=20)
    assert described is not None and described["narrowed"]
    assert matched.rows["applied_at"].min() >= pd.Timestamp("2025-11-30", tz="UTC")
    assert compute_drift(matched.rows, current, features=reference.features).status != "drift"


def test_reference_matching_keeps_a_spread_window_whole_and_a_late_one_nearest() -> None:
    reference = seasonal_reference()
    spread = pd.Series(pd.date_range("2025-10-01", "2025-12-30", periods=300, tz="UTC"))
    same, described = match_reference_to_window(reference, spread, days=45)
    assert same.rows is reference.rows and described == {"days": 45, "rows": 910, "narrowed": False}
    late = pd.Series([pd.Timestamp("2026-03-15", tz="UTC")] * 300)
    nearest, described = match_reference_to_window(reference, late, days=45, min_rows=200)
    assert len(nearest.rows) == 200 and described is not None
    assert nearest.rows["applied_at"].min() == reference.rows["applied_at"].sort_values().iloc[-200]
    assert match_reference_to_window(reference, None)[0] is reference
    assert match_reference_to_window(reference, late, days=0)[0] is reference
