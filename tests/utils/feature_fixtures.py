"""Small cooperative worlds in the real storage layout, for feature tests (keyword-only factories).

`World` holds events, applications and outcomes as plain dicts and writes them exactly as ingestion
does: `events/event_type=<type>/part-*.parquet` with the contract schema, and
`tables/<name>/part-*.parquet`. `worlds()` is a hypothesis strategy with late records, duplicates
and times on a coarse grid, so boundaries (event_time == as_of, recorded_at == as_of, window edges)
are hit often.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

from features.contracts import (
    EVENT_CONTRACTS,
    EVENT_TYPES,
    GREEN_PRACTICES,
    INPUT_CATEGORIES,
    MEMBERSHIP_ROLES,
    PAYMENT_DIRECTIONS,
    PRODUCE_PRODUCTS,
    QUALITY_GRADES,
    REFERENCE_CONTRACTS,
    TRAINING_TOPICS,
)

T0 = datetime(2023, 1, 1, tzinfo=UTC)
MEMBERS = ("m0", "m1", "m2", "m3")
COOPS = ("c0", "c1")
VILLAGES = ("v0", "v1", "v2")


def at(days: float) -> datetime:
    """T0 plus a number of days (the fixtures' clock)."""
    return T0 + timedelta(days=days)


def event(
    event_type: str,
    *,
    event_id: str,
    member_id: str,
    coop_id: str,
    event_time: datetime,
    recorded_at: datetime | None = None,
    **payload: Any,
) -> dict[str, Any]:
    """One event row; payload fields default to a valid value for its type."""
    row: dict[str, Any] = {
        "event_id": event_id,
        "member_id": member_id,
        "coop_id": coop_id,
        "event_type": event_type,
        "event_time": event_time,
        "recorded_at": recorded_at or event_time,
    }
    row.update(default_payload(event_type, event_time))
    row.update(payload)
    return row


def default_payload(event_type: str, event_time: datetime) -> dict[str, Any]:
    """A valid payload for each type (overridden by the caller's fields)."""
    due = event_time + timedelta(days=180)
    payloads: dict[str, dict[str, Any]] = {
        "membership": {"action": "join", "role": "member", "village_id": "v0"},
        "produce_delivery": {
            "product": "玉米",
            "quantity_kg": 100.0,
            "amount_cny": 500.0,
            "quality_grade": "A",
        },
        "input_purchase": {"category": "seed", "amount_cny": 200.0, "on_credit": False},
        "savings_deposit": {"amount_cny": 100.0},
        "savings_withdrawal": {"amount_cny": 50.0},
        "loan_disbursement": {"loan_id": "L1", "amount_cny": 3000.0, "due_date": due},
        "loan_repayment": {"loan_id": "L1", "amount_cny": 500.0, "due_date": due, "days_late": 0},
        "meeting_attendance": {},
        "training_completed": {"topic": "agronomy"},
        "mobile_payment": {"direction": "in", "amount_cny": 80.0},
        "green_practice": {"practice": "straw_return", "verified": True},
    }
    return payloads[event_type]


def write_events(events_dir: Path, events: Iterable[dict[str, Any]], *, parts: int = 2) -> None:
    """Write events in the event-log layout, each type split over up to `parts` files."""
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in events:
        by_type[row["event_type"]].append(row)
    for event_type, rows in by_type.items():
        contract = EVENT_CONTRACTS[event_type]
        folder = events_dir / f"event_type={event_type}"
        folder.mkdir(parents=True, exist_ok=True)
        chunk = max(1, -(-len(rows) // parts))
        for i in range(0, len(rows), chunk):
            part = [{k: r.get(k) for k in contract.names} for r in rows[i : i + chunk]]
            table = pa.Table.from_pylist(part, schema=contract.arrow_schema())
            pq.write_table(table, folder / f"part-{i // chunk:05d}.parquet")


def write_table(tables_dir: Path, name: str, rows: Iterable[dict[str, Any]]) -> None:
    """Write one reference table in the `tables/<name>/part-00000.parquet` layout."""
    contract = REFERENCE_CONTRACTS[name]
    folder = tables_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    part = [{k: r.get(k) for k in contract.names} for r in rows]
    table = pa.Table.from_pylist(part, schema=contract.arrow_schema())
    pq.write_table(table, folder / "part-00000.parquet")


@dataclass(frozen=True)
class World:
    """Events, applications and outcomes of a small cooperative world."""

    events: tuple[dict[str, Any], ...] = ()
    applications: tuple[dict[str, Any], ...] = ()
    outcomes: tuple[dict[str, Any], ...] = ()
    profiles: tuple[dict[str, Any], ...] = field(default=())

    def write(self, root: Path) -> tuple[Path, Path]:
        """Write to `root/events` and `root/tables`; returns (events_dir, tables_dir)."""
        events_dir, tables_dir = root / "events", root / "tables"
        events_dir.mkdir(parents=True, exist_ok=True)
        write_events(events_dir, self.events)
        write_table(tables_dir, "applications", self.applications)
        write_table(tables_dir, "outcomes", self.outcomes)
        if self.profiles:
            write_table(tables_dir, "member_profiles", self.profiles)
        return events_dir, tables_dir

    def with_events(self, *extra: dict[str, Any]) -> World:
        """The same world with more events."""
        return replace(self, events=self.events + tuple(extra))

    def application_frame(self) -> pd.DataFrame:
        """Applications as a pandas frame with the contract columns."""
        contract = REFERENCE_CONTRACTS["applications"]
        rows = [{k: r.get(k) for k in contract.names} for r in self.applications]
        frame: pd.DataFrame = pa.Table.from_pylist(rows, schema=contract.arrow_schema()).to_pandas()
        return frame


def profiles_for(members: Iterable[str]) -> tuple[dict[str, Any], ...]:
    """Member profiles with protected attributes (features must never read them)."""
    return tuple(
        {
            "member_id": m,
            "gender": ("female", "male")[i % 2],
            "birth_year": 1970 + i,
            "returning_youth": i % 3 == 0,
            "left_behind_woman": i % 2 == 0,
            "county_id": f"k{i % 2}",
        }
        for i, m in enumerate(members)
    )


# --------------------------------------------------------------------------------------------------
# Hypothesis strategies
# --------------------------------------------------------------------------------------------------

_DAY = st.integers(min_value=0, max_value=760)
_AMOUNT = st.integers(min_value=0, max_value=40_000).map(lambda x: x / 4)
# Mostly prompt records, some late by months, a few recorded before they happened.
_LAG = st.one_of(
    st.just(0.0),
    st.sampled_from([0.5, 1.0, 2.0]),
    st.integers(min_value=20, max_value=400).map(float),
    st.just(-1.0),
)


def _payload(event_type: str) -> st.SearchStrategy[dict[str, Any]]:
    amount = {"amount_cny": _AMOUNT}
    fields: dict[str, st.SearchStrategy[Any]] = {
        "membership": {
            "action": st.sampled_from(("join", "join", "leave")),
            "role": st.sampled_from(MEMBERSHIP_ROLES),
            "village_id": st.sampled_from(VILLAGES),
        },
        "produce_delivery": {
            "product": st.sampled_from(PRODUCE_PRODUCTS[:4]),
            "quantity_kg": _AMOUNT,
            "amount_cny": _AMOUNT,
            "quality_grade": st.sampled_from(QUALITY_GRADES),
        },
        "input_purchase": {
            "category": st.sampled_from(INPUT_CATEGORIES),
            "on_credit": st.booleans(),
            **amount,
        },
        "savings_deposit": amount,
        "savings_withdrawal": amount,
        "loan_disbursement": {"loan_id": st.sampled_from(("L1", "L2")), **amount},
        "loan_repayment": {
            "loan_id": st.sampled_from(("L1", "L2")),
            "days_late": st.sampled_from((0, 0, 0, 3, 30, 61)),
            **amount,
        },
        "meeting_attendance": {},
        "training_completed": {"topic": st.sampled_from(TRAINING_TOPICS)},
        "mobile_payment": {"direction": st.sampled_from(PAYMENT_DIRECTIONS), **amount},
        "green_practice": {
            "practice": st.sampled_from(GREEN_PRACTICES),
            "verified": st.booleans(),
        },
    }[event_type]
    return st.fixed_dictionaries(fields)  # type: ignore[arg-type]


@st.composite
def events_of(
    draw: st.DrawFn, *, event_types: tuple[str, ...] = EVENT_TYPES, max_size: int = 40
) -> list[dict[str, Any]]:
    """Random events (unique ids) on a day/half-day grid, with late records."""
    rows = []
    count = draw(st.integers(min_value=0, max_value=max_size))
    for i in range(count):
        event_type = draw(st.sampled_from(event_types))
        member = draw(st.sampled_from(MEMBERS))
        day = draw(_DAY) + draw(st.sampled_from((0.0, 0.5)))
        lag = draw(_LAG)
        payload = draw(_payload(event_type))
        rows.append(
            event(
                event_type,
                event_id=f"e{i}",
                member_id=member,
                coop_id=draw(st.sampled_from(COOPS)),
                event_time=at(day),
                recorded_at=at(day + lag),
                **payload,
            )
        )
    return rows


@st.composite
def worlds(draw: st.DrawFn, *, max_events: int = 40, max_applications: int = 6) -> World:
    """A random world: memberships, events, re-sent duplicates, applications and outcomes."""
    rows = draw(events_of(max_size=max_events))
    for member in MEMBERS:
        for j in range(draw(st.integers(min_value=0, max_value=2))):
            day = draw(_DAY) / 2  # joins tend to come early
            payload = draw(_payload("membership"))
            rows.append(
                event(
                    "membership",
                    event_id=f"j-{member}-{j}",
                    member_id=member,
                    coop_id=draw(st.sampled_from(COOPS)),
                    event_time=at(day),
                    recorded_at=at(day + draw(_LAG)),
                    **payload,
                )
            )
    # Duplicates: the same event_id again - an exact copy, a re-send recorded later, or a copy
    # whose payload or event_time differs (a conflicting re-send).
    if rows:
        for index in draw(st.lists(st.integers(0, len(rows) - 1), max_size=6)):
            copy = dict(rows[index])
            copy["recorded_at"] += timedelta(days=draw(st.sampled_from((0, 0, 3, 90, -2))))
            variant = draw(st.sampled_from(("same", "same", "payload", "time")))
            if variant == "payload" and copy.get("amount_cny") is not None:
                copy["amount_cny"] = copy["amount_cny"] + 1.5
            elif variant == "time":
                copy["event_time"] += timedelta(days=draw(st.sampled_from((-40, 1, 40))))
            rows.append(copy)
    applications, outcomes = [], []
    for i in range(draw(st.integers(min_value=1, max_value=max_applications))):
        applied = at(draw(_DAY) + draw(st.sampled_from((0.0, 0.5))))
        applications.append(
            {
                "application_id": f"a{i}",
                "member_id": draw(st.sampled_from(MEMBERS)),
                "coop_id": draw(st.sampled_from(COOPS)),
                "applied_at": applied,
                "amount_cny": float(draw(st.integers(min_value=0, max_value=50_000))),
                "term_months": draw(st.integers(min_value=1, max_value=36)),
                "purpose": "farm_inputs",
            }
        )
        if draw(st.booleans()):
            outcomes.append(
                {
                    "application_id": f"a{i}",
                    "defaulted": draw(st.booleans()),
                    "observed_at": applied + timedelta(days=draw(st.integers(min_value=-10, max_value=400))),
                }
            )
    return World(events=tuple(rows), applications=tuple(applications), outcomes=tuple(outcomes))


def future_events(
    *, member_id: str, coop_id: str, as_of: datetime, seed_days: Iterable[float]
) -> list[dict[str, Any]]:
    """Events the builder must ignore as of `as_of`: each type, happened at/after it or recorded
    after it (a late record of an old event)."""
    rows = []
    for i, days in enumerate(seed_days):
        for event_type in EVENT_TYPES:
            late_old = event(
                event_type,
                event_id=f"late-{event_type}-{i}",
                member_id=member_id,
                coop_id=coop_id,
                event_time=as_of - timedelta(days=days),
                recorded_at=as_of + timedelta(microseconds=1),
                village_id="v-new",
            )
            future = event(
                event_type,
                event_id=f"future-{event_type}-{i}",
                member_id=member_id,
                coop_id=coop_id,
                event_time=as_of + timedelta(days=days - days),
                recorded_at=as_of - timedelta(days=days),
                village_id="v-new",
            )
            rows += [late_old, future]
    return rows


def seeded_world(*, seed: int, members: int = 30, events: int = 1_500, applications: int = 60) -> World:
    """A deterministic, busier world (plain `random`): for parity and CLI tests."""
    import random

    rng = random.Random(seed)
    member_ids = [f"m{i:03d}" for i in range(members)]
    coop_of = {m: f"c{rng.randrange(3)}" for m in member_ids}
    rows = [
        event(
            "membership",
            event_id=f"join-{m}",
            member_id=m,
            coop_id=coop_of[m],
            event_time=at(rng.uniform(0, 200)),
            village_id=f"v{rng.randrange(5)}",
            role=rng.choice(MEMBERSHIP_ROLES),
        )
        for m in member_ids
    ]
    kinds = [t for t in EVENT_TYPES if t != "membership"]
    for i in range(events):
        kind = rng.choice(kinds)
        member = rng.choice(member_ids)
        day = rng.uniform(0, 700)
        late = rng.random() < 0.1
        payload = {
            "amount_cny": round(rng.uniform(0, 5_000), 2),
            "on_credit": rng.random() < 0.3,
            "days_late": rng.choice((0, 0, 0, 0, 7, 45)),
            "direction": rng.choice(PAYMENT_DIRECTIONS),
            "product": rng.choice(PRODUCE_PRODUCTS),
            "topic": rng.choice(TRAINING_TOPICS),
        }
        rows.append(
            event(
                kind,
                event_id=f"ev-{i}",
                member_id=member,
                coop_id=coop_of[member],
                event_time=at(day),
                recorded_at=at(day + (rng.uniform(1, 90) if late else rng.uniform(0, 0.5))),
                **{k: v for k, v in payload.items() if k in EVENT_CONTRACTS[kind].names},
            )
        )
    apps, outcomes = [], []
    for i in range(applications):
        member = rng.choice(member_ids)
        applied = at(rng.uniform(250, 700))
        apps.append(
            {
                "application_id": f"app-{i}",
                "member_id": member,
                "coop_id": coop_of[member],
                "applied_at": applied,
                "amount_cny": float(rng.randrange(500, 30_000)),
                "term_months": rng.choice((6, 12, 24)),
                "purpose": "farm_inputs",
            }
        )
        outcomes.append(
            {
                "application_id": f"app-{i}",
                "defaulted": rng.random() < 0.2,
                "observed_at": applied + timedelta(days=rng.uniform(30, 200)),
            }
        )
    return World(
        events=tuple(rows),
        applications=tuple(apps),
        outcomes=tuple(outcomes),
        profiles=profiles_for(member_ids),
    )
