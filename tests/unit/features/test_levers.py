"""The catalogue's member actions and levers: declared soundly, applied with the views' semantics, and the
same list the simulator acts out."""

from __future__ import annotations

import math

import numpy as np
import pytest

from features.catalog import Feature, FeatureRegistry, default_registry
from features.catalog.levers import ActionMoves, derive
from features.catalog.schema import Lever
from features.contracts import MEMBER_ACTIONS
from features.reference import _derived_value
from simulator.interventions import CAUSAL
from tests.utils.recourse import consistent_rows

REGISTRY = default_registry()


def _with(name: str, **changes: object) -> FeatureRegistry:
    features = tuple(f.model_copy(update=changes) if f.name == name else f for f in REGISTRY.features)
    return FeatureRegistry(features=features, reason_groups=REGISTRY.reason_groups, actions=REGISTRY.actions)


def test_the_catalogue_the_contracts_and_the_simulator_name_the_same_actions() -> None:
    assert tuple(a.name for a in REGISTRY.actions) == MEMBER_ACTIONS
    # What the catalogue calls causal is exactly what the simulator gives an effect.
    assert {a.name: a.causal for a in REGISTRY.actions} == CAUSAL


def test_levers_that_would_mislead_are_refused() -> None:
    save = Lever(action="save_group_fund", per_unit=1.0)
    with pytest.raises(ValueError, match="only a mutable event aggregate"):
        _with("history_months", levers=(save,))
    with pytest.raises(ValueError, match="larger values raise risk"):
        _with("savings_withdrawal_amount_90d", levers=(save,))
    with pytest.raises(ValueError, match="only a mutable event aggregate"):
        _with("savings_balance", levers=(save,))  # derived: it follows its inputs
    with pytest.raises(ValueError, match="undeclared action"):
        FeatureRegistry(features=REGISTRY.features, reason_groups=REGISTRY.reason_groups, actions=())
    with pytest.raises(ValueError, match="unknown action"):
        Lever(action="win_the_lottery", per_unit=1.0)


def test_immutable_features_are_the_history_no_action_changes() -> None:
    immutable = {f.name for f in REGISTRY.features if f.immutable}
    assert {"history_months", "coop_tenure_months", "membership_leave_count"} <= immutable
    assert {
        f.name for f in REGISTRY.features if f.reason_group in ("repayment", "late_repayment")
    } <= immutable
    assert all(not f.levers for f in REGISTRY.features if f.immutable)


@pytest.mark.parametrize("aggregation", ["ratio", "difference", "trend", "is_positive"])
def test_derive_agrees_with_the_point_in_time_oracle(aggregation: str) -> None:
    feature = next(f for f in REGISTRY.features if f.aggregation == aggregation)
    values = [0.0, -3.0, 2.5, math.nan, 7.0, -7.0]
    pairs = [(a, b) for a in values for b in values]
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    ours = derive(feature, a, b if len(feature.inputs) > 1 else None)
    for k, (x, y) in enumerate(pairs):
        expected = float(_derived_value(feature, dict(zip(feature.inputs, (x, y), strict=False))))
        assert ours[k] == expected or (math.isnan(ours[k]) and math.isnan(expected)), (x, y)


def test_no_action_reproduces_the_row_bit_for_bit() -> None:
    for row in consistent_rows(REGISTRY, n=20, seed=2):
        moves = ActionMoves(REGISTRY, row, MEMBER_ACTIONS)
        after = moves.apply(np.zeros((1, len(moves.actions))))[0]
        before = np.array([row[n] for n in REGISTRY.names])
        np.testing.assert_array_equal(after, before)


def test_saving_moves_the_fund_its_ratios_and_the_record_as_declared() -> None:
    row = consistent_rows(REGISTRY, n=1, seed=4)[0]
    moves = ActionMoves(REGISTRY, row, ["save_group_fund"])
    after = dict(zip(moves.names, moves.apply(moves.single(0, [1500.0]))[0].tolist(), strict=True))
    assert after["savings_deposit_amount_90d"] == row["savings_deposit_amount_90d"] + 1500
    assert after["savings_balance"] == pytest.approx(row["savings_balance"] + 1500)
    assert after["savings_deposit_count_365d"] == row["savings_deposit_count_365d"] + 3
    assert after["savings_deposit_months_365d"] == max(row["savings_deposit_months_365d"], 3)
    assert after["savings_months_since_last_deposit"] == 0
    assert after["event_count_365d"] == row["event_count_365d"] + 3
    assert after["months_since_last_activity"] == 0
    assert after["application_amount_to_savings_balance"] == pytest.approx(
        row["application_amount_cny"] / after["savings_balance"]
    )
    assert after["history_months"] == row["history_months"]
    assert after["delivery_amount_365d"] == row["delivery_amount_365d"]  # another action's feature


def test_delivering_at_your_usual_size_needs_a_delivery_on_record() -> None:
    row = dict(consistent_rows(REGISTRY, n=1, seed=4)[0], delivery_mean_amount_365d=math.nan)
    moves = ActionMoves(REGISTRY, row, MEMBER_ACTIONS)
    assert "deliver_through_coop" in moves.unavailable
    assert "deliver_through_coop" not in [a.name for a in moves.actions]


def test_a_window_only_counts_the_months_of_the_action_inside_it() -> None:
    row = consistent_rows(REGISTRY, n=1, seed=6)[0]
    moves = ActionMoves(REGISTRY, row, ["attend_meetings"])
    after = dict(zip(moves.names, moves.apply(moves.single(0, [6.0]))[0].tolist(), strict=True))
    assert after["meeting_count_90d"] == row["meeting_count_90d"] + 3
    assert after["meeting_count_365d"] == row["meeting_count_365d"] + 6
    assert after["meeting_months_365d"] == max(row["meeting_months_365d"], 6)


def test_a_feature_declared_without_levers_is_context() -> None:
    feature: Feature = REGISTRY.by_name["coop_past_default_rate"]
    assert not feature.levers and not feature.immutable
