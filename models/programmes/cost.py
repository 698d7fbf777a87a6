"""What a subsidised loan costs the programme, and what it adds to the expected loss.

Interest is that of an equal-instalment (annuity) loan: with monthly rate r = annual rate / 12 and n
monthly payments, each payment is P·r / (1 − (1 + r)^−n), and the total interest is n × payment − P
(zero at a zero rate). The subsidy is the programme's share of that interest, capped per loan; the
expected loss is PD × LGD × principal. Amounts are yuan; the online store keeps whole fen (`to_fen`)
so running budgets add up exactly.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from models.programmes.programme import Programme

Floats = npt.NDArray[np.float64]


def total_interest_cny(
    principal: npt.ArrayLike, annual_rate: npt.ArrayLike, term_months: npt.ArrayLike
) -> Floats:
    """Total interest of equal monthly instalments over the term (yuan, per loan)."""
    p = np.asarray(principal, dtype=np.float64)
    r = np.asarray(annual_rate, dtype=np.float64) / 12.0
    n = np.asarray(term_months, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        payment = np.where(r > 0, p * r / (1.0 - (1.0 + r) ** -n), p / n)
    return np.asarray(np.maximum(payment * n - p, 0.0), dtype=np.float64)


def subsidy_cny(programme: Programme, interest_cny: npt.ArrayLike) -> Floats:
    """The programme's part of the interest: `share` of it, at most `max_per_loan_cny` (rounded down to
    the fen, so the programme never pays more than it declared)."""
    paid = np.asarray(interest_cny, dtype=np.float64) * programme.subsidy.share
    if programme.subsidy.max_per_loan_cny is not None:
        paid = np.minimum(paid, programme.subsidy.max_per_loan_cny)
    return np.floor(np.round(paid * 100.0, 6)) / 100.0


def expected_loss_cny(programme: Programme, pd: npt.ArrayLike, principal: npt.ArrayLike) -> Floats:
    """PD × LGD × principal: what each loan adds to the portfolio's expected loss (yuan)."""
    pds = np.asarray(pd, dtype=np.float64)
    return np.asarray(
        pds * programme.loss_ceiling.lgd * np.asarray(principal, dtype=np.float64), dtype=np.float64
    )


def to_fen(amount_cny: float, *, up: bool = False) -> int:
    """Yuan as whole fen: costs round up (never under-count what is used), budgets round down."""
    fen = round(amount_cny * 100.0, 6)
    return int(np.ceil(fen)) if up else int(np.floor(fen))
