"""Interest subsidies online: which programme an approved application may draw on, the claim the
decision-log writer settles in the decision's own transaction, and the `subsidy` object it answers.

The server reads its programme files (`COOPSCORE_PROGRAMMES`) and the member profiles at start. For an
approved application, each programme's eligibility is judged (`models.programmes.eligibility`: the
protected reads it makes are logged with the decision); the eligible ones become reservation
candidates, tried in the order the files are configured. Interest is computed on the loan as offered
(its principal, rate and term), or on the amount asked at the programme's reference rate when no offer
was made or the programme says `interest_at: reference_rate` (`rate_source` names which).
What a response says never names a protected attribute: "not eligible" does not say which rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np

from coopscore.settings import Settings
from decisions.base import (
    BudgetLine,
    DecisionLogWriter,
    LossCeilingLine,
    ProfileUse,
    ReservationOutcome,
    ReservationRequest,
    SubsidyClaim,
)
from models.programmes.cost import expected_loss_cny, subsidy_cny, to_fen, total_interest_cny
from models.programmes.eligibility import EVIDENCE_FEATURES, assess
from models.programmes.profiles import ProfileBook
from models.programmes.programme import LoadedProgramme, Programme, load_programme

log = logging.getLogger("coopscore.serving")

# Where a subsidy's interest rate came from: the loan's offer, or the programme's reference rate
# (no offer, e.g. no income on record to size a loan on, or `subsidy.interest_at: reference_rate`).
RATE_SOURCE: Final = "programme_reference_rate"
OFFER_RATE_SOURCE: Final = "offer"

MESSAGES: Final[dict[str, tuple[str, str]]] = {
    "reserved": (
        "已为本笔贷款预留贴息 {amount} 元（{name_zh}），{until} 前有效",
        "An interest subsidy of {amount} CNY is reserved under {name_en}, held until {until}",
    ),
    "not_approved": (
        "仅获批准的申请可获贴息",
        "Only an approved application can receive an interest subsidy",
    ),
    "not_eligible": (
        "本申请不符合贴息项目的条件",
        "This application does not meet the eligibility rules of a subsidy programme",
    ),
    "budget_exhausted": ("本县本期贴息预算已用完", "The county's subsidy budget for this period is used up"),
    "loss_ceiling_reached": (
        "贴息项目本期预期损失已达上限",
        "The programme's expected-loss ceiling for this period is reached",
    ),
    "already_subsidised": (
        "该户本期已获得本项目贴息",
        "This household already has a subsidy from the programme in this period",
    ),
}


@dataclass(frozen=True)
class _Candidate:
    """An eligible programme's terms for one application (for the reservation and the response)."""

    loaded: LoadedProgramme
    period: str
    annual_rate: float
    interest_cny: float
    subsidy_cny: float
    request: ReservationRequest
    rate_source: str = RATE_SOURCE


def _money(value: float) -> str:
    return f"{value:,.2f}"


