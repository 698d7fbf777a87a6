"""Point-in-time correctness: the DuckDB builder against the naive oracle, leakage, boundaries.

Like Feast's historical-retrieval tests, every feature of `build_features` is compared with
`features.reference` (one application at a time, plain Python) over random event sets with late
records and duplicates; then adding anything not yet visible must change nothing.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.catalog import default_registry
from features.contracts import EVENT_TYPES
from features.offline import (
    DuckDBEngine,
    EngineConfig,
    application_spine,
    build_features,
    compile_feature_sql,
    member_spine,
)
from features.reference import reference_features
from tests.utils.feature_fixtures import (
    MEMBERS,
    World,
    at,
    event,
    events_of,
    worlds,
)

REGISTRY = default_registry()
ENGINE = DuckDBEngine(EngineConfig(threads=1, memory_limit="1GB"))
PROPERTY = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same_features(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Every feature equal (float tolerance, NaN == NaN), with a readable diff on failure."""
    assert list(actual.columns) == list(expected.columns)
    assert actual["request_id"].tolist() == expected["request_id"].tolist()
    problems = []
    for feature in REGISTRY.features:
        a = actual[feature.name].to_numpy(dtype=np.float64)
        b = expected[feature.name].to_numpy(dtype=np.float64)
        same = np.isclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)
        if not same.all():
            rows = np.flatnonzero(~same)[:3]
            problems.append(f"{feature.name}: rows {rows.tolist()} got {a[rows]} want {b[rows]}")
    assert not problems, "\n".join(problems)


def build(world: World, spine: pd.DataFrame | None = None) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as folder:
        events_dir, tables_dir = world.write(Path(folder))
        spine = application_spine(world.application_frame()) if spine is None else spine
        return build_features(spine, events_dir=events_dir, tables_dir=tables_dir, engine=ENGINE)


def build_both(world: World, spine: pd.DataFrame | None = None) -> tuple[pd.DataFrame, ...]:
    with tempfile.TemporaryDirectory() as folder:
        events_dir, tables_dir = world.write(Path(folder))
        spine = application_spine(world.application_frame()) if spine is None else spine
        actual = build_features(spine, events_dir=events_dir, tables_dir=tables_dir, engine=ENGINE)
        expected = reference_features(spine, events_dir=events_dir, tables_dir=tables_dir)
        return actual, expected


# --------------------------------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------------------------------


@PROPERTY
@given(world=worlds())
def test_builder_matches_naive_oracle(world: World) -> None:
    actual, expected = build_both(world)
    assert_same_features(actual, expected)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(max_events=80, max_applications=10))
def test_builder_matches_naive_oracle_many_worlds(world: World) -> None:
    actual, expected = build_both(world)
    assert_same_features(actual, expected)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), world=worlds(max_events=60))
def test_invisible_events_change_no_feature_many_worlds(data: st.DataObject, world: World) -> None:
    check_invisible_events_change_nothing(data, world)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), day=st.integers(min_value=0, max_value=800))
def test_member_spine_matches_oracle(world: World, day: int) -> None:
    """Materialization's spine (every member as of one instant) obeys the same rule."""
    spine = member_spine(list(MEMBERS), at(day))
    actual, expected = build_both(world, spine)
    assert_same_features(actual, expected)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds())
def test_forced_dedupe_equals_skipped_dedupe_without_duplicates(world: World) -> None:
    """Skipping the dedupe step for a type proven duplicate-free yields the same features."""
    unique = World(
        events=tuple({e["event_id"]: e for e in world.events}.values()),
        applications=world.applications,
        outcomes=world.outcomes,
    )
    with tempfile.TemporaryDirectory() as folder:
        events_dir, tables_dir = unique.write(Path(folder))
        spine = application_spine(unique.application_frame())
        con = ENGINE.connect()
        ENGINE.register_sources(con, events_dir=events_dir, tables_dir=tables_dir)
        ENGINE.register_spine(con, spine)
        assert ENGINE.event_types_with_duplicates(con) == set()
        forced = con.sql(compile_feature_sql(REGISTRY, deduplicate=EVENT_TYPES)).df()
        skipped = con.sql(compile_feature_sql(REGISTRY, deduplicate=())).df()
        con.close()
    pd.testing.assert_frame_equal(forced, skipped, rtol=1e-12)


