"""Labels only for closed windows; out-of-time splits by application time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.config import SplitConfig
from training.labels import data_as_of, label_applications
from training.splits import SLICES, time_split

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def _apps(days: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "application_id": [f"a{i}" for i in range(len(days))],
            "member_id": [f"m{i}" for i in range(len(days))],
            "coop_id": "c1",
            "applied_at": [T0 + pd.Timedelta(days=d) for d in days],
            "amount_cny": 5000.0,
            "term_months": 12,
            "purpose": "farm_inputs",
        }
    )


def test_only_closed_windows_get_a_label() -> None:
    apps = _apps([0, 10, 200, 300])
    outcomes = pd.DataFrame(
        {
            "application_id": ["a0", "a1", "a2", "a3"],
            "defaulted": [False, True, True, False],
            "observed_at": [
                T0 + pd.Timedelta(days=365),  # repaid, observed at 12 months
                T0 + pd.Timedelta(days=150),  # defaulted early
                T0 + pd.Timedelta(days=330),  # defaulted early, but its window is still open
                T0 + pd.Timedelta(days=900),  # observed after as_of: unknown then
            ],
        }
    )
    as_of = T0 + pd.Timedelta(days=400)
    labelled, report = label_applications(apps, outcomes, as_of=as_of, window_days=365)
    assert labelled["application_id"].tolist() == ["a0", "a1"]
    assert labelled["defaulted"].tolist() == [0, 1]
    assert report.labelled == 2 and report.defaults == 1 and report.window_open == 2
    assert report.closed_without_outcome == 0


def test_closed_window_without_outcome_is_counted_not_labelled() -> None:
    apps = _apps([0, 5])
    outcomes = pd.DataFrame(
        {"application_id": ["a0"], "defaulted": [False], "observed_at": [T0 + pd.Timedelta(days=365)]}
    )
    labelled, report = label_applications(apps, outcomes, as_of=T0 + pd.Timedelta(days=500))
    assert labelled["application_id"].tolist() == ["a0"]
    assert report.closed_without_outcome == 1


def test_now_is_the_datas_clock_not_the_wall_clock() -> None:
    apps = _apps([0, 100])
    outcomes = pd.DataFrame(
        {"application_id": ["a0"], "defaulted": [False], "observed_at": [T0 + pd.Timedelta(days=365)]}
    )
    assert data_as_of(apps, outcomes) == T0 + pd.Timedelta(days=365)


def test_splits_are_by_time_disjoint_and_ordered() -> None:
    rng = np.random.default_rng(0)
    times = pd.Series(T0 + pd.to_timedelta(np.sort(rng.uniform(0, 480, 5000)), unit="D"))
    horizon = T0 + pd.Timedelta(days=480)
    config = SplitConfig(oot_months=3, calibration_months=2, validation_months=2)
    split = time_split(times, horizon, config)
    masks = [split.masks[name] for name in SLICES]
    assert np.stack(masks).sum(axis=0).max() == 1  # each application in at most one slice
    assert sum(m.sum() for m in masks) == (times < horizon).sum()
    latest = [times[m].max() for m in masks]
    earliest = [times[m].min() for m in masks]
    for before, after in zip(latest[:-1], earliest[1:], strict=True):
        assert before < after  # train < validation < calibration < OOT
    oot_start, oot_end = split.windows["oot"]
    assert oot_end == horizon and oot_start == horizon - pd.DateOffset(months=3)
    cal_start, cal_end = split.windows["calibration"]
    assert cal_end == oot_start and cal_start == oot_start - pd.DateOffset(months=2)


def test_train_window_can_be_limited() -> None:
    times = pd.Series(T0 + pd.to_timedelta(np.arange(0, 700, 1.0), unit="D"))
    horizon = T0 + pd.Timedelta(days=700)
    split = time_split(
        times, horizon, SplitConfig(oot_months=2, calibration_months=1, validation_months=1, train_months=6)
    )
    start, end = split.windows["train"]
    assert start == end - pd.DateOffset(months=6)
    assert times[split.masks["train"]].min() >= start


@pytest.mark.parametrize("field", ["oot_months", "calibration_months", "validation_months"])
def test_windows_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError):
        SplitConfig(**{field: 0})