class ProgrammeDesk:
    """The programmes a server runs, the profiles it targets by, and the claims it hands the writer."""

    def __init__(self, programmes: list[LoadedProgramme], profiles: ProfileBook | None) -> None:
        self.programmes = programmes
        self.profiles = profiles
        self._by_id = {p.programme.id: p for p in programmes}

    @classmethod
    def open(cls, settings: Settings, writer: DecisionLogWriter) -> ProgrammeDesk | None:
        """The programmes of `COOPSCORE_PROGRAMMES` (None when there are none), validated (a bad file
        stops the server with its field named), their budgets registered with the writer, and the
        member profiles of the event log loaded for targeting."""
        if not settings.programmes:
            return None
        loaded = [load_programme(path) for path in settings.programmes]
        ids = [p.programme.id for p in loaded]
        if len(set(ids)) != len(ids):
            raise ValueError(f"COOPSCORE_PROGRAMMES: a programme id is configured twice ({', '.join(ids)})")
        from monitoring.audit_inputs import AuditInputError, stored_profiles

        try:
            profiles: ProfileBook | None = ProfileBook(stored_profiles(settings))
        except AuditInputError as error:
            log.warning("subsidy programmes run without member profiles (%s): no one is eligible", error)
            profiles = None
        desk = cls(loaded, profiles)
        desk.register(writer)
        log.info(
            "subsidy programmes: %s; %d member profiles for targeting",
            ", ".join(f"{p.programme.id} v{p.programme.version}" for p in loaded),
            len(profiles) if profiles is not None else 0,
        )
        return desk

    def get(self, programme_id: str) -> LoadedProgramme | None:
        """A configured programme by id."""
        return self._by_id.get(programme_id)

    def register(self, writer: DecisionLogWriter) -> None:
        """Give the writer every budget line and loss ceiling (a new version may change them)."""
        for loaded in self.programmes:
            p = loaded.programme
            writer.register_programme(
                [BudgetLine(p.id, b.period, b.county_id, to_fen(b.amount_cny)) for b in p.budgets],
                [
                    LossCeilingLine(p.id, period.id, to_fen(p.loss_ceiling.max_expected_loss_cny))
                    for period in p.periods
                ],
            )

    # -- one decision ------------------------------------------------------------------------------

    def not_approved(self) -> dict[str, Any]:
        """The subsidy object of a decision other than approve (nothing is read or reserved)."""
        return _subsidy("not_approved")

    def claim(
        self,
        *,
        member_id: str,
        applied_at: datetime,
        amount_cny: float,
        term_months: int,
        pd: float,
        features: Mapping[str, Any],
        scored_at: datetime,
        encode: Callable[[dict[str, Any]], str],
        offer: Mapping[str, Any] | None = None,
    ) -> SubsidyClaim:
        """Judge an approved application against every programme: the claim for the writer, with
        its candidates in configured order and the protected reads made. The writer calls the
        claim's `respond` with its outcome; `encode` turns the `subsidy` object into the response."""
        columns: dict[str, Any] = {
            "applied_at": np.array([applied_at.astimezone(UTC).replace(tzinfo=None)], dtype="datetime64[us]"),
            "pd": np.array([pd]),
            "amount_cny": np.array([amount_cny]),
            "term_months": np.array([float(term_months)]),
        }
        for name in EVIDENCE_FEATURES:
            value = features.get(name)
            columns[name] = np.array([np.nan if value is None else value], dtype=np.float64)
        if self.profiles is not None:
            columns.update(self.profiles.member(member_id))
        else:
            columns["county_id"] = np.array([None], dtype=object)
        uses: list[ProfileUse] = []
        candidates: dict[str, _Candidate] = {}
        for loaded in self.programmes:
            p = loaded.programme
            judged = assess(p, columns, strict=False)
            uses += [
                ProfileUse(p.id, p.version, u.rule, u.field) for u in judged.uses for _ in range(u.count)
            ]
            if judged.eligible[0]:
                candidates[p.id] = self._candidate(
                    loaded, str(judged.period[0]), columns, member_id, scored_at, offer
                )
        return SubsidyClaim(
            tuple(c.request for c in candidates.values()),
            respond=lambda outcome: encode(self.answer(outcome, candidates)),
            profile_uses=tuple(uses),
        )

    @staticmethod
    def _candidate(
        loaded: LoadedProgramme,
        period: str,
        columns: dict[str, Any],
        member_id: str,
        scored_at: datetime,
        offer: Mapping[str, Any] | None = None,
    ) -> _Candidate:
        p = loaded.programme
        rate, principal, term = (
            p.subsidy.reference_annual_rate,
            columns["amount_cny"],
            columns["term_months"],
        )
        source = RATE_SOURCE
        if offer and p.subsidy.interest_at == "offer":
            # The loan as offered: the limit may cap the amount asked, and the rate is its own.
            rate, source = float(offer["annual_rate"]), OFFER_RATE_SOURCE
            principal, term = (
                np.array([float(offer["principal_cny"])]),
                np.array([float(offer["term_months"])]),
            )
        interest = float(total_interest_cny(principal, rate, term)[0])
        paid = float(subsidy_cny(p, interest))
        loss = float(expected_loss_cny(p, columns["pd"], principal)[0])
        request = ReservationRequest(
            programme_id=p.id,
            programme_version=p.version,
            period=period,
            county_id=str(columns["county_id"][0]),
            member_id=member_id,
            subsidy_fen=to_fen(paid),
            expected_loss_fen=to_fen(loss, up=True),
            expires_at=scored_at + timedelta(days=p.reservation_days),
        )
        return _Candidate(loaded, period, rate, interest, paid, request, source)

    def answer(self, outcome: ReservationOutcome, candidates: dict[str, _Candidate]) -> dict[str, Any]:
        """The `subsidy` object for what the writer decided."""
        if outcome.granted is not None:
            chosen = candidates[outcome.granted.programme_id]
            return _granted(chosen)
        if outcome.refused:
            programme_id, why = outcome.refused[0]
            return _subsidy(why, candidates[programme_id])
        return _subsidy(
            "not_eligible", only=self.programmes[0].programme if len(self.programmes) == 1 else None
        )