def test_duplicate_check_finds_repeated_ids(tmp_path: Path) -> None:
    rows = [
        event("savings_deposit", event_id="d1", member_id="m0", coop_id="c0", event_time=at(1)),
        event("savings_deposit", event_id="d1", member_id="m0", coop_id="c0", event_time=at(1)),
        event("mobile_payment", event_id="p1", member_id="m0", coop_id="c0", event_time=at(1)),
    ]
    World(events=tuple(rows)).write(tmp_path)
    con = ENGINE.connect()
    ENGINE.register_sources(con, events_dir=tmp_path / "events", tables_dir=tmp_path / "tables")
    assert ENGINE.event_types_with_duplicates(con) == {"savings_deposit"}
    con.close()


# --------------------------------------------------------------------------------------------------
# Leakage: nothing that is not yet visible as of the application may change a feature
# --------------------------------------------------------------------------------------------------


@st.composite
def invisible_events(draw: st.DrawFn, *, as_of: Any, base: World) -> list[dict[str, Any]]:
    """Events that must not count as of `as_of`: happening at/after it, recorded after it, or a
    re-sent copy of a visible event recorded after it."""
    rows = draw(events_of(max_size=30))
    moved = []
    for i, row in enumerate(rows):
        row = dict(row, event_id=f"late-{i}")
        if draw(st.booleans()):  # happens at or after as_of, recorded whenever (even before)
            row["event_time"] = as_of + timedelta(days=draw(st.sampled_from((0, 0, 1, 30))))
            row["recorded_at"] = as_of + timedelta(days=draw(st.sampled_from((-5, 0, 2))))
        else:  # happened before as_of, but recorded only after it (a late record)
            row["event_time"] = as_of - timedelta(days=draw(st.sampled_from((0.5, 10, 200))))
            row["recorded_at"] = as_of + timedelta(microseconds=draw(st.sampled_from((1, 10**6, 10**11))))
        moved.append(row)
    # Re-sent copies of existing events, recorded after as_of.
    for original in draw(st.lists(st.sampled_from(base.events), max_size=4)) if base.events else []:
        copy = dict(original, recorded_at=as_of + timedelta(hours=1))
        if draw(st.booleans()) and copy.get("amount_cny") is not None:
            copy["amount_cny"] += 7.0
        moved.append(copy)
    return moved


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), world=worlds())
def test_invisible_events_change_no_feature(data: st.DataObject, world: World) -> None:
    check_invisible_events_change_nothing(data, world)


def check_invisible_events_change_nothing(data: st.DataObject, world: World) -> None:
    """Build as of one application; add what is not visible then; build again: same features."""
    application = data.draw(st.sampled_from(world.applications))
    as_of = application["applied_at"]
    spine = application_spine(World(applications=(application,)).application_frame())
    before = build(world, spine)

    extra = data.draw(invisible_events(as_of=as_of, base=world))
    # Outcomes and applications that only become known after as_of.
    late_outcomes = tuple(
        {"application_id": a["application_id"], "defaulted": True, "observed_at": as_of + timedelta(days=d)}
        for a, d in zip(world.applications, (1, 0.001, 400), strict=False)
        if a["application_id"] != application["application_id"]
    )
    late_application = {
        **application,
        "application_id": "a-late",
        "applied_at": as_of + timedelta(seconds=1),
    }
    later = World(
        events=world.events + tuple(extra),
        applications=(*world.applications, late_application),
        outcomes=(
            *world.outcomes,
            *late_outcomes,
            {"application_id": "a-late", "defaulted": True, "observed_at": as_of},
        ),
    )
    after = build(later, spine)
    assert_same_features(after, before)


# --------------------------------------------------------------------------------------------------
# Boundaries, spelled out
# --------------------------------------------------------------------------------------------------


def _deposit(event_id: str, event_time: Any, recorded_at: Any, amount: float) -> dict[str, Any]:
    return event(
        "savings_deposit",
        event_id=event_id,
        member_id="m0",
        coop_id="c0",
        event_time=event_time,
        recorded_at=recorded_at,
        amount_cny=amount,
    )


def _one_application(day: float, member: str = "m0") -> dict[str, Any]:
    return {
        "application_id": "a0",
        "member_id": member,
        "coop_id": "c0",
        "applied_at": at(day),
        "amount_cny": 1200.0,
        "term_months": 12,
        "purpose": "farm_inputs",
    }


