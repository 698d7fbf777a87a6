"""The simulator's public API: determinism, scenario parsing, config validation, output handling."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from features.contracts import SCHEMA_VERSION, WIDE_EVENT_CONTRACT
from simulator.feeds import iso_strings
from simulator.population import fixed_width_ids
from simulator.scenarios import SCENARIO_NAMES, Scenario, parse_scenario
from simulator.world import SimulationConfig, simulate_world

TINY = SimulationConfig(
    members=1_500,
    months=14,
    seed=3,
    scenarios=(Scenario("drought", 9), Scenario("new_coop", 9), Scenario("unit_fen", 10)),
)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    simulate_world(TINY, out)
    return out


# --- determinism -----------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(tiny_world: Path, tmp_path: Path) -> None:
    first = _files(tiny_world)
    simulate_world(TINY, tmp_path)
    second = _files(tmp_path)
    assert first.keys() == second.keys()
    assert len(first) > 20
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []


def test_different_seed_gives_a_different_world(tiny_world: Path, tmp_path: Path) -> None:
    simulate_world(SimulationConfig(**{**TINY.__dict__, "seed": 4}), tmp_path)
    first, second = _files(tiny_world), _files(tmp_path)
    common = [name for name in first if name in second and name.startswith("events/")]
    assert common
    assert sum(first[name] != second[name] for name in common) > 0.9 * len(common)
    assert first["truth/applications.parquet"] != second["truth/applications.parquet"]


# --- output layout and manifest ----------------------------------------------------------------------


def test_manifest_records_config_summary_and_schema(tiny_world: Path) -> None:
    manifest = json.loads((tiny_world / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["config"]["members"] == TINY.members
    assert manifest["config"]["start"] == "2024-01-01"
    assert [s["name"] for s in manifest["config"]["scenarios"]] == ["drought", "new_coop", "unit_fen"]
    assert "seconds" not in manifest["summary"]
    assert manifest["summary"]["events_written"] == sum(f["rows"] for f in manifest["event_files"].values())
    assert manifest["world"]["end"] == "2025-03-01T00:00:00Z"


def test_csv_exports_have_the_wide_header_and_jsonl_only_contract_keys(tiny_world: Path) -> None:
    header = ",".join(WIDE_EVENT_CONTRACT.names)
    csv_files = sorted(tiny_world.glob("events/*/*.csv"))
    jsonl_files = sorted(tiny_world.glob("events/*/*.jsonl"))
    assert csv_files and jsonl_files
    for path in csv_files:
        assert path.read_text(encoding="utf-8").split("\n", 1)[0] == header
    first = json.loads(jsonl_files[0].read_text(encoding="utf-8").split("\n", 1)[0])
    assert set(first) <= set(WIDE_EVENT_CONTRACT.names)
    assert first["event_time"].endswith("Z")


def test_summary_matches_the_manifest(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    config = SimulationConfig(members=300, months=3, seed=1)
    summary = simulate_world(config, tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    stored = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))["summary"]
    expected = summary.to_dict()
    del expected["seconds"]
    assert stored == json.loads(json.dumps(expected))
    assert summary.seconds > 0
    assert summary.files == sum(1 for p in tmp_path.rglob("*") if p.is_file())


def test_existing_world_is_refused_unless_overwrite(tmp_path: Path) -> None:
    config = SimulationConfig(members=200, months=2)
    simulate_world(config, tmp_path)
    keep = tmp_path / "notes.txt"
    keep.write_text("mine", encoding="utf-8")
    stale = tmp_path / "events" / "coop-99-99" / "2020-01.csv"
    stale.parent.mkdir()
    stale.write_text("old", encoding="utf-8")
    with pytest.raises(FileExistsError):
        simulate_world(config, tmp_path)
    simulate_world(config, tmp_path, overwrite=True)
    assert keep.read_text(encoding="utf-8") == "mine"  # only the simulator's own outputs go
    assert not stale.exists()


# --- scenarios and config ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("drought@14", Scenario("drought", 14)),
        ("drought", Scenario("drought", 26 * 2 // 3)),
        (" new_coop@0 ", Scenario("new_coop", 0)),
        ("unit_fen@10:coop-02-03", Scenario("unit_fen", 10, coop_id="coop-02-03")),
        ("drought@3:county-02", Scenario("drought", 3, county_id="county-02")),
        ("new_coop:coop-02-09", Scenario("new_coop", 17, coop_id="coop-02-09")),
    ],
)
def test_parse_scenario(text: str, expected: Scenario) -> None:
    assert parse_scenario(text) == expected


def test_parse_scenario_default_start_follows_the_world_length() -> None:
    assert parse_scenario("unit_fen", months=14).start_month == 9
    assert {parse_scenario(name).name for name in SCENARIO_NAMES} == set(SCENARIO_NAMES)


@pytest.mark.parametrize("text", ["flood@3", "drought@x", "", "drought@", "drought@-1", "drought@2@3"])
def test_parse_scenario_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match=r"scenario|start_month"):
        parse_scenario(text)


@pytest.mark.parametrize(
    "changes",
    [
        {"scenarios": (Scenario("drought", 26),)},
        {"scenarios": (Scenario("drought", 2), Scenario("drought", 3))},
        {"start": date(2024, 1, 15)},
        {"members": 0},
        {"malformed_rate": 1.5},
    ],
)
def test_config_rejects_impossible_worlds(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SimulationConfig(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario("unit_fen", 1, coop_id="coop-09-09"),
        Scenario("drought", 1, county_id="county-07"),
        Scenario("new_coop", 1, coop_id="coop-01-01"),
    ],
)
def test_unknown_scenario_targets_are_refused(scenario: Scenario, tmp_path: Path) -> None:
    out = tmp_path / "world"
    with pytest.raises(ValueError):
        simulate_world(SimulationConfig(members=200, months=3, scenarios=(scenario,)), out)
    assert not out.exists()  # refused before anything was written


def test_unit_fen_may_target_the_new_cooperative(tmp_path: Path) -> None:
    scenarios = (Scenario("new_coop", 1, coop_id="coop-02-09"), Scenario("unit_fen", 2, coop_id="coop-02-09"))
    simulate_world(SimulationConfig(members=400, months=4, scenarios=scenarios), tmp_path)
    assert (tmp_path / "events" / "coop-02-09").is_dir()


# --- formatting helpers ------------------------------------------------------------------------------


def test_iso_strings_match_datetime_formatting() -> None:
    rng = np.random.default_rng(0)
    seconds = np.concatenate(
        [
            rng.integers(0, 4_102_444_800, size=2_000),  # 1970..2100
            np.array([951_782_400, 1_709_164_799, 1_709_164_800, 1_735_689_599]),  # leap days, year end
        ]
    ).astype(np.int64)
    valid = rng.random(len(seconds)) > 0.1
    got = iso_strings(seconds, valid).to_pylist()
    want = [
        datetime.fromtimestamp(int(s), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ok else None
        for s, ok in zip(seconds, valid, strict=True)
    ]
    assert got == want


def test_fixed_width_ids() -> None:
    ids = fixed_width_ids("M", np.array([1, 42, 9_999_999], dtype=np.int64), 7).to_pylist()
    assert ids == ["M0000001", "M0000042", "M9999999"]


# --- the proxy trap's strength ----------------------------------------------------------------------


def test_household_proxy_trap_books_deliveries_land_and_savings_under_the_household_head(
    tmp_path: Path,
) -> None:
    import csv

    import pyarrow.parquet as pq

    config = SimulationConfig(members=2_000, months=6, seed=5, proxy_trap="household")
    simulate_world(config, tmp_path)
    members = pq.read_table(tmp_path / "truth" / "members.parquet").to_pandas()
    trapped = set(members.loc[members["proxy_member_id"].notna(), "member_id"])
    heads = set(members["proxy_member_id"].dropna())
    assert len(trapped) > 20
    booked: dict[str, set[str]] = {}
    for path in (tmp_path / "events").rglob("*.csv"):
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                booked.setdefault(row.get("event_type") or "", set()).add(row.get("member_id") or "")
    for event_type in ("produce_delivery", "savings_deposit"):
        assert not (booked[event_type] & trapped), event_type  # nothing in her own name...
        assert booked[event_type] & heads, event_type  # ...it is all in the head's
    # her own name still carries what she does in person
    assert booked["meeting_attendance"] & trapped
    with pytest.raises(ValueError, match="proxy_trap"):
        SimulationConfig(proxy_trap="nobody")  # type: ignore[arg-type]