def attach_subsidy(
    desk: ProgrammeDesk,
    payload: dict[str, Any],
    *,
    member_id: str,
    applied_at: datetime | None,
    amount_cny: float,
    term_months: int,
    features: Mapping[str, Any],
    scored_at: datetime,
    encode: Callable[[dict[str, Any]], str],
) -> SubsidyClaim | None:
    """Put the `subsidy` object in a decision's response: settled now for anything but an approval,
    else left for the writer's claim (returned), which encodes the final response with it."""
    if payload["decision"] != "approve":
        payload["subsidy"] = desk.not_approved()
        return None
    payload["subsidy"] = None  # the writer settles it in the decision's transaction
    return desk.claim(
        member_id=member_id,
        applied_at=applied_at or scored_at,
        amount_cny=amount_cny,
        term_months=term_months,
        pd=float(payload["pd"]),
        features=features,
        scored_at=scored_at,
        encode=lambda subsidy: encode({**payload, "subsidy": subsidy}),
        offer=payload.get("offer"),
    )


def _subsidy(
    status: str, candidate: _Candidate | None = None, *, only: Programme | None = None
) -> dict[str, Any]:
    """A subsidy object without a reservation (in `SubsidyOffer`'s field order)."""
    programme = candidate.loaded.programme if candidate is not None else only
    zh, en = MESSAGES[status]
    return {
        "status": status,
        "programme_id": programme.id if programme else None,
        "programme_version": programme.version if programme else None,
        "programme_name": programme.name.model_dump() if programme else None,
        "period": candidate.period if candidate else None,
        "share": programme.subsidy.share if programme else None,
        "annual_rate": candidate.annual_rate if candidate else None,
        "rate_source": candidate.rate_source if candidate else None,
        "interest_cny": round(candidate.interest_cny, 2) if candidate else None,
        "amount_cny": None,
        "expires_at": None,
        "message": {"zh": zh, "en": en},
    }


def _granted(chosen: _Candidate) -> dict[str, Any]:
    body = _subsidy("reserved", chosen)
    until = chosen.request.expires_at.astimezone(UTC)
    p = chosen.loaded.programme
    zh, en = MESSAGES["reserved"]
    fields = {"amount": _money(chosen.subsidy_cny), "until": until.date().isoformat()}
    body["amount_cny"] = chosen.subsidy_cny
    body["expires_at"] = until.isoformat().replace("+00:00", "Z")
    body["message"] = {
        "zh": zh.format(name_zh=p.name.zh, **fields),
        "en": en.format(name_en=p.name.en, **fields),
    }
    return body


