"""A batch allocation of a subsidy programme: which approved applications get the subsidy.

The applications come from the decision log (each application's latest decision; approved ones by
their final word, a review's included) or from a file of approved applications with their PD. Each
is judged against the programme (`models.programmes.eligibility`, with the member profile read for
targeting and every read counted), costed (the programme's share of the loan's interest: the
logged offer's principal, rate and term, as online; for a file or a decision without an offer, the
amount asked at the file's `annual_rate`, else at the programme's reference rate) and handed to the
integer program and the two greedy rules (`models.programmes.allocation`). Nothing is dropped
silently: every application left out is counted with its reason.

Run by `coopscore programme allocate`; the report is written by `monitoring.programme_report`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from decisions.base import OFFER_TERMS
from models.programmes.allocation import (
    Allocation,
    AllocationProblem,
    first_come_first_served,
    fits,
    lowest_pd_first,
    solve,
)
from models.programmes.cost import expected_loss_cny, subsidy_cny, total_interest_cny
from models.programmes.eligibility import EVIDENCE_FEATURES, RULE_FIELDS, assess, rules_of
from models.programmes.profiles import PROFILE_FIELDS, ProfileBook
from models.programmes.programme import LoadedProgramme, Programme

if TYPE_CHECKING:
    import pandas as pd

    from coopscore.settings import Settings

REQUIRED_COLUMNS: Final = ("application_id", "member_id", "applied_at", "amount_cny", "term_months", "pd")
GROUP_COLUMNS: Final = ("gender", "age_band", "returning_youth", "left_behind_woman", "first_loan", "county")
NOT_APPROVED: Final = "not approved"
UNREADABLE: Final = "a required value is missing or unreadable"
DUPLICATE: Final = "application_id seen before (the later row is kept)"
# Where each subsidy's interest is priced from (the eligible table's `rate_source`).
OFFER_RATE: Final = "offer"
FILE_RATE: Final = "file"
REFERENCE_RATE: Final = "programme_reference_rate"
RATE_LABELS: Final = {
    OFFER_RATE: "the loan as offered (principal, rate, term)",
    FILE_RATE: "the file's annual_rate",
    REFERENCE_RATE: "the amount asked at the programme's reference rate",
}


class AllocationInputError(ValueError):
    """The applications or profiles cannot be allocated from; the message says what to change."""


@dataclass
class Candidates:
    """Approved applications ready to judge, and every application left out before judging."""

    frame: pd.DataFrame
    source: str
    read: int
    excluded: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class AllocationRun:
    """Everything the report shows: inputs counted, the eligible set, each rule's answer."""

    loaded: LoadedProgramme
    candidates: Candidates
    eligible: pd.DataFrame  # one row per eligible application, with cost, loss and value
    problem: AllocationProblem
    allocations: list[Allocation]
    profile_uses: list[dict[str, Any]]
    groups: pd.DataFrame  # aligned with `eligible`: group labels for the reach tables


def decision_log_candidates(settings: Settings) -> Candidates:
    """Each application's latest decision in the decision log; the approved ones (by final word)."""
    import pandas as pd

    from decisions.factory import decision_log_reader

    try:
        reader = decision_log_reader(settings)
    except FileNotFoundError as error:
        raise AllocationInputError(
            f"{error}: nothing has been scored with these settings (pass --applications FILE instead)"
        ) from None
    with reader:
        rows = reader.latest_decisions(EVIDENCE_FEATURES)
    frame = pd.DataFrame(
        rows,
        columns=[*REQUIRED_COLUMNS, "request_id", "created_at", "decision", *OFFER_TERMS, *EVIDENCE_FEATURES],
    )
    frame["applied_at"] = frame["applied_at"].fillna(frame["created_at"])
    return _approved(frame, "decision log", read=len(frame))


