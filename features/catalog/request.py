"""Application-time features: ONE function, offline and at request time.

The offline builder calls `application_features` with whole columns, serving with one member vector
and scalars; both run this very code, so training and serving cannot drift apart. It needs only
numpy, not the declarations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _as_float(values: Any) -> FloatArray:
    """Float array with NaN for missing values (None converts to NaN); scalars become 0-d arrays."""
    return np.asarray(values, dtype=np.float64)


def application_features(
    member_features: Mapping[str, Any], *, amount_cny: Any, term_months: Any
) -> dict[str, FloatArray]:
    """Request-time features from the application's fields on top of a member vector.

    The offline builder calls this with whole columns; serving calls it with one member vector and
    scalars. Both paths run this very code, so training and serving cannot drift apart.

    Args:
        member_features: member features by name (a feature frame or one vector's mapping); needs
            `delivery_amount_365d` and `savings_balance`.
        amount_cny: amount requested (yuan), scalar or array.
        term_months: term requested (months), scalar or array.

    Returns:
        Feature name -> float64 array (0-d for scalar inputs); NaN where a ratio has no base.
    """
    amount = _as_float(amount_cny)
    term = _as_float(term_months)
    income = _as_float(member_features["delivery_amount_365d"])
    balance = _as_float(member_features["savings_balance"])
    shape = np.broadcast_shapes(amount.shape, term.shape, income.shape, balance.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        has_income = income > 0
        return {
            "application_amount_cny": np.broadcast_to(amount, shape).copy(),
            "application_term_months": np.broadcast_to(term, shape).copy(),
            "application_amount_to_delivery_income_365d": np.where(has_income, amount / income, np.nan),
            "application_installment_to_monthly_income": np.where(
                has_income & (term > 0), (amount / term) / (income / 12.0), np.nan
            ),
            "application_amount_to_savings_balance": np.where(balance > 0, amount / balance, np.nan),
        }


def application_features_for_request(
    member_features: Mapping[str, float], *, amount_cny: float, term_months: int
) -> dict[str, float]:
    """`application_features` for one request: plain floats (NaN when undefined)."""
    arrays = application_features(member_features, amount_cny=amount_cny, term_months=term_months)
    return {name: float(value) for name, value in arrays.items()}


# --------------------------------------------------------------------------------------------------
# Generated reference
# --------------------------------------------------------------------------------------------------