# -- GET /v1/programmes/{id} -----------------------------------------------------------------------

GROUP_ATTRIBUTES: Final = ("gender", "age_band", "returning_youth", "left_behind_woman")
_OPEN: Final = ("reserved", "accepted")


def programme_status(
    desk: ProgrammeDesk,
    loaded: LoadedProgramme,
    reservations: list[dict[str, Any]],
    uses: list[dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """Budget used and left per period and county, expected loss against the ceiling, and reach by
    group (aggregates from the profile book: no person's protected value leaves)."""
    p = loaded.programme
    periods = []
    for period in p.periods:
        rows = [r for r in reservations if r["period"] == period.id]
        open_rows = [r for r in rows if r["status"] in _OPEN]
        budget = sum(b.amount_cny for b in p.budgets if b.period == period.id)

        def fen(selected: list[dict[str, Any]], column: str = "subsidy_fen") -> float:
            return sum(int(r[column]) for r in selected) / 100.0

        used = fen(open_rows)
        counties = []
        for b in (b for b in p.budgets if b.period == period.id):
            mine = [r for r in open_rows if r["county_id"] == b.county_id]
            counties.append(
                {
                    "county_id": b.county_id,
                    "budget_cny": b.amount_cny,
                    "used_cny": fen(mine),
                    "left_cny": round(b.amount_cny - fen(mine), 2),
                    "households": len({r["member_id"] for r in mine}),
                }
            )
        start, _ = period.bounds()
        periods.append(
            {
                "period": period.id,
                "start": period.start,
                "end": period.end,
                "budget_cny": budget,
                "used_cny": used,
                "left_cny": round(budget - used, 2),
                "reserved_cny": fen([r for r in rows if r["status"] == "reserved"]),
                "accepted_cny": fen([r for r in rows if r["status"] == "accepted"]),
                "expected_loss_cny": fen(open_rows, "expected_loss_fen"),
                "loss_ceiling_cny": p.loss_ceiling.max_expected_loss_cny,
                "households": len({r["member_id"] for r in open_rows}),
                "released": sum(r["status"] == "released" for r in rows),
                "expired": sum(r["status"] == "expired" for r in rows),
                "counties": counties,
                "groups": _reach(desk, open_rows, start),
            }
        )
    return {
        "programme_id": p.id,
        "programme_version": p.version,
        "name": p.name.model_dump(),
        "sha256": loaded.sha256,
        "as_of": now,
        "share": p.subsidy.share,
        "reference_annual_rate": p.subsidy.reference_annual_rate,
        "reservation_days": p.reservation_days,
        "periods": periods,
        "profile_uses": uses,
    }


def _reach(desk: ProgrammeDesk, rows: list[dict[str, Any]], period_start: datetime) -> list[dict[str, Any]]:
    """Households subsidised by group: one count per (attribute, group), never a member id."""
    members = sorted({str(r["member_id"]) for r in rows})
    if not members or desk.profiles is None:
        return []
    import pandas as pd

    from monitoring.fairness import UNKNOWN, age_band

    profile = desk.profiles.columns(members)
    frame = pd.DataFrame(
        {
            "gender": pd.Series(profile["gender"]).fillna(UNKNOWN).astype(str),
            "age_band": age_band(pd.Series(profile["birth_year"]), pd.Series([period_start] * len(members))),
            "returning_youth": _flag(profile["returning_youth"]),
            "left_behind_woman": _flag(profile["left_behind_woman"]),
        }
    )
    out = []
    for attribute in GROUP_ATTRIBUTES:
        for group, count in frame[attribute].value_counts().sort_index().items():
            out.append(
                {
                    "attribute": attribute,
                    "group": str(group),
                    "households": int(count),
                    "share": round(int(count) / len(members), 4),
                }
            )
    return out


def _flag(values: Any) -> list[str]:
    return ["unknown" if np.isnan(v) else ("true" if v == 1.0 else "false") for v in values]
