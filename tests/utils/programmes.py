"""What a journey's programme file pays, computed from the formula as a person would (not by the code
under test)."""

from __future__ import annotations


def subsidy_cny(amount: float) -> float:
    """Half the interest of equal monthly instalments at 8% over 12 months, floored to the fen (what the
    journeys' programme files declare)."""
    r = 0.08 / 12
    payment = amount * r / (1 - (1 + r) ** -12)
    return int((payment * 12 - amount) * 0.5 * 100) / 100
