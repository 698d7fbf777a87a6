"""The decision policy: PD to approve / review / decline, with a thin-file guard.

A file too thin to judge (too little recorded evidence) always goes to a loan officer: the model may
say little about such a member, and "we know little about you" must never become an automatic
decline. Evidence is read from the features the views declare for it (activity records in the last
year, months of history, a prior loan); thresholds are configurable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["approve", "review", "decline"]

# Default evidence rule over the views' `evidence` features.
DEFAULT_EVIDENCE_MINIMUMS: dict[str, float] = {"event_count_365d": 12.0, "history_months": 3.0}
DEFAULT_EVIDENCE_SUFFICIENT_IF_POSITIVE: tuple[str, ...] = ("has_prior_loan",)


@dataclass(frozen=True)
class EvidenceRule:
    """Enough evidence iff any `sufficient_if_positive` feature is > 0, or every minimum is met.

    Missing values count as zero evidence. An empty rule (no features) judges every file.
    """

    minimums: Mapping[str, float] = field(default_factory=dict)
    sufficient_if_positive: tuple[str, ...] = ()

    @property
    def features(self) -> list[str]:
        """Every feature the rule reads."""
        return [*self.minimums, *self.sufficient_if_positive]

    def is_empty(self) -> bool:
        """True when the rule reads nothing (every file counts as judgeable)."""
        return not self.minimums and not self.sufficient_if_positive

    def shortfalls(self, values: Mapping[str, Any]) -> list[str]:
        """Why the file is too thin (empty when it is judgeable)."""
        if self.is_empty():
            return []
        for name in self.sufficient_if_positive:
            if _number(values.get(name)) > 0:
                return []
        return [
            f"{name} < {minimum:g}"
            for name, minimum in self.minimums.items()
            if _number(values.get(name)) < minimum
        ]

    def restricted_to(self, available: set[str]) -> EvidenceRule:
        """The rule without features the model does not have."""
        return EvidenceRule(
            minimums={k: v for k, v in self.minimums.items() if k in available},
            sufficient_if_positive=tuple(n for n in self.sufficient_if_positive if n in available),
        )


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(number) else number


@dataclass(frozen=True)
class Decision:
    """What the policy decided and why (a stable code plus readable text)."""

    outcome: Outcome
    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"outcome": self.outcome, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class DecisionPolicy:
    """approve when PD <= `approve_max_pd`, decline when PD >= `decline_min_pd`, else review.

    `selection` records how the cutoffs were chosen (fixed, or from a lender's target on a held-out
    slice, with what they achieved there and out of time); it travels with the model in policy.json.
    """

    approve_max_pd: float = 0.05
    decline_min_pd: float = 0.25
    evidence: EvidenceRule = field(default_factory=EvidenceRule)
    selection: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.approve_max_pd < self.decline_min_pd <= 1.0:
            raise ValueError("need 0 <= approve_max_pd < decline_min_pd <= 1")

    def decide(self, pd_: float, evidence_values: Mapping[str, Any]) -> Decision:
        """The decision for one applicant with this PD and these evidence feature values."""
        shortfalls = self.evidence.shortfalls(evidence_values)
        if shortfalls:
            return Decision("review", "thin_file", "too little recorded evidence: " + ", ".join(shortfalls))
        if pd_ <= self.approve_max_pd:
            return Decision("approve", "low_pd", f"PD {pd_:.2%} <= {self.approve_max_pd:.2%}")
        if pd_ >= self.decline_min_pd:
            return Decision("decline", "high_pd", f"PD {pd_:.2%} >= {self.decline_min_pd:.2%}")
        return Decision("review", "middle_pd", f"PD {pd_:.2%} between the approve and decline bands")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the `policy.json` artifact)."""
        return {
            "approve_max_pd": self.approve_max_pd,
            "decline_min_pd": self.decline_min_pd,
            "evidence": {
                "minimums": dict(self.evidence.minimums),
                "sufficient_if_positive": list(self.evidence.sufficient_if_positive),
            },
            "selection": dict(self.selection),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecisionPolicy:
        """Inverse of `to_dict`."""
        evidence = data.get("evidence") or {}
        return cls(
            approve_max_pd=float(data["approve_max_pd"]),
            decline_min_pd=float(data["decline_min_pd"]),
            evidence=EvidenceRule(
                minimums={str(k): float(v) for k, v in evidence.get("minimums", {}).items()},
                sufficient_if_positive=tuple(evidence.get("sufficient_if_positive", ())),
            ),
            selection=dict(data.get("selection") or {}),
        )


def default_evidence_rule() -> EvidenceRule:
    """The default thin-file rule over the views' evidence features."""
    return EvidenceRule(
        minimums=dict(DEFAULT_EVIDENCE_MINIMUMS),
        sufficient_if_positive=DEFAULT_EVIDENCE_SUFFICIENT_IF_POSITIVE,
    )
