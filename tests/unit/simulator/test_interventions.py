"""Members acting on advice in a re-simulated world: the same world before it, records of what they do,
and an effect on true risk only where the action is causal."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.contracts import MEMBER_ACTIONS
from simulator.activity import hypothetical_true_pd
from simulator.interventions import CAUSAL, Intervention, read_interventions, write_interventions
from simulator.world import SimulationConfig, simulate_world

BASE = SimulationConfig(members=1_200, months=12, seed=8, record_states_from=7)
START = 8  # the month advice starts (2024-09)
UNITS = {
    "save_group_fund": 3000.0,
    "complete_training": 3.0,
    "adopt_green_practice": 3.0,
    "deliver_through_coop": 3.0,
    "attend_meetings": 3.0,
}
TREATED = {name: [f"M{100 + 10 * k + j:07d}" for j in range(10)] for k, name in enumerate(MEMBER_ACTIONS)}


def _files(root: Path, folder: str) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("advice")
    interventions = tuple(
        Intervention(m, name, UNITS[name], START) for name, members in TREATED.items() for m in members
    )
    simulate_world(BASE, root / "baseline")
    simulate_world(replace(BASE, interventions=interventions), root / "advised")
    return root / "baseline", root / "advised"


def test_recording_states_changes_nothing_else(worlds: tuple[Path, Path], tmp_path: Path) -> None:
    baseline, _ = worlds
    simulate_world(replace(BASE, record_states_from=None), tmp_path)
    assert _files(tmp_path, "events") == _files(baseline, "events")
    assert (tmp_path / "truth" / "applications.parquet").read_bytes() == (
        baseline / "truth" / "applications.parquet"
    ).read_bytes()
    assert not (tmp_path / "truth" / "member_states.parquet").exists()
    assert "interventions" not in json.loads((tmp_path / "manifest.json").read_text())["config"]


def test_months_before_the_advice_are_the_same_world(worlds: tuple[Path, Path]) -> None:
    baseline, advised = worlds
    before, after = _files(baseline, "events"), _files(advised, "events")
    early = [name for name in before if name.rsplit("/", 1)[1] < "2024-09"]
    assert early and all(before[name] == after[name] for name in early)


def test_the_cooperative_records_what_the_members_do(worlds: tuple[Path, Path]) -> None:
    _, advised = worlds
    frames = []
    for path in sorted((advised / "events").rglob("*")):
        if path.suffix == ".csv":
            frames.append(pd.read_csv(path, dtype=str, on_bad_lines="skip"))
        elif path.suffix == ".jsonl":  # feeds carry broken lines on purpose: skip them
            rows = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
            frames.append(pd.DataFrame(rows).astype(str))
    events = pd.concat(frames).drop_duplicates("event_id")
    mid = events[events["event_time"].str.slice(8, 10) == "15"]
    saver = mid[
        (mid["member_id"] == TREATED["save_group_fund"][0]) & (mid["event_type"] == "savings_deposit")
    ]
    assert sorted(saver["amount_cny"].astype(float)) == [1000.0, 1000.0, 1000.0]
    trainee = mid[
        (mid["member_id"] == TREATED["complete_training"][0]) & (mid["event_type"] == "training_completed")
    ]
    assert set(trainee["topic"]) == {"financial_literacy", "bookkeeping", "agronomy"}


def _true_pd(world: Path, members: list[str], month: int) -> np.ndarray:
    states = (
        pq.read_table(world / "truth" / "member_states.parquet").to_pandas().set_index(["member_id", "month"])
    )
    picked = states.loc[[(m, month) for m in members]]
    return hypothetical_true_pd(
        {c: picked[c].to_numpy(dtype=float) for c in picked.columns},
        np.full(len(members), 10_000.0),
        np.full(len(members), 12.0),
    )


@pytest.mark.parametrize("action", MEMBER_ACTIONS)
def test_only_causal_actions_lower_true_risk(worlds: tuple[Path, Path], action: str) -> None:
    baseline, advised = worlds
    members = TREATED[action]
    last = BASE.months - 1
    before, after = _true_pd(baseline, members, last), _true_pd(advised, members, last)
    if CAUSAL[action]:
        assert np.all(after < before), action
    else:
        np.testing.assert_array_equal(after, before)


def test_members_who_did_nothing_keep_their_true_risk(worlds: tuple[Path, Path]) -> None:
    baseline, advised = worlds
    treated = {m for members in TREATED.values() for m in members}
    others = [f"M{i:07d}" for i in range(1, 1_200) if f"M{i:07d}" not in treated][:300]
    last = BASE.months - 1
    np.testing.assert_array_equal(_true_pd(baseline, others, last), _true_pd(advised, others, last))


def test_interventions_round_trip_and_bad_ones_are_refused(tmp_path: Path) -> None:
    items = (Intervention("M0000001", "complete_training", 2.0, 3),)
    write_interventions(tmp_path / "advice.json", items)
    assert read_interventions(tmp_path / "advice.json") == items
    with pytest.raises(ValueError, match="unknown action"):
        Intervention("M0000001", "win_the_lottery", 1.0, 3)
    with pytest.raises(ValueError, match="after the world ends"):
        replace(BASE, interventions=(Intervention("M0000001", "attend_meetings", 1.0, 12),))
    with pytest.raises(ValueError, match="does not have"):
        simulate_world(
            replace(BASE, interventions=(Intervention("nobody", "attend_meetings", 1.0, 3),)), tmp_path
        )
