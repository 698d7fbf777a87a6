"""Cutoffs from a target on a slice: ties decided together, thin files never approved, the review
band measured in applicants, and an unreachable target named with its best achievable value."""

from __future__ import annotations

import numpy as np
import pytest

from models.cutoffs import NO_DECLINE_PD, TargetNotMetError, choose_cutoffs, outcome_rates


def _slice(rows: int = 400, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pd_ = np.round(rng.beta(2, 10, rows), 3)  # rounded: many tied PDs
    return pd_, (rng.random(rows) < pd_).astype(np.int64)


def test_bad_rate_target_is_met_with_ties_approved_together() -> None:
    pd_, y = _slice()
    every = np.ones(len(pd_), dtype=bool)
    choice = choose_cutoffs(pd_, y, every, mode="target_bad_rate", target=0.08, review_band=0.2)
    approved = pd_ <= choice.approve_max_pd
    assert y[approved].mean() <= 0.08 and approved.sum() >= 20
    assert choice.outcome == outcome_rates(pd_, y, every, choice.approve_max_pd, choice.decline_min_pd)
    next_pd = pd_[pd_ > choice.approve_max_pd].min()
    assert y[pd_ <= next_pd].mean() > 0.08  # the next tie group breaks the target
    assert choice.outcome["review_rate"] >= 0.2 - 1e-9  # at least the band (a tie group may add)


def test_thin_files_count_as_applicants_but_are_never_approved() -> None:
    pd_, y = _slice()
    judgeable = np.arange(len(pd_)) % 2 == 0
    choice = choose_cutoffs(pd_, y, judgeable, mode="target_approval_rate", target=0.3, review_band=0.5)
    assert choice.outcome["approval_rate"] <= 0.3
    assert choice.outcome["approved"] == int((judgeable & (pd_ <= choice.approve_max_pd)).sum())
    with pytest.raises(TargetNotMetError, match=r"only 50\.0% of applicants have enough evidence"):
        choose_cutoffs(pd_, y, judgeable, mode="target_approval_rate", target=0.6, review_band=0.1)
    # approve + review exhaust the judgeable files: nobody is declined automatically
    assert choice.decline_min_pd == NO_DECLINE_PD and choice.outcome["decline_rate"] == 0.0


def test_unreachable_bad_rate_names_the_best_achievable() -> None:
    pd_, y = _slice()
    y[np.argsort(pd_)[:20]] = 1  # the 20 safest-looking applicants all defaulted
    with pytest.raises(TargetNotMetError) as caught:
        choose_cutoffs(pd_, y, np.ones(len(pd_), bool), mode="target_bad_rate", target=0.05, review_band=0.2)
    # Over cutoffs at observed PDs (a tie group is approved whole) approving at least 20.
    best = min(y[pd_ <= c].mean() for c in np.unique(pd_) if (pd_ <= c).sum() >= 20)
    assert f"is {best:.1%}" in str(caught.value)
