"""Decision cutoffs from a lender's target, chosen on a held-out slice of calibrated PDs.

A lender thinks in "at most 8% of the loans we approve go bad" or "we approve 60% of applicants",
not in PDs. `choose_cutoffs` turns either target into an approve PD (the largest that meets it on
the slice) and a decline PD (the review band: the next share of applicants above the approve cutoff
go to a loan officer, everyone riskier is declined). Thin files can never be approved by the policy,
so they count as applicants but never as approvable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

TargetMode = Literal["target_bad_rate", "target_approval_rate"]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# A bad rate measured on fewer approved loans than this is noise (the first 3 applicants repaid, so
# "0% bad"): a cutoff must approve at least this many of the slice's applicants to count.
MIN_APPROVED: Final = 20
NO_DECLINE_PD: Final = 1.0  # decline at PD >= 1: nobody is declined automatically


class TargetNotMetError(ValueError):
    """No cutoff meets the lender's target on the slice; the message names the best achievable,
    and `best` holds it (None when nothing is achievable)."""

    def __init__(self, message: str, best: float | None = None) -> None:
        super().__init__(message)
        self.best = best


@dataclass(frozen=True)
class CutoffChoice:
    """The chosen cutoffs and what they achieve on the slice they were chosen on."""

    approve_max_pd: float
    decline_min_pd: float
    outcome: dict[str, Any]  # rows, approval_rate, bad_rate_approved, review_rate, decline_rate


def outcome_rates(
    pd_: FloatArray,
    defaulted: npt.ArrayLike,
    judgeable: BoolArray,
    approve_max_pd: float,
    decline_min_pd: float,
) -> dict[str, Any]:
    """Approval, review and decline shares and the bad rate among approved, as the policy decides."""
    y = np.asarray(defaulted, dtype=np.float64)
    approved = judgeable & (pd_ <= approve_max_pd)
    declined = judgeable & (pd_ >= decline_min_pd)
    n = len(pd_)
    return {
        "rows": int(n),
        "defaults": int(y.sum()),
        "approved": int(approved.sum()),
        "approval_rate": float(approved.mean()) if n else math.nan,
        "bad_rate_approved": float(y[approved].mean()) if approved.any() else math.nan,
        "review_rate": float(1.0 - approved.mean() - declined.mean()) if n else math.nan,
        "decline_rate": float(declined.mean()) if n else math.nan,
    }


def choose_cutoffs(
    pd_: FloatArray,
    defaulted: npt.ArrayLike,
    judgeable: BoolArray,
    *,
    mode: TargetMode,
    target: float,
    review_band: float,
    min_approved: int = MIN_APPROVED,
    slice_name: str = "calibration",
) -> CutoffChoice:
    """Approve PD meeting `target` on these rows, decline PD `review_band` of applicants above it.

    target_bad_rate: the largest approve PD whose approved loans (at least `min_approved`) default
    at no more than `target`. target_approval_rate: the largest approve PD approving no more than
    `target` of all rows. Cutoffs sit on observed PDs, so ties are approved (or declined) together.
    Raises `TargetNotMetError` with the best achievable value when no cutoff meets the target.
    """
    pd_ = np.asarray(pd_, dtype=np.float64)
    y = np.asarray(defaulted, dtype=np.float64)
    judgeable = np.asarray(judgeable, dtype=bool)
    n = len(pd_)
    order = np.argsort(pd_[judgeable], kind="stable")
    sorted_pd = pd_[judgeable][order]
    sorted_y = y[judgeable][order]
    # Cutoff at each distinct PD: approve every judgeable row with PD <= it.
    last_of_tie = np.r_[sorted_pd[1:] != sorted_pd[:-1], True] if len(sorted_pd) else np.array([], bool)
    approved_count = np.arange(1, len(sorted_pd) + 1)[last_of_tie]
    cutoffs = sorted_pd[last_of_tie]
    bad_rate = (np.cumsum(sorted_y)[last_of_tie] / approved_count) if len(sorted_pd) else np.array([])
    if mode == "target_bad_rate":
        # A bad rate of t is only seen on about 1/t loans: fewer, and "no defaults yet" is luck.
        min_approved = max(min_approved, math.ceil(1.0 / target))
    enough = approved_count >= min_approved
    if mode == "target_bad_rate":
        ok = enough & (bad_rate <= target + 1e-12)
        if not ok.any():
            where = f"target bad rate {target:.1%} among approved cannot be met on the {slice_name} slice"
            if not enough.any():
                raise TargetNotMetError(
                    f"{where} ({n} rows): seeing a {target:.1%} bad rate takes at least {min_approved} "
                    f"approved loans and only {len(sorted_pd)} applicants can be approved; pass a higher "
                    "--target-bad-rate, --target-approval-rate, or a longer --calibration-months"
                )
            best = float(bad_rate[enough].min())
            raise TargetNotMetError(
                f"{where} ({n} rows): the lowest achievable, approving at least {min_approved} "
                f"applicants, is {best:.1%}; pass a higher --target-bad-rate, or --target-approval-rate",
                best=best,
            )
        pick = int(np.flatnonzero(ok).max())
    else:
        reachable = len(sorted_pd) / n if n else 0.0
        if target > reachable + 1e-9:
            raise TargetNotMetError(
                f"target approval rate {target:.1%} cannot be met on the {slice_name} slice ({n} rows): "
                f"only {reachable:.1%} of applicants have enough evidence to be approved (thin files go "
                f"to review); pass --target-approval-rate <= {math.floor(reachable * 1000) / 1000:g}"
            )
        # The quantile is no noisier on a small slice than the PDs themselves: no `min_approved`.
        ok = approved_count <= target * n + 1e-9
        if not ok.any():
            raise TargetNotMetError(
                f"target approval rate {target:.1%} cannot be met on the {slice_name} slice ({n} rows): "
                f"the lowest PD is shared by {int(approved_count[0]) if len(approved_count) else 0} "
                "applicants; pass a higher --target-approval-rate or a longer --calibration-months"
            )
        pick = int(np.flatnonzero(ok).max())
    approve = float(cutoffs[pick])
    # Review band: at least the next `review_band` share of all applicants above the approve cutoff
    # (ties of the last one reviewed stay in review); everyone riskier is declined.
    review_end = int(approved_count[pick]) + math.ceil(review_band * n)
    last_reviewed = sorted_pd[min(review_end, len(sorted_pd)) - 1]
    above = sorted_pd[sorted_pd > max(last_reviewed, approve)]
    decline = float(above[0]) if len(above) else NO_DECLINE_PD
    if decline <= approve:  # a PD of 1.0 is approved: nothing is left to decline
        decline = min(1.0, np.nextafter(approve, 2.0))
    return CutoffChoice(
        approve_max_pd=approve,
        decline_min_pd=decline,
        outcome=outcome_rates(pd_, y, judgeable, approve, decline),
    )


def describe_selection(selection: Mapping[str, Any]) -> str:
    """One line: how the cutoffs were chosen and what they achieve (for the console and the card)."""
    mode = selection.get("mode", "fixed")
    approve, decline = selection.get("approve_max_pd"), selection.get("decline_min_pd")
    bands = f"approve at PD <= {approve:.2%}, decline at PD >= {decline:.2%}" if approve is not None else ""
    target = selection.get("target")
    if mode == "fixed":
        parts = [f"fixed cutoffs: {bands}"]
    else:
        goal = (
            f"bad rate among approved <= {target:.1%}"
            if mode == "target_bad_rate"
            else f"approval rate {target:.1%}"
        )
        parts = [f"cutoffs from the target {goal} on the {selection.get('slice')} slice: {bands}"]
    for name, got in (selection.get("achieved") or {}).items():
        label = f"on the {selection.get('slice')} slice" if name == "slice" else "out of time"
        bad = got["bad_rate_approved"]
        parts.append(
            f"{label} it approves {got['approval_rate']:.1%} (bad rate among approved "
            + ("—" if bad != bad else f"{bad:.1%}")  # NaN: nobody approved
            + f"), reviews {got['review_rate']:.1%}, declines {got['decline_rate']:.1%}"
        )
    return "; ".join(parts)
