"""PSI fast path: hand-computed cases (empty bins, missing values, categories), bins, noise floor."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from monitoring.psi import (
    EPSILON,
    MISSING_LABEL,
    UNSEEN_LABEL,
    ReferenceProfile,
    feature_psi,
    numeric_codes,
    psi,
    psi_band,
    psi_from_proportions,
    psi_noise_floor,
    quantile_edges,
)


def _term(expected: float, actual: float) -> float:
    e, a = max(expected, EPSILON), max(actual, EPSILON)
    return (a - e) * math.log(a / e)


def test_psi_by_hand_with_an_empty_bin_and_missing_values() -> None:
    # Two bins cut at the reference median 5.5, plus the missing bin.
    reference = pd.DataFrame({"x": [1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10]})
    current = pd.DataFrame({"x": [1.0, 2, 3, np.nan]})
    profile = ReferenceProfile.fit(reference, bins=2)
    assert profile.features["x"].edges == (5.5,)
    assert profile.features["x"].reference_proportions == (0.5, 0.5, 0.0)
    # reference shares 0.5 / 0.5 / 0; current 0.75 / 0 (empty) / 0.25 (missing, empty in reference)
    expected = (0.75 - 0.5) * math.log(0.75 / 0.5)
    expected += (EPSILON - 0.5) * math.log(EPSILON / 0.5)
    expected += (0.25 - EPSILON) * math.log(0.25 / EPSILON)
    assert expected == pytest.approx(6.314340, abs=1e-6)
    result = feature_psi(profile, current)["x"]
    assert result.psi == pytest.approx(expected, rel=1e-12)
    assert result.current_proportions == (0.75, 0.0, 0.25)
    assert result.band == "shift"


def test_psi_by_hand_for_categories_with_an_unseen_one() -> None:
    reference = pd.DataFrame({"purpose": ["farm", "farm", "trade", None]})
    current = pd.DataFrame({"purpose": ["farm", "herbs", "herbs", None]})
    profile = ReferenceProfile.fit(reference)
    feature = profile.features["purpose"]
    assert feature.kind == "categorical"
    assert feature.bin_labels() == ["farm", "trade", UNSEEN_LABEL, MISSING_LABEL]
    expected = _term(0.5, 0.25) + _term(0.25, 0.0) + _term(0.0, 0.5) + _term(0.25, 0.25)
    assert feature_psi(profile, current)["purpose"].psi == pytest.approx(expected, rel=1e-12)


def test_identical_samples_have_zero_psi() -> None:
    values = np.random.default_rng(1).lognormal(size=5_000)
    assert psi(values, values) == pytest.approx(0.0, abs=1e-12)


def test_quantile_edges_are_deduplicated_and_a_point_mass_gets_its_own_bin() -> None:
    counts = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 2], dtype=float)
    edges = quantile_edges(counts, bins=10)
    np.testing.assert_allclose(edges, [0.0, 0.2, 1.1])
    codes = numeric_codes(np.array([0.0, 0.1, 1.0, 2.0, 50.0, np.nan]), edges)
    assert codes.tolist() == [0, 1, 2, 3, 3, 4]  # right-closed bins; NaN in the last (missing) bin


def test_all_missing_reference_feature_has_a_single_value_bin_and_a_missing_bin() -> None:
    reference = pd.DataFrame({"ratio": [np.nan] * 5})
    profile = ReferenceProfile.fit(reference)
    assert profile.features["ratio"].reference_proportions == (0.0, 1.0)
    shifted = feature_psi(profile, pd.DataFrame({"ratio": [0.5] * 5}))["ratio"]
    assert shifted.psi == pytest.approx(_term(0.0, 1.0) + _term(1.0, 0.0))


def test_column_absent_from_the_window_counts_as_missing() -> None:
    profile = ReferenceProfile.fit(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}), bins=2)
    result = feature_psi(profile, pd.DataFrame({"y": [1.0, 2.0]}))["x"]
    assert result.current_proportions == (0.0, 0.0, 1.0)


def test_psi_is_symmetric_in_form_and_floors_empty_bins() -> None:
    assert psi_from_proportions([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi_from_proportions([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * _term(1.0, 0.0))


@pytest.mark.parametrize(
    ("value", "band"),
    [(0.0, "stable"), (0.099, "stable"), (0.1, "watch"), (0.25, "watch"), (0.2501, "shift")],
)
def test_bands(value: float, band: str) -> None:
    assert psi_band(value) == band


def test_noise_floor_is_the_chi_square_quantile_scaled_by_sample_sizes() -> None:
    # chi2(9) 99.9% quantile is 27.88
    floor = psi_noise_floor(5_000, 500, n_bins=10)
    assert floor == pytest.approx(27.88 * (1 / 500 + 1 / 5_000), rel=0.01)
    assert psi_noise_floor(5_000, 100, 10) > 0.25  # a 100-row window cannot show a supported shift
    assert math.isinf(psi_noise_floor(0, 10, 10))


def test_noise_floor_bounds_psi_of_samples_from_one_distribution() -> None:
    rng = np.random.default_rng(7)
    reference = pd.DataFrame({"x": rng.lognormal(size=2_000)})
    profile = ReferenceProfile.fit(reference)
    over = 0
    for _ in range(200):
        result = feature_psi(profile, pd.DataFrame({"x": rng.lognormal(size=300)}))["x"]
        over += result.psi > result.noise_floor
    assert over <= 2  # a 99.9% quantile: about 0.2 of 200 expected


def test_profile_round_trips_through_json_form() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0], "c": ["a", "b", "b", None]})
    profile = ReferenceProfile.fit(frame)
    again = ReferenceProfile.from_dict(profile.to_dict())
    assert again == profile


def test_rare_categories_are_pooled_not_unseen() -> None:
    reference = pd.DataFrame({"coop": ["a"] * 5 + ["b"] * 4 + ["c"]})
    profile = ReferenceProfile.fit(reference, max_categories=2)
    feature = profile.features["coop"]
    assert feature.other == ("c",)
    result = feature_psi(profile, pd.DataFrame({"coop": ["a"] * 5 + ["b"] * 4 + ["c"]}))["coop"]
    assert result.psi == pytest.approx(0.0)