def test_bitemporal_boundaries_and_windows() -> None:
    t = at(400)
    events = (
        _deposit("at-as-of", t, t - timedelta(days=1), 1.0),  # event_time == as_of: excluded
        _deposit("recorded-at-as-of", t - timedelta(days=2), t, 10.0),  # recorded == as_of: in
        _deposit("recorded-after", t - timedelta(days=2), t + timedelta(microseconds=1), 100.0),
        _deposit("edge-90d", t - timedelta(days=90), t - timedelta(days=90), 1000.0),  # in 90d
        _deposit("just-outside", t - timedelta(days=90, microseconds=1), t - timedelta(days=80), 10_000.0),
        _deposit("dup", t - timedelta(days=5), t - timedelta(days=5), 100_000.0),
        _deposit("dup", t - timedelta(days=5), t - timedelta(days=4), 100_000.0),  # re-sent
    )
    world = World(events=events, applications=(_one_application(400),))
    row = build(world).iloc[0]
    assert row["savings_deposit_amount_90d"] == 10.0 + 1000.0 + 100_000.0
    assert row["savings_deposit_amount_365d"] == 10.0 + 1000.0 + 10_000.0 + 100_000.0
    assert row["savings_deposit_count_365d"] == 4
    assert row["application_amount_cny"] == 1200.0


def _months_world() -> World:
    """m0: one event of each months_since_* source, none after 2023-12-20; m1: a payment every 3 days."""
    last = datetime(2023, 12, 20, 9, 30, tzinfo=UTC)
    m0 = [
        event(
            "membership", event_id="j0", member_id="m0", coop_id="c0", event_time=last - timedelta(days=300)
        ),
        event(
            "produce_delivery",
            event_id="d0",
            member_id="m0",
            coop_id="c0",
            event_time=last - timedelta(days=40),
        ),
        event(
            "savings_deposit",
            event_id="s0",
            member_id="m0",
            coop_id="c0",
            event_time=last - timedelta(days=70),
        ),
        event(
            "loan_disbursement",
            event_id="l0",
            member_id="m0",
            coop_id="c0",
            event_time=last - timedelta(days=200),
        ),
        event(
            "loan_repayment",
            event_id="r0",
            member_id="m0",
            coop_id="c0",
            event_time=last - timedelta(days=9),
            days_late=12,
        ),
        event("meeting_attendance", event_id="g0", member_id="m0", coop_id="c0", event_time=last),
    ]
    start = datetime(2022, 6, 1, 7, tzinfo=UTC)
    m1 = [
        event(
            "mobile_payment",
            event_id=f"p{i}",
            member_id="m1",
            coop_id="c0",
            event_time=start + timedelta(days=3 * i),
        )
        for i in range(260)  # to 2024-06-29: every month of every as_of's window holds several
    ]
    return World(events=(*m0, *m1))


