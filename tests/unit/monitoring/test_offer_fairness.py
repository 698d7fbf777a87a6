"""Offers by group: gaps are judged within PD bands, subsidies against eligibility, recourse as given."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.offer_fairness import OfferThresholds, audit_offers, pd_band

N = 4_000


def _book(rate_markup_b: float = 0.0, limit_scale_b: float = 1.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group b is riskier on the whole; rate and limit follow the PD band only, unless marked up."""
    rng = np.random.default_rng(3)
    group = np.where(np.arange(N) % 2 == 0, "a", "b")
    pd_ = np.where(group == "a", rng.uniform(0.005, 0.08, N), rng.uniform(0.03, 0.30, N))
    band = pd_band(pd_)
    rate = 0.06 + 0.02 * band + np.where(group == "b", rate_markup_b, 0.0)
    limit = (30_000 - 4_000 * band) * np.where(group == "b", limit_scale_b, 1.0)
    frame = pd.DataFrame(
        {
            "pd": pd_,
            "decision": np.where(pd_ > 0.25, "decline", "approve"),
            "offer_annual_rate": np.where(pd_ > 0.25, np.nan, rate),
            "offer_limit_cny": np.where(pd_ > 0.25, np.nan, limit),
        }
    )
    return frame, pd.DataFrame({"group": group})


def _group(audit: object, name: str) -> dict[str, object]:
    groups = audit.to_dict()["attributes"]["group"]  # type: ignore[attr-defined]
    return next(g for g in groups if g["group"] == name)


def test_a_riskier_group_priced_by_band_alone_shows_no_gap_given_pd() -> None:
    frame, groups = _book()
    audit = audit_offers(frame, groups, n_boot=0)
    a, b = _group(audit, "a"), _group(audit, "b")
    assert b["values"]["mean_rate"] > a["values"]["mean_rate"] + 0.01  # raw means differ ...
    assert b["values"]["rate_gap_given_pd"] == pytest.approx(0.0, abs=1e-12)  # ... not within bands
    assert b["values"]["limit_ratio_given_pd"] == pytest.approx(1.0)
    assert not audit.flags


def test_a_markup_within_bands_is_measured_and_flagged_with_an_interval() -> None:
    frame, groups = _book(rate_markup_b=0.01, limit_scale_b=0.7)
    audit = audit_offers(frame, groups, n_boot=100, seed=1)
    b = _group(audit, "b")
    assert b["values"]["rate_gap_given_pd"] == pytest.approx(0.01, abs=1e-9)
    assert b["values"]["limit_ratio_given_pd"] == pytest.approx(0.7, abs=1e-9)
    lo, hi = b["ci"]["rate_gap_given_pd"]
    assert lo - 1e-9 <= 0.01 <= hi + 1e-9  # exact markup: the interval collapses onto it
    flagged = {(f.group, f.metric) for f in audit.flags}
    assert flagged == {("b", "rate_gap_given_pd"), ("b", "limit_ratio_given_pd")}
    assert _group(audit, "a")["values"]["rate_gap_given_pd"] == pytest.approx(-0.01, abs=1e-9)


def test_subsidy_share_is_set_beside_eligible_share_and_judged_on_enough_eligible() -> None:
    frame, groups = _book()
    status = np.full(N, "not_eligible", dtype=object)
    status[:800] = "budget_exhausted"  # 400 eligible in each group
    status[:800:2] = "reserved"  # every a of them subsidised: 400
    status[1:800:4] = "reserved"  # half the b: 200
    frame["subsidy_status"] = status
    audit = audit_offers(frame, groups, n_boot=0, min_group_size=100)
    b = _group(audit, "b")
    assert b["n_eligible"] == 400 and b["n_subsidised"] == 200
    assert b["values"]["eligible_share"] == pytest.approx(0.5)
    assert b["values"]["subsidised_share"] == pytest.approx(200 / 600)
    assert b["values"]["subsidy_ratio"] == pytest.approx((200 / 600) / 0.5)
    assert ("b", "subsidy_ratio") in {(f.group, f.metric) for f in audit.flags}
    # The same shares on 40 eligible are too few to judge.
    few = audit_offers(frame, groups, n_boot=0, min_group_size=500)
    assert not [f for f in few.flags if f.metric == "subsidy_ratio"]


def test_recourse_for_declines_counts_plans_and_their_median_cost() -> None:
    frame, groups = _book()
    declined = frame["decision"].eq("decline").to_numpy()
    b_declines = np.flatnonzero(declined & (groups["group"] == "b").to_numpy())
    frame["recourse_status"] = np.where(declined, "out_of_reach", None)
    found = b_declines[: len(b_declines) // 2]
    frame.loc[found, "recourse_status"] = "found"
    frame["recourse_cost_cny"] = np.nan
    frame.loc[found, "recourse_cost_cny"] = np.arange(len(found), dtype=float) * 10
    frame["recourse_months"] = np.nan
    frame.loc[found, "recourse_months"] = 3.0
    audit = audit_offers(frame, groups, n_boot=0, thresholds=OfferThresholds(max_recourse_cost_ratio=1.5))
    b = _group(audit, "b")
    assert b["n_declined"] == len(b_declines)
    assert b["values"]["recourse_found_share"] == pytest.approx(len(found) / len(b_declines))
    assert b["values"]["recourse_median_cost_cny"] == pytest.approx(np.median(np.arange(len(found)) * 10))
    assert b["values"]["recourse_median_months"] == 3.0
    assert audit.counts["declined_with_plan"] == len(found)
    assert audit.counts["declined_with_recourse"] == int(declined.sum())