def file_candidates(path: Path, settings: Settings) -> Candidates:
    """A file of applications (CSV, Parquet, JSON Lines): `REQUIRED_COLUMNS`, optionally `decision`
    (only approve is kept), `annual_rate` or the offer's terms (`OFFER_TERMS`, as the decision log
    gives them), and the evidence features (else read from the online store)."""
    from monitoring.audit_inputs import AuditInputError, read_table

    try:
        frame = read_table(path)
    except AuditInputError as error:
        raise AllocationInputError(str(error)) from None
    except (OSError, ValueError) as error:
        raise AllocationInputError(f"{path}: cannot read the applications ({error})") from None
    aliases = {"principal": "amount_cny", "principal_cny": "amount_cny", "amount": "amount_cny"}
    frame = frame.rename(columns={k: v for k, v in aliases.items() if k in frame and v not in frame})
    missing = [c for c in REQUIRED_COLUMNS if c not in frame]
    if missing:
        raise AllocationInputError(
            f"{path}: no column {', '.join(repr(c) for c in missing)}; an applications file needs "
            f"{', '.join(REQUIRED_COLUMNS)} (optional: decision, annual_rate, {', '.join(OFFER_TERMS)}, "
            f"{', '.join(EVIDENCE_FEATURES)})"
        )
    candidates = _approved(frame, str(path), read=len(frame))
    absent = [c for c in EVIDENCE_FEATURES if c not in candidates.frame]
    if absent and len(candidates.frame):
        _evidence_from_online_store(candidates, absent, settings)
    return candidates


def _approved(frame: pd.DataFrame, source: str, *, read: int) -> Candidates:
    """Keep approved, readable, unique applications; count the rest by reason."""
    import pandas as pd

    excluded: dict[str, int] = {}

    def drop(mask: pd.Series, why: str) -> pd.DataFrame:
        if int(mask.sum()):
            excluded[why] = excluded.get(why, 0) + int(mask.sum())
        return frame[~mask]

    if "decision" in frame:
        frame = drop(frame["decision"].astype(str).str.strip().str.lower() != "approve", NOT_APPROVED)
    frame = frame.copy()
    frame["applied_at"] = pd.to_datetime(frame["applied_at"], utc=True, errors="coerce", format="mixed")
    for column in ("amount_cny", "term_months", "pd"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    unreadable = (
        frame[["application_id", "member_id", "applied_at", "amount_cny", "term_months", "pd"]]
        .isna()
        .any(axis=1)
        | ~frame["pd"].between(0, 1)
        | ~(frame["amount_cny"] > 0)
        | ~(frame["term_months"] >= 1)
    )
    frame = drop(unreadable, UNREADABLE)
    frame["application_id"] = frame["application_id"].astype(str)
    frame["member_id"] = frame["member_id"].astype(str)
    frame = drop(frame["application_id"].duplicated(keep="last"), DUPLICATE)
    return Candidates(frame.reset_index(drop=True), source, read, excluded)


def _evidence_from_online_store(candidates: Candidates, columns: list[str], settings: Settings) -> None:
    """Fill evidence features the file lacks from the members' live vectors (noted in the report)."""
    from features.online.factory import online_store

    frame = candidates.frame
    store = online_store(settings)
    try:
        members = frame["member_id"].unique().tolist()
        vectors = dict(zip(members, store.online_read(members), strict=True))
    finally:
        store.close()
    found = sum(v is not None for v in vectors.values())
    for column in columns:
        frame[column] = [
            np.nan if (v := vectors[m]) is None else v.features.get(column, np.nan)
            for m in frame["member_id"]
        ]
    candidates.notes.append(
        f"{', '.join(columns)} read from the online store "
        f"(live vectors of {found:,} of {len(members):,} members)"
    )


def profile_book(settings: Settings, profiles: Path | None) -> ProfileBook:
    """The member profiles to target by: a file, else the event log's member_profiles table."""
    from monitoring.audit_inputs import AuditInputError, read_table, stored_profiles

    try:
        frame = read_table(profiles) if profiles is not None else stored_profiles(settings)
    except AuditInputError as error:
        raise AllocationInputError(str(error)) from None
    missing = [c for c in ("member_id", *PROFILE_FIELDS) if c not in frame]
    if missing:
        raise AllocationInputError(f"member profiles have no column {', '.join(repr(c) for c in missing)}")
    return ProfileBook(frame)


def allocate(
    loaded: LoadedProgramme,
    candidates: Candidates,
    profiles: ProfileBook,
    *,
    time_limit: float = 60.0,
    mip_rel_gap: float = 1e-4,
) -> AllocationRun:
    """Judge, cost and allocate: the integer program beside both greedy rules.

    Raises:
        EligibilityInputError: a rule reads a column the applications do not have.
    """
    import pandas as pd

    programme = loaded.programme
    frame = candidates.frame
    columns: dict[str, Any] = {
        "applied_at": frame["applied_at"]
        .dt.tz_convert("UTC")
        .dt.tz_localize(None)
        .to_numpy("datetime64[us]"),
        "pd": frame["pd"].to_numpy(np.float64),
        "amount_cny": frame["amount_cny"].to_numpy(np.float64),
        "term_months": frame["term_months"].to_numpy(np.float64),
    }
    needed = {name for rule in rules_of(programme) for name in RULE_FIELDS[rule.rule]}
    for name in EVIDENCE_FEATURES:
        if name in frame:
            columns[name] = pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64)
        elif name not in needed:
            columns[name] = np.full(len(frame), np.nan)
    columns.update(profiles.columns(frame["member_id"].to_numpy()))
    judged = assess(programme, columns, strict=True)
    for reason, count in judged.exclusions().items():
        candidates.excluded[reason] = candidates.excluded.get(reason, 0) + count

    keep = judged.eligible
    eligible = _priced(programme, frame[keep].reset_index(drop=True), candidates.notes)
    eligible["interest_cny"] = total_interest_cny(
        eligible["principal_cny"], eligible["annual_rate"], eligible["term_months"]
    )
    eligible["subsidy_cny"] = subsidy_cny(programme, eligible["interest_cny"])
    eligible["expected_loss_cny"] = expected_loss_cny(programme, eligible["pd"], eligible["principal_cny"])
    eligible["value"] = judged.value[keep]
    eligible["period"] = judged.period[keep]
    eligible["county_id"] = columns["county_id"][keep]
    arrival = np.argsort(np.argsort(eligible["applied_at"].to_numpy(), kind="stable"), kind="stable")
    problem = AllocationProblem(
        value=eligible["value"].to_numpy(np.float64),
        cost=eligible["subsidy_cny"].to_numpy(np.float64),
        loss=eligible["expected_loss_cny"].to_numpy(np.float64),
        pd=eligible["pd"].to_numpy(np.float64),
        arrival=arrival.astype(np.int64),
        county=eligible["county_id"].to_numpy(object),
        period=eligible["period"].to_numpy(object),
        member=eligible["member_id"].to_numpy(object),
        budgets={(b.county_id, b.period): b.amount_cny for b in programme.budgets},
        loss_ceilings={p.id: programme.loss_ceiling.max_expected_loss_cny for p in programme.periods},
    )
    fcfs, lowest = first_come_first_served(problem), lowest_pd_first(problem)
    best = max((fcfs, lowest), key=lambda a: a.objective)
    solver = solve(problem, time_limit=time_limit, mip_rel_gap=mip_rel_gap, start=best)
    for allocation in (solver, fcfs, lowest):
        broken = fits(problem, allocation.chosen)
        if broken:  # never expected: the answer is checked before anything is reported
            raise AssertionError(f"{allocation.rule} breaks {'; '.join(broken)}")
    groups = _groups(eligible, profiles)
    uses = [{"rule": u.rule, "field": u.field, "count": u.count} for u in judged.uses]
    return AllocationRun(loaded, candidates, eligible, problem, [solver, fcfs, lowest], uses, groups)


