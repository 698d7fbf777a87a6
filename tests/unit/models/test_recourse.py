"""Recourse: exact against an independent brute force, never touching what cannot change, monotone where
the model is, and verified by re-scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from features.catalog import default_registry
from features.catalog.levers import ActionMoves
from features.contracts import PROTECTED_ATTRIBUTES
from models.recourse import RecourseEngine, RecourseUnavailableError
from tests.utils.recourse import brute_force, catalog_model, coarse_registry, consistent_rows

# Coarse grids keep the brute force small (7 * 4 * 4 * 4 * 4 combinations) without changing the logic.
COARSE = {
    "save_group_fund": (500.0, 500.0, 3000.0),
    "complete_training": (1.0, 1.0, 3.0),
    "adopt_green_practice": (1.0, 1.0, 3.0),
    "deliver_through_coop": (1.0, 1.0, 3.0),
    "attend_meetings": (1.0, 1.0, 3.0),
}
CAUSAL = ["save_group_fund", "complete_training", "adopt_green_practice"]


@pytest.fixture(scope="module")
def model():
    return catalog_model(seed=1)


@pytest.fixture(scope="module")
def applicants(model):
    rows = consistent_rows(default_registry(), n=400, seed=11)
    return [r for r in rows if model.decide(r).outcome != "approve"]


@pytest.mark.parametrize("mode", ["drop", "equal"])
def test_the_plan_is_the_cheapest_combination_a_brute_force_finds(model, applicants, mode):
    registry = coarse_registry(COARSE)
    engine = RecourseEngine(model, registry)
    actions = CAUSAL if mode == "drop" else list(COARSE)
    found = unreachable = 0
    for row in applicants[:30]:
        plan = engine.plan(row, non_causal=mode)
        truth = brute_force(model, registry, row, actions)
        if truth.cost is None:
            assert plan.status == "out_of_reach"
            if plan.reached_score is not None:  # the closest plan is the best score on the grid
                assert plan.reached_score == pytest.approx(truth.best_score, abs=1e-6)
            unreachable += 1
            continue
        assert plan.status == "found", (truth, plan.notes)
        assert plan.total_cost_cny == pytest.approx(truth.cost, abs=1e-6)
        assert plan.reached_decision == "approve"
        found += 1
    assert found >= 5 and unreachable >= 1  # both branches were exercised


def test_on_the_real_grid_the_cheapest_savings_amount_is_exact(model, applicants):
    # One action on its real 10 CNY grid (1,991 sizes): the candidate sizes must contain the optimum.
    grids = {"save_group_fund": (100.0, 10.0, 20_000.0)}
    registry = coarse_registry(grids)
    engine = RecourseEngine(model, registry)
    checked = 0
    for row in applicants[:12]:
        plan = engine.plan(row)
        truth = brute_force(model, registry, row, list(grids))
        if truth.cost is None:
            assert plan.status == "out_of_reach"
            continue
        assert plan.status == "found"
        assert plan.actions[0].units == truth.units["save_group_fund"]
        checked += 1
    assert checked >= 3


def test_the_plan_re_scores_to_approval_through_the_serving_path(model, applicants):
    engine = RecourseEngine(model)
    plans = [(row, engine.plan(row)) for row in applicants[:40]]
    found = [(row, p) for row, p in plans if p.status == "found"]
    assert found
    for row, plan in found:
        moves = ActionMoves(default_registry(), row, [a.action for a in plan.actions])
        levels = np.array([[a.units for a in plan.actions]])
        after = dict(zip(moves.names, moves.apply(levels)[0].tolist(), strict=True))
        assessed = model.assess(after)
        assert assessed.decision.outcome == "approve"
        assert assessed.score == pytest.approx(plan.reached_score, abs=1e-6)
        assert assessed.score >= plan.target_score - 1e-6
        # Each step's score is the model's score with that step and the earlier ones done.
        assert plan.actions[-1].score_after == pytest.approx(plan.reached_score, abs=1e-9)
        assert plan.actions[-1].decision_after == "approve"


def test_nothing_immutable_or_protected_is_ever_moved_or_suggested(model, applicants):
    registry = default_registry()
    immutable = {f.name for f in registry.features if f.immutable}
    assert {"history_months", "coop_tenure_months", "repayment_late_count_lifetime"} <= immutable
    engine = RecourseEngine(model)
    for row in applicants[:40]:
        for mode in ("drop", "equal"):
            plan = engine.plan(row, non_causal=mode)
            for step in plan.actions:
                for move in step.moves:
                    assert move.name not in immutable
                    assert move.name not in PROTECTED_ATTRIBUTES
    # And no action can move them at all, whatever its size.
    row = applicants[0]
    moves = ActionMoves(registry, row, [a.name for a in registry.actions])
    everything = np.array([[a.maximum for a in moves.actions]])
    after = moves.apply(everything)[0]
    for name in immutable:
        i = moves.index[name]
        assert after[i] == row[name] or (math.isnan(after[i]) and math.isnan(row[name]))


def test_non_causal_actions_are_dropped_by_default_and_ranked_last_on_request(model, applicants):
    engine = RecourseEngine(model)
    saw_last = False
    for row in applicants[:60]:
        dropped = engine.plan(row, non_causal="drop")
        assert all(a.causal for a in dropped.actions)
        last = engine.plan(row, non_causal="last")
        if dropped.status == "found":
            # A causal plan exists: "last" gives the same one, never a cheaper gaming one.
            assert [a.action for a in last.actions] == [a.action for a in dropped.actions]
        elif last.status == "found" and any(not a.causal for a in last.actions):
            saw_last = True
            assert any("record, not the risk" in note for note in last.notes)
    assert saw_last


def test_more_of_an_action_never_lowers_the_score_of_a_monotone_model():
    # A model over directed features only (every feature an action moves carries its constraint):
    # the levers move each feature the way its declared direction calls better, so scores only rise.
    # Monotone constraints order present values only: where a ratio turns from missing to present (a
    # first positive savings balance), the tree's missing branch decides, so those steps are left out.
    registry = default_registry()
    directed = [f.name for f in registry.features if f.direction != 0]
    model = catalog_model(features=directed, seed=3)
    compared = 0
    for row in consistent_rows(registry, n=60, seed=5):
        moves = ActionMoves(registry, row, [a.name for a in registry.actions])
        columns = [moves.index[n] for n in model.feature_names]
        for j, action in enumerate(moves.actions):
            units = np.concatenate([[0.0], action.grid()])
            x = moves.apply(moves.single(j, units))[:, columns]
            scores = model.score(x)
            same_missing = (np.isnan(x[1:]) == np.isnan(x[:-1])).all(axis=1)
            assert np.all(np.diff(scores)[same_missing] >= -1e-9), action.name
            compared += int(same_missing.sum())
    assert compared > 10_000


def test_an_approved_applicant_needs_nothing_and_a_short_history_is_out_of_reach(model, applicants):
    engine = RecourseEngine(model)
    rows = consistent_rows(default_registry(), n=400, seed=11)
    approved = next(r for r in rows if model.decide(r).outcome == "approve")
    assert engine.plan(approved).status == "not_needed"
    thin = dict(applicants[0], history_months=1.0, has_prior_loan=0.0)
    plan = engine.plan(thin)
    assert plan.status == "out_of_reach" and plan.actions == ()
    assert "history_months" in plan.notes[0]


def test_a_table_model_gives_no_recourse(model):
    from dataclasses import replace

    table_spec = replace(model.spec, source="table")
    table_model = type(model)(model.booster, table_spec, model.calibration, model.scale, model.policy)
    with pytest.raises(RecourseUnavailableError):
        RecourseEngine(table_model)


def test_the_answer_is_in_both_languages_with_target_values(model, applicants):
    engine = RecourseEngine(model)
    plan = next(p for p in (engine.plan(r) for r in applicants) if p.status == "found")
    assert "approval" in plan.summary_en and "获批" in plan.summary_zh
    step = plan.actions[0]
    assert step.instruction_en and step.instruction_zh and step.moves
    assert all(m.before != m.after for m in step.moves)
    payload = plan.to_dict()
    assert payload["actions"][0]["moves"][0]["name"] == step.moves[0].name