def test_months_are_elapsed_time_not_calendar_months() -> None:
    """A vector must not depend on the day of the month it is computed on (issue 11).

    `months_since_*` counts whole 30.4375-day months from the event: it steps exactly one, two...
    months after the event, never at a calendar month boundary (calendar months moved every value by
    one between Jan 31 and Feb 1). The months with an event in the last 365 days count the same as
    of the 1st and the 15th (calendar months gave 12 and 13).
    """
    month = timedelta(days=30.4375)
    last = datetime(2023, 12, 20, 9, 30, tzinfo=UTC)  # m0's last event: the meeting
    two_months = last + 2 * month  # 2024-02-18 06:30
    moments = {
        "jan31": datetime(2024, 1, 31, tzinfo=UTC),
        "feb01": datetime(2024, 2, 1, tzinfo=UTC),
        "feb15": datetime(2024, 2, 15, tzinfo=UTC),
        "before-two-months": two_months - timedelta(seconds=1),
        "two-months": two_months,
        "mar01": datetime(2024, 3, 1, tzinfo=UTC),
    }
    spine = pd.DataFrame(
        {
            "request_id": [f"{m}@{label}" for m in ("m0", "m1") for label in moments],
            "member_id": [m for m in ("m0", "m1") for _ in moments],
            "as_of": pd.to_datetime([t for _ in ("m0", "m1") for t in moments.values()], utc=True),
        }
    )
    actual, expected = build_both(_months_world(), spine)
    assert_same_features(actual, expected)
    rows = actual.set_index("request_id")
    # The event each months_since_* feature of m0 counts from (see `_months_world`).
    counted_from = {
        "delivery_months_since_last": last - timedelta(days=40),
        "savings_months_since_last_deposit": last - timedelta(days=70),
        "prior_loan_months_since_last": last - timedelta(days=200),
        "months_since_last_late_payment": last - timedelta(days=9),
        "meeting_months_since_last": last,
        "coop_tenure_months": last - timedelta(days=300),
        "history_months": last - timedelta(days=300),
        "months_since_last_activity": last,
    }
    since = {f.name for f in REGISTRY.member_features if f.aggregation.startswith("months_since_")}
    assert since == set(counted_from)
    for name, event_time in counted_from.items():
        got = rows.loc[[f"m0@{label}" for label in moments], name].tolist()
        want = [float((moment - event_time) // month) for moment in moments.values()]
        assert got == want, name
    meeting = rows["meeting_months_since_last"]
    assert meeting["m0@jan31"] == meeting["m0@feb01"] == meeting["m0@feb15"] == 1.0
    assert (meeting["m0@before-two-months"], meeting["m0@two-months"]) == (1.0, 2.0)
    counts = rows.loc[[f"m1@{label}" for label in moments], "mobile_months_365d"].tolist()
    assert counts == [12] * len(moments)


def test_missing_and_empty_sources_give_neutral_features(tmp_path: Path) -> None:
    """No events of any type, no outcomes: counts 0, sums 0, rates and recency NaN."""
    world = World(applications=(_one_application(10, member="nobody"),))
    events_dir, tables_dir = world.write(tmp_path)
    (events_dir / "event_type=mobile_payment").mkdir()  # a type folder with no files yet
    spine = application_spine(world.application_frame())
    row = build_features(spine, events_dir=events_dir, tables_dir=tables_dir, engine=ENGINE).iloc[0]
    assert row["event_count_365d"] == 0
    assert row["delivery_amount_365d"] == 0.0
    assert row["has_prior_loan"] == 0
    assert np.isnan(row["coop_past_default_rate"])
    assert np.isnan(row["history_months"])
    assert np.isnan(row["application_amount_to_delivery_income_365d"])


def test_peer_default_rate_uses_known_outcomes_and_excludes_own_application() -> None:
    join = [
        event("membership", event_id=f"j-{m}", member_id=m, coop_id="c0", event_time=at(0), village_id="v0")
        for m in ("m0", "m1", "m2")
    ]
    applications = [
        {**_one_application(100, "m1"), "application_id": "old-default"},
        {**_one_application(110, "m2"), "application_id": "old-repaid"},
        {**_one_application(120, "m2"), "application_id": "not-yet-known"},
        {**_one_application(300, "m0"), "application_id": "scored"},
    ]
    outcomes = [
        {"application_id": "old-default", "defaulted": True, "observed_at": at(200)},
        {"application_id": "old-repaid", "defaulted": False, "observed_at": at(300)},  # == as_of
        {"application_id": "not-yet-known", "defaulted": True, "observed_at": at(301)},
        {"application_id": "scored", "defaulted": True, "observed_at": at(250)},  # own: excluded
    ]
    world = World(events=tuple(join), applications=tuple(applications), outcomes=tuple(outcomes))
    frame = build(world).set_index("request_id")
    scored = frame.loc["scored"]
    assert scored["coop_past_outcome_count"] == 2
    assert scored["coop_past_default_rate"] == 0.5
    assert scored["village_past_default_rate"] == 0.5
    assert scored["coop_member_count"] == 3
    assert frame.loc["old-default", "coop_past_outcome_count"] == 0


def test_late_join_record_does_not_move_member_before_it_is_known() -> None:
    events = (
        event("membership", event_id="j1", member_id="m0", coop_id="c0", event_time=at(0), village_id="v0"),
        # Moved to c1 on day 50, but the record only arrives on day 500.
        event(
            "membership",
            event_id="j2",
            member_id="m0",
            coop_id="c1",
            event_time=at(50),
            recorded_at=at(500),
            village_id="v1",
        ),
        event("membership", event_id="j3", member_id="m1", coop_id="c1", event_time=at(0), village_id="v1"),
    )
    spine = pd.concat(
        [member_spine(["m0"], at(400)), member_spine(["m0"], at(600)).assign(request_id="later")]
    )
    frame = build(World(events=events), spine.reset_index(drop=True)).set_index("request_id")
    assert frame.loc["m0", "coop_member_count"] == 1  # still counted in c0 alone
    assert frame.loc["later", "coop_member_count"] == 2  # now known to be in c1 with m1
    assert frame.loc["later", "coop_tenure_months"] == frame.loc["later", "history_months"]


def test_spine_validation() -> None:
    spine = member_spine(["m0"], at(1))
    with pytest.raises(ValueError, match="unique"):
        build(World(), pd.concat([spine, spine]))
    with pytest.raises(ValueError, match="timezone-aware"):
        build(World(), spine.assign(as_of=spine["as_of"].dt.tz_localize(None)))