def _priced(programme: Programme, eligible: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """The loan each subsidy is priced on, as online (`serving.programmes`): the logged offer's
    principal, rate and term when the programme prices on the offer and one was made; else the
    amount asked at the file's `annual_rate`, else at the programme's reference rate. Adds
    `principal_cny`, `annual_rate` and `rate_source`; the count of each source goes to `notes`."""
    import pandas as pd

    def numbers(column: str) -> pd.Series:
        if column not in eligible:
            return pd.Series(np.nan, index=eligible.index, dtype="float64")
        return pd.to_numeric(eligible[column], errors="coerce").astype("float64")

    reference = programme.subsidy.reference_annual_rate
    offered = (
        numbers("offer_principal_cny").notna()
        & numbers("offer_annual_rate").notna()
        & numbers("offer_term_months").notna()
    )
    if programme.subsidy.interest_at != "offer":
        offered[:] = False
    asked_rate = numbers("annual_rate")
    eligible["principal_cny"] = numbers("offer_principal_cny").where(offered, eligible["amount_cny"])
    eligible["term_months"] = numbers("offer_term_months").where(offered, eligible["term_months"])
    eligible["annual_rate"] = numbers("offer_annual_rate").where(offered, asked_rate.fillna(reference))
    eligible["rate_source"] = np.where(
        offered, OFFER_RATE, np.where(asked_rate.notna(), FILE_RATE, REFERENCE_RATE)
    )
    counts = eligible["rate_source"].value_counts()
    used = [
        f"{label} for {int(counts[source]):,}" for source, label in RATE_LABELS.items() if source in counts
    ]
    if used:
        notes.append(f"interest priced on {', '.join(used)} of {len(eligible):,} eligible applications")
    return eligible


def _groups(eligible: pd.DataFrame, profiles: ProfileBook) -> pd.DataFrame:
    """Group labels per eligible application, for reach by group (the fairness audit's labels)."""
    import pandas as pd

    from monitoring.fairness import protected_groups

    member_profiles = pd.DataFrame({"member_id": eligible["member_id"].unique()})
    member_profiles = member_profiles.assign(**profiles.columns(member_profiles["member_id"].to_numpy()))
    for flag in ("returning_youth", "left_behind_woman"):
        member_profiles[flag] = member_profiles[flag].map(lambda v: None if np.isnan(v) else bool(v))
    groups = protected_groups(member_profiles, eligible[["member_id", "applied_at"]])
    if "has_prior_loan" in eligible:
        prior = pd.to_numeric(eligible["has_prior_loan"], errors="coerce").to_numpy(np.float64)
        groups["first_loan"] = np.where(np.isnan(prior), "unknown", np.where(prior == 0, "true", "false"))
    else:
        groups["first_loan"] = "unknown"
    return groups.reset_index(drop=True)


def rule_summary(run: AllocationRun, allocation: Allocation) -> dict[str, Any]:
    """One rule's answer in figures: households, value, budget used, expected loss, reach by group
    and by county, and how the solver finished."""
    chosen = allocation.chosen
    e = run.eligible
    p = run.loaded.programme
    budget = sum(b.amount_cny for b in p.budgets)
    ceiling = p.loss_ceiling.max_expected_loss_cny * len(p.periods)
    used = float(e.loc[chosen, "subsidy_cny"].sum())
    loss = float(e.loc[chosen, "expected_loss_cny"].sum())
    households = int(e.loc[chosen, "member_id"].nunique())
    by_county = []
    for b in p.budgets:
        mine = chosen & (e["county_id"] == b.county_id).to_numpy() & (e["period"] == b.period).to_numpy()
        spent = float(e.loc[mine, "subsidy_cny"].sum())
        by_county.append(
            {
                "county_id": b.county_id,
                "period": b.period,
                "eligible": int(((e["county_id"] == b.county_id) & (e["period"] == b.period)).sum()),
                "households": int(e.loc[mine, "member_id"].nunique()),
                "subsidy_cny": round(spent, 2),
                "budget_cny": b.amount_cny,
                "budget_used_share": spent / b.amount_cny if b.amount_cny else None,
            }
        )
    by_group = []
    for column in GROUP_COLUMNS:
        labels = run.groups[column]
        for group in sorted(labels.unique()):
            mine = (labels == group).to_numpy()
            by_group.append(
                {
                    "attribute": column,
                    "group": str(group),
                    "eligible": int(mine.sum()),
                    "eligible_share": float(mine.mean()) if len(mine) else None,
                    "households": int((mine & chosen).sum()),
                    "share": float((mine & chosen).sum() / chosen.sum()) if chosen.sum() else None,
                }
            )
    return {
        "rule": allocation.rule,
        "households": households,
        "value": round(allocation.objective, 6),
        "subsidy_cny": round(used, 2),
        "budget_cny": budget,
        "budget_used_share": used / budget if budget else None,
        "expected_loss_cny": round(loss, 2),
        "loss_ceiling_cny": ceiling,
        "loss_used_share": loss / ceiling if ceiling else None,
        "mean_pd": float(e.loc[chosen, "pd"].mean()) if chosen.any() else None,
        "mean_amount_cny": float(e.loc[chosen, "principal_cny"].mean()) if chosen.any() else None,
        "seconds": round(allocation.seconds, 4),
        "status": allocation.status,
        "bound": allocation.bound,
        "gap": allocation.gap,
        "by_county": by_county,
        "by_group": by_group,
    }
