"""Sanity of a simulated world: outcome rates, the oracle, thin files, the export contract, injected
feed faults, the proxy trap and the drift scenarios.

One small world (3k members x 14 months, all scenarios) is simulated once per session; the event
files are parsed here independently of the ingestion code, with a strict contract check, so the
tests catch both a simulator that drifts from the contract and fault counts that are not honest.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.contracts import (
    EVENT_PAYLOADS,
    EVENT_TYPES,
    WIDE_EVENT_CONTRACT,
)
from simulator.scenarios import Scenario
from simulator.world import SimulationConfig, SimulationSummary, simulate_world

MONTHS = 14
ONSET = 8
CONFIG = SimulationConfig(
    members=3_000,
    months=MONTHS,
    seed=11,
    scenarios=(
        Scenario("drought", ONSET),
        Scenario("new_coop", ONSET),
        Scenario("unit_fen", ONSET, coop_id="coop-02-01"),
    ),
)
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
NAMES = WIDE_EVENT_CONTRACT.names
FIELD_SPECS = {spec.name: spec for payload in EVENT_PAYLOADS.values() for spec in payload}


@dataclass
class ParsedFeed:
    """Every row of every event file, split into well-formed rows and rejects."""

    good: list[dict[str, Any]] = field(default_factory=list)
    rejects: Counter[str] = field(default_factory=Counter)
    files: dict[str, int] = field(default_factory=dict)  # relative path -> rows
    header_ok: bool = True


@dataclass
class World:
    out: Path
    summary: SimulationSummary
    manifest: dict[str, Any]
    feed: ParsedFeed
    events: pd.DataFrame  # well-formed rows, typed
    members: pd.DataFrame  # truth/members.parquet
    applications: pd.DataFrame  # truth/applications.parquet


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _problem(row: dict[str, Any], world_end: datetime) -> str | None:
    """Why a parsed row breaks the contract, or None if it is well-formed."""
    for name in ("event_id", "member_id", "coop_id", "event_type", "event_time", "recorded_at"):
        if row.get(name) in (None, ""):
            return f"missing {name}"
    event_type = row["event_type"]
    if event_type not in EVENT_PAYLOADS:
        return "unknown event_type"
    for name in ("event_time", "recorded_at"):
        if not ISO.match(str(row[name])):
            return f"bad {name}"
    event_time, recorded_at = _time(row["event_time"]), _time(row["recorded_at"])
    if event_time >= world_end:
        return "event in the future"
    if recorded_at < event_time:
        return "recorded before event"
    payload = {spec.name for spec in EVENT_PAYLOADS[event_type]}
    for name, spec in FIELD_SPECS.items():
        value = row.get(name)
        if name not in payload:
            if value not in (None, ""):
                return f"{name} set on {event_type}"
            continue
        if value in (None, ""):
            return f"missing {name}"
        kind = str(spec.type)
        if kind == "double":
            try:
                number = float(value)
            except ValueError:
                return f"non-numeric {name}"
            if spec.minimum is not None and number < spec.minimum:
                return f"negative {name}"
        elif kind == "int32":
            if not re.fullmatch(r"\d+", str(value)):
                return f"bad {name}"
        elif kind == "bool":
            if value not in (True, False, "true", "false"):
                return f"bad {name}"
        elif kind.startswith("timestamp"):
            if not ISO.match(str(value)):
                return f"bad {name}"
        elif spec.enum is not None and value not in spec.enum:
            return f"unknown {name}"
    return None


def _parse_feed(out: Path, world_end: datetime) -> ParsedFeed:
    feed = ParsedFeed()
    for path in sorted((out / "events").glob("*/*")):
        relative = path.relative_to(out).as_posix()
        rows: list[dict[str, Any] | None] = []
        if path.suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as handle:
                reader = csv.reader(handle)
                feed.header_ok &= next(reader) == NAMES
                for cells in reader:
                    rows.append(dict(zip(NAMES, cells, strict=True)) if len(cells) == len(NAMES) else None)
        else:
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    rows.append(None)
                    continue
                feed.header_ok &= set(record) <= set(NAMES)
                rows.append(record)
        feed.files[relative] = len(rows)
        for row in rows:
            problem = "broken line" if row is None else _problem(row, world_end)
            if problem is None:
                assert row is not None
                row["file"] = relative
                feed.good.append(row)
            else:
                feed.rejects[problem] += 1
    return feed


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    out = tmp_path_factory.mktemp("world")
    summary = simulate_world(CONFIG, out)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    world_end = _time(manifest["world"]["end"])
    feed = _parse_feed(out, world_end)
    events = pd.DataFrame(feed.good)
    events["event_time"] = pd.to_datetime(events["event_time"], utc=True)
    events["recorded_at"] = pd.to_datetime(events["recorded_at"], utc=True)
    events["amount_cny"] = pd.to_numeric(events["amount_cny"].replace("", None))
    return World(
        out=out,
        summary=summary,
        manifest=manifest,
        feed=feed,
        events=events,
        members=pd.read_parquet(out / "truth" / "members.parquet"),
        applications=pd.read_parquet(out / "truth" / "applications.parquet"),
    )


# --- outcomes and the oracle ------------------------------------------------------------------


def test_default_rate_is_realistic(world: World) -> None:
    assert 0.03 <= world.summary.default_rate <= 0.15
    assert world.summary.default_rate == pytest.approx(world.applications["defaulted"].mean(), abs=1e-6)


def test_oracle_auc_shows_true_pd_is_informative(world: World) -> None:
    assert world.summary.oracle_auc > 0.7


def test_most_applicants_have_thin_files(world: World) -> None:
    apps = world.applications
    assert world.summary.thin_file_share >= 0.5
    assert world.summary.thin_file_share == pytest.approx(1 - apps["prior_coop_loan"].mean(), abs=1e-6)
    assert world.summary.recent_join_share > 0.15


def test_outcomes_are_only_those_observed_by_world_end(world: World) -> None:
    outcomes = pd.read_csv(world.out / "outcomes" / "outcomes.csv", dtype=str)
    end = pd.Timestamp(world.manifest["world"]["end"])
    observed = pd.to_datetime(outcomes["observed_at"], utc=True)
    assert (observed <= end).all()
    apps = world.applications.set_index("application_id")
    joined = outcomes.set_index("application_id").join(apps, rsuffix="_truth")
    assert (joined["defaulted"] == joined["defaulted_truth"].map({True: "true", False: "false"})).all()
    # Non-defaults are observed 12 months after applying, defaults at 90 days past due within 12.
    lag = observed.to_numpy() - pd.to_datetime(joined["applied_at"]).to_numpy()
    assert (lag <= np.timedelta64(366, "D")).all()
    assert len(outcomes) == world.summary.outcomes < world.summary.applications


def test_applications_file_matches_truth(world: World) -> None:
    apps = pd.read_csv(world.out / "applications" / "applications.csv", dtype=str)
    assert list(apps.columns) == [
        "application_id",
        "member_id",
        "coop_id",
        "applied_at",
        "amount_cny",
        "term_months",
        "purpose",
    ]
    assert apps["application_id"].is_unique
    assert list(apps["application_id"]) == list(world.applications["application_id"])
    assert "true_pd" not in apps.columns


# --- the export contract -----------------------------------------------------------------------


def test_event_files_follow_the_layout(world: World) -> None:
    files = world.feed.files
    assert files and world.feed.header_ok
    assert set(files) == set(world.manifest["event_files"])
    assert all(re.fullmatch(r"events/[a-z0-9-]+/\d{4}-\d{2}\.(csv|jsonl)", f) for f in files)
    assert {f: r["rows"] for f, r in world.manifest["event_files"].items()} == files
    formats = {f.split("/")[1]: f.rsplit(".", 1)[1] for f in files}
    jsonl_share = sum(fmt == "jsonl" for fmt in formats.values()) / len(formats)
    assert 0.15 <= jsonl_share <= 0.5
    assert sum(files.values()) == world.summary.events_written


def test_every_well_formed_row_matches_the_wide_contract(world: World) -> None:
    events = world.events
    assert set(events["event_type"]) == set(EVENT_TYPES)
    for event_type, payload in EVENT_PAYLOADS.items():
        rows = events[events["event_type"] == event_type]
        for spec in payload:
            assert rows[spec.name].notna().all() and (rows[spec.name] != "").all(), spec.name
    # Membership joins carry the member's village.
    joins = events[(events["event_type"] == "membership") & (events["action"] == "join")]
    assert joins["village_id"].str.startswith("village-").all()


def test_rejects_are_exactly_the_injected_malformed_rows(world: World) -> None:
    summary = world.summary
    assert sum(world.feed.rejects.values()) == summary.malformed_injected
    assert summary.malformed_injected == sum(summary.malformed_by_kind.values())
    assert all(n > 0 for n in summary.malformed_by_kind.values()), summary.malformed_by_kind
    assert summary.malformed_injected == pytest.approx(
        CONFIG.malformed_rate * summary.events_written, rel=0.25
    )
    rejects = world.feed.rejects
    for reason in (
        "broken line",
        "non-numeric amount_cny",
        "negative amount_cny",
        "unknown event_type",
        "recorded before event",
        "event in the future",
        "missing member_id",
        "missing event_time",
    ):
        assert rejects[reason] > 0, reason
    assert any(reason.startswith("unknown ") and reason != "unknown event_type" for reason in rejects)


def test_duplicates_are_resent_copies(world: World) -> None:
    events = world.events
    summary = world.summary
    repeated = events[events.duplicated("event_id", keep=False)]
    assert events["event_id"].duplicated().sum() == summary.duplicates_injected
    assert summary.duplicates_injected == pytest.approx(
        CONFIG.duplicate_rate * summary.events_written, rel=0.25
    )
    content = [c for c in NAMES if c in repeated.columns and c != "event_id"]
    first = repeated.drop_duplicates("event_id", keep="first").set_index("event_id")[content]
    last = repeated.drop_duplicates("event_id", keep="last").set_index("event_id")[content]
    differs = first.fillna("").astype(str) != last.loc[first.index].fillna("").astype(str)
    # Identical re-sends, except that a copy re-sent after the fen switch carries fen amounts.
    assert set(differs.columns[differs.any()]) <= {"amount_cny"}
    assert set(first.loc[differs.any(axis=1), "coop_id"]) <= {"coop-02-01"}
    # Often re-sent in a later month's export file.
    files = repeated.groupby("event_id")["file"].nunique()
    assert (files > 1).mean() > 0.4
    assert summary.valid_events == events["event_id"].nunique()


def test_late_records_land_in_the_month_they_were_recorded(world: World) -> None:
    events = world.events
    # Normal bookkeeping takes hours to a few days; the digitised roll (joins before the world
    # started) is recorded in month 0 and is not a late record.
    in_world = events["event_time"] >= pd.Timestamp(CONFIG.start).tz_localize("UTC")
    events = events[in_world]
    delay = events["recorded_at"] - events["event_time"]
    late = delay > pd.Timedelta(days=5)
    assert world.summary.late_injected > 0
    assert late.mean() == pytest.approx(CONFIG.late_rate, rel=0.35)
    file_month = events["file"].str.extract(r"(\d{4}-\d{2})\.")[0]
    assert (file_month == events["recorded_at"].dt.strftime("%Y-%m")).mean() > 0.97  # rest: re-sends
    assert (events.loc[late, "event_time"].dt.strftime("%Y-%m") != file_month[late]).mean() > 0.5


def test_members_only_act_after_joining(world: World) -> None:
    joined = world.members.set_index("member_id")["joined_at"]
    events = world.events[world.events["event_type"] != "membership"]
    assert (events["event_time"].to_numpy() >= joined.loc[events["member_id"]].to_numpy()).all()


# --- the proxy trap -------------------------------------------------------------------------------


def test_left_behind_women_have_fewer_recorded_deliveries_but_are_not_riskier(world: World) -> None:
    members = world.members
    established = members[
        (members["joined_at"] < pd.Timestamp("2024-01-01", tz="UTC")) & members["left_at"].isna()
    ]
    comparable = established[~established["returning_youth"] & ~established["micro_enterprise"]]
    deliveries = world.events[world.events["event_type"] == "produce_delivery"]["member_id"].value_counts()
    per_member = deliveries.reindex(comparable["member_id"], fill_value=0).to_numpy()
    lbw = comparable["left_behind_woman"].to_numpy()
    assert lbw.sum() > 100
    assert per_member[lbw].mean() < 0.7 * per_member[~lbw].mean()
    # ...while their repayment discipline and true risk are not worse.
    discipline = members.groupby("left_behind_woman")["discipline_z"].mean()
    assert discipline[True] > discipline[False] - 0.15
    apps = world.applications
    pd_by_group = apps.groupby("left_behind_woman")["true_pd"].mean()
    assert pd_by_group[True] <= pd_by_group[False] + 0.02


def test_returning_youth_are_recent_thin_files_with_similar_discipline(world: World) -> None:
    members = world.members
    youth = members[members["returning_youth"]]
    assert (youth["joined_at"] >= pd.Timestamp("2023-01-01", tz="UTC")).all()
    assert (
        abs(youth["discipline_z"].mean() - members.loc[~members["returning_youth"], "discipline_z"].mean())
        < 0.2
    )


# --- drift scenarios -------------------------------------------------------------------------------


def _onset() -> pd.Timestamp:
    return pd.Timestamp(CONFIG.start).tz_localize("UTC") + pd.DateOffset(months=ONSET)


def test_unit_fen_multiplies_one_coops_amounts_after_onset(world: World) -> None:
    events = world.events
    deposits = events[(events["event_type"] == "savings_deposit")]
    file_month = pd.to_datetime(deposits["file"].str.extract(r"(\d{4}-\d{2})\.")[0] + "-01", utc=True)
    after = file_month >= _onset()
    target = deposits["coop_id"] == "coop-02-01"
    ratio = (
        deposits.loc[target & after, "amount_cny"].median()
        / deposits.loc[target & ~after, "amount_cny"].median()
    )
    assert 50 < ratio < 200
    other = (
        deposits.loc[~target & after, "amount_cny"].median()
        / deposits.loc[~target & ~after, "amount_cny"].median()
    )
    assert 0.5 < other < 2


def test_drought_cuts_deliveries_and_raises_true_pd(world: World) -> None:
    drought = json.loads((world.out / "truth" / "scenarios.json").read_text(encoding="utf-8"))
    county = next(s["county_id"] for s in drought["scenarios"] if s["name"] == "drought")
    apps = world.applications.merge(world.members[["member_id", "county_id"]], on="member_id")
    hit = apps["county_id"] == county
    after = apps["applied_at"] >= _onset()
    assert apps.loc[hit & after, "true_pd"].mean() > 1.3 * apps.loc[hit & ~after, "true_pd"].mean()
    deliveries = world.events[world.events["event_type"] == "produce_delivery"].merge(
        world.members[["member_id", "county_id"]], on="member_id"
    )
    late_months = deliveries["event_time"] >= _onset()
    share = (deliveries.loc[late_months, "county_id"] == county).mean()
    share_before = (deliveries.loc[~late_months, "county_id"] == county).mean()
    amount_hit = deliveries.loc[late_months & (deliveries["county_id"] == county), "amount_cny"].median()
    amount_rest = deliveries.loc[late_months & (deliveries["county_id"] != county), "amount_cny"].median()
    assert share < share_before or amount_hit < 0.7 * amount_rest


def test_new_coop_is_onboarded_with_a_different_membership(world: World) -> None:
    members = world.members
    new = members["coop_id"] == "coop-01-09"
    assert new.sum() > 50
    assert (members.loc[new, "joined_at"] >= _onset()).all()
    assert members.loc[new, "returning_youth"].mean() > 3 * members.loc[~new, "returning_youth"].mean()
    first = world.events.loc[world.events["coop_id"] == "coop-01-09", "event_time"].min()
    assert first >= _onset()
    coops = pd.read_csv(world.out / "cooperatives" / "cooperatives.csv", dtype=str)
    assert "coop-01-09" in set(coops["coop_id"])


# --- truth stays apart ------------------------------------------------------------------------------

TRUTH_ONLY_COLUMNS = (
    "true_pd",
    "discipline_z",
    "repayment_discipline",
    "income_capacity_cny",
    "shock_exposure",
    "engagement_z",
    "proxy_member_id",
)


def test_truth_columns_appear_only_under_truth(world: World) -> None:
    for path in world.out.rglob("*"):
        if path.is_dir() or path.relative_to(world.out).parts[0] == "truth":
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for column in TRUTH_ONLY_COLUMNS:
            assert column not in text, (path, column)
    assert set(TRUTH_ONLY_COLUMNS) - {"true_pd"} <= set(world.members.columns)
    assert {"application_id", "member_id", "applied_at", "true_pd", "defaulted"} <= set(
        world.applications.columns
    )


def test_no_serving_or_feature_code_reads_truth() -> None:
    """Only the simulator writes `truth/`; feature, model and serving code must never read it
    (training's oracle evaluation may)."""
    root = Path(__file__).resolve().parents[3]
    pattern = re.compile(r"""/\s*["']truth["']|["']truth/|truth/\w+\.(parquet|json)|\btrue_pd\b""")
    offenders = []
    for package in ("features", "models", "serving", "coopscore"):
        for path in (root / package).rglob("*.py"):
            if path.name.startswith("simulate"):
                continue
            if pattern.search(path.read_text(encoding="utf-8")):
                offenders.append(path.relative_to(root).as_posix())
    assert offenders == []
