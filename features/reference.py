"""Naive oracle: the same features, one spine row at a time, in plain pandas/Python.

Like Feast's `tests/utils/feature_records.py`, this re-derives every feature straight from the
declarations' meaning with obvious code (filter the member's events, apply the point-in-time rule,
aggregate), sharing nothing with the SQL compiler but the declarations. Tests compare it with
`features.offline.build_features`; the benchmark times it as the naive peer. Slow by design.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from features.catalog import Condition, Feature, FeatureRegistry, default_registry
from features.contracts import (
    APPLICATION_CONTRACT,
    EVENT_CONTRACTS,
    EVENT_PAYLOADS,
    EVENT_TYPES,
    OUTCOME_CONTRACT,
    TableContract,
)

_NAN = float("nan")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A month of elapsed time: 365.25 days / 12, written out here independently of the compiler.
_MONTH = timedelta(days=30.4375)
_SECOND = timedelta(seconds=1)

Event = dict[str, Any]


def _read(folder: Path, contract: TableContract, member_ids: set[str] | None) -> list[Event]:
    """All `part-*.parquet` rows of one folder as dicts (tz-aware UTC datetimes)."""
    files = sorted(folder.glob("part-*.parquet"))
    if not files:
        return []
    filters = [("member_id", "in", sorted(member_ids))] if member_ids is not None else None
    table = pq.read_table(
        [str(f) for f in files],
        filters=filters,
        schema=contract.arrow_schema(),
        partitioning=None,
    )
    rows: list[Event] = table.to_pylist()
    return rows


def _nulls_last(value: Any) -> tuple[bool, Any]:
    return (value is None, value)


def _first_copies(events: list[Event], event_type: str) -> list[Event]:
    """One row per event_id: the earliest-recorded copy (ties: earlier event_time, then payload).

    Called on the copies already visible as of the row's as_of.
    """
    order = ["recorded_at", "event_time", *(c.name for c in EVENT_PAYLOADS[event_type])]
    kept: dict[str, Event] = {}
    for row in sorted(events, key=lambda r: tuple(_nulls_last(r[c]) for c in order)):
        kept.setdefault(row["event_id"], row)
    return list(kept.values())


def load_event_log(events_dir: Path, *, member_ids: Iterable[str] | None = None) -> dict[str, list[Event]]:
    """Each event type's stored rows (every copy); `member_ids` limits all types but membership."""
    wanted = set(member_ids) if member_ids is not None else None
    log: dict[str, list[Event]] = {}
    for event_type in EVENT_TYPES:
        # Membership is always read whole: peers need every member's cooperative and village.
        scope = None if event_type == "membership" else wanted
        folder = events_dir / f"event_type={event_type}"
        log[event_type] = _read(folder, EVENT_CONTRACTS[event_type], scope)
    return log


def _elapsed(since: datetime, until: datetime) -> timedelta:
    """Time from `since` to `until`, each read to the whole second (sub-second digits dropped)."""
    return ((until - _EPOCH) // _SECOND - (since - _EPOCH) // _SECOND) * _SECOND


def _visible(events: Iterable[Event], as_of: datetime) -> list[Event]:
    """The bitemporal rule: happened before as_of, and known by as_of."""
    return [e for e in events if e["event_time"] < as_of and e["recorded_at"] <= as_of]


def _latest(events: list[Event]) -> Event | None:
    """The latest event (ties: larger event_id; copies of one id: earliest recorded), or None."""
    if not events:
        return None
    return max(events, key=lambda e: (e["event_time"], e["event_id"], _EPOCH - e["recorded_at"]))


def _matches(row: Event, cond: Condition) -> bool:
    value = row[cond.column]
    if value is None:
        return False
    if cond.op == "is_true":
        return value is True
    if cond.op == "is_false":
        return value is False
    if cond.op == "in":
        assert isinstance(cond.value, tuple)
        return value in cond.value
    target = cond.value
    outcome: bool = {
        "eq": value == target,
        "ne": value != target,
        "gt": value > target,
        "ge": value >= target,
        "lt": value < target,
        "le": value <= target,
    }[cond.op]
    return outcome


def _in_window(events: list[Event], feature: Feature, as_of: datetime) -> list[Event]:
    rows = events
    if feature.window_days is not None:
        start = as_of - timedelta(days=feature.window_offset_days + feature.window_days)
        end = as_of - timedelta(days=feature.window_offset_days)
        rows = [e for e in rows if start <= e["event_time"] < end]
    return [e for e in rows if all(_matches(e, c) for c in feature.where)]


def _event_value(
    feature: Feature,
    visible: Mapping[str, list[Event]],
    as_of: datetime,
    every_copy: Mapping[str, list[Event]],
) -> Any:
    """One event aggregate, computed the obvious way."""
    column = feature.column or ""
    if feature.aggregation == "latest_in":
        latest = _latest(every_copy[feature.sources[0]])
        return int(latest is not None and latest[column] in feature.values)
    rows = [e for s in feature.sources for e in _in_window(visible[s], feature, as_of)]
    agg = feature.aggregation
    if agg == "count":
        return len(rows)
    if agg in ("sum", "mean", "max"):
        values = [float(e[column]) for e in rows if e[column] is not None]
        if agg == "sum":
            return float(sum(values))
        if not values:
            return _NAN
        return sum(values) / len(values) if agg == "mean" else max(values)
    if agg == "distinct_values":
        spec = next(s for s in EVENT_PAYLOADS[feature.sources[0]] if s.name == column)
        return len({e[column] for e in rows if e[column] in (spec.enum or ())})
    if agg == "distinct_months":
        # Month-long spans counted back from as_of: [0, 1 month) is span 0, and so on.
        return len({_elapsed(e["event_time"], as_of) // _MONTH for e in rows})
    if not rows:
        return _NAN
    times = [e["event_time"] for e in rows]
    first_or_last = min(times) if agg == "months_since_first" else max(times)
    return float(_elapsed(first_or_last, as_of) // _MONTH)  # whole months elapsed


def _derived_value(feature: Feature, values: Mapping[str, Any]) -> Any:
    a = float(values[feature.inputs[0]])
    if feature.aggregation == "is_positive":
        return int(a > 0)
    b = float(values[feature.inputs[1]])
    if feature.aggregation == "difference":
        return a - b
    if feature.aggregation == "ratio":
        return a / b if b != 0 and not math.isnan(b) else _NAN
    total = a + b  # trend
    return (a - b) / total if total != 0 and not math.isnan(total) else _NAN


@dataclass(frozen=True)
class _OutcomeFact:
    application_id: str
    coop_id: str
    village_id: str | None
    defaulted: int
    known_at: datetime


class _Peers:
    """Membership joins and outcome facts, indexed by member / coop / village for lookups."""

    def __init__(self, tables_dir: Path, membership: list[Event]) -> None:
        joins = [e for e in membership if e["action"] == "join"]
        self.joins_by_member: dict[str, list[Event]] = defaultdict(list)
        self.joins_by_coop: dict[str, list[Event]] = defaultdict(list)
        for e in joins:
            self.joins_by_member[e["member_id"]].append(e)
            self.joins_by_coop[e["coop_id"]].append(e)
        self.facts_by_key: dict[tuple[str, str | None], list[_OutcomeFact]] = defaultdict(list)
        for fact in self._outcome_facts(tables_dir):
            self.facts_by_key["cooperative", fact.coop_id].append(fact)
            self.facts_by_key["village", fact.village_id].append(fact)

    def join_of(self, member_id: str, at: datetime) -> Event | None:
        """The member's latest `join` event visible at `at` (their cooperative and village)."""
        return _latest(_visible(self.joins_by_member.get(member_id, []), at))

    def _outcome_facts(self, tables_dir: Path) -> list[_OutcomeFact]:
        """Every outcome with its application's coop, applicant's village then, and known-at."""
        applications: dict[str, Event] = {}
        rows = _read(tables_dir / "applications", APPLICATION_CONTRACT, None)
        for app in sorted(rows, key=lambda r: (r["applied_at"], r["member_id"], r["coop_id"])):
            applications.setdefault(app["application_id"], app)
        outcomes: dict[str, Event] = {}
        for outcome in sorted(
            _read(tables_dir / "outcomes", OUTCOME_CONTRACT, None),
            key=lambda r: (r["observed_at"], r["defaulted"]),
        ):
            outcomes.setdefault(outcome["application_id"], outcome)
        facts = []
        for application_id, outcome in outcomes.items():
            if application_id not in applications:
                continue
            app = applications[application_id]
            join = self.join_of(app["member_id"], app["applied_at"])
            facts.append(
                _OutcomeFact(
                    application_id=application_id,
                    coop_id=app["coop_id"],
                    village_id=None if join is None else join["village_id"],
                    defaulted=int(bool(outcome["defaulted"])),
                    known_at=max(outcome["observed_at"], app["applied_at"]),
                )
            )
        return facts

    def value(
        self,
        feature: Feature,
        *,
        join: Event | None,
        as_of: datetime,
        application_id: str | None,
    ) -> Any:
        """One peer feature for a member whose latest visible join is `join`."""
        if join is None:
            return _NAN if feature.aggregation == "peer_default_rate" else 0
        if feature.aggregation == "member_count":
            seen = _visible(self.joins_by_coop.get(join["coop_id"], []), as_of)
            return len({e["member_id"] for e in seen})
        key = join["coop_id"] if feature.entity == "cooperative" else join["village_id"]
        known = [
            f.defaulted
            for f in self.facts_by_key.get((feature.entity, key), [])
            if f.known_at <= as_of and f.application_id != application_id
        ]
        if feature.aggregation == "peer_outcome_count":
            return len(known)
        return sum(known) / len(known) if known else _NAN


def _application_values(values: Mapping[str, Any], amount: float, term: float) -> dict[str, Any]:
    """Request-time features, written out independently of `features.catalog.application_features`."""
    income = float(values["delivery_amount_365d"])
    balance = float(values["savings_balance"])
    return {
        "application_amount_cny": amount,
        "application_term_months": term,
        "application_amount_to_delivery_income_365d": amount / income if income > 0 else _NAN,
        "application_installment_to_monthly_income": (
            (amount / term) / (income / 12.0) if income > 0 and term > 0 else _NAN
        ),
        "application_amount_to_savings_balance": amount / balance if balance > 0 else _NAN,
    }


def reference_features(
    spine: pd.DataFrame,
    *,
    events_dir: Path,
    tables_dir: Path,
    registry: FeatureRegistry | None = None,
    member_scoped: bool = False,
) -> pd.DataFrame:
    """Every feature for each spine row, computed one row at a time (see `build_features`).

    `member_scoped=True` reads only the spine members' events (plus all membership events), which
    keeps the benchmark's slice small; it assumes duplicates of an event share its member.
    """
    registry = registry or default_registry()
    members = set(spine["member_id"]) if member_scoped else None
    log = load_event_log(events_dir, member_ids=members)
    by_member: dict[str, dict[str, list[Event]]] = {t: defaultdict(list) for t in EVENT_TYPES}
    for event_type, events in log.items():
        for e in events:
            by_member[event_type][e["member_id"]].append(e)
    peers = _Peers(tables_dir, log["membership"])
    records = spine.to_dict("records")
    rows = []
    for request in records:
        as_of = pd.Timestamp(request["as_of"]).tz_convert("UTC").to_pydatetime()
        member_id = str(request["member_id"])
        seen = {t: _visible(by_member[t].get(member_id, []), as_of) for t in EVENT_TYPES}
        # Visible first, then each event_id once: an unseen copy can never hide a seen one.
        visible = {t: _first_copies(seen[t], t) for t in EVENT_TYPES}
        join = peers.join_of(member_id, as_of)
        application_id = request.get("application_id")
        values: dict[str, Any] = {}
        for feature in registry.member_features:
            if feature.is_event_aggregate:
                values[feature.name] = _event_value(feature, visible, as_of, seen)
            elif feature.inputs:
                values[feature.name] = _derived_value(feature, values)
            else:
                values[feature.name] = peers.value(
                    feature,
                    join=join,
                    as_of=as_of,
                    application_id=None if pd.isna(application_id) else str(application_id),
                )
        amount = float(request.get("amount_cny", _NAN))
        term = float(request.get("term_months", _NAN))
        values.update(_application_values(values, amount, term))
        rows.append({"request_id": request["request_id"], "member_id": member_id, "as_of": as_of, **values})
    frame = pd.DataFrame(rows, columns=["request_id", "member_id", "as_of", *registry.names])
    frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True)
    for feature in registry.features:
        frame[feature.name] = frame[feature.name].astype(feature.dtype)
    return frame
