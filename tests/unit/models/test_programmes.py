"""Subsidy programmes: the file (strict, versioned, YAML or JSON), the interest formula, eligibility
rules with their protected reads counted, and the allocation: the integer program is optimal against
brute force, every rule keeps every constraint, the greedy rules walk their orders."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.programmes.allocation import (
    AllocationProblem,
    first_come_first_served,
    fits,
    lowest_pd_first,
    solve,
)
from models.programmes.cost import expected_loss_cny, subsidy_cny, to_fen, total_interest_cny
from models.programmes.eligibility import (
    NO_BUDGET,
    NO_PROFILE,
    OUTSIDE_PERIODS,
    PD_ABOVE,
    RULES_UNMET,
    EligibilityInputError,
    assess,
)
from models.programmes.programme import Programme, ProgrammeFileError, load_programme

PROGRAMME: dict[str, Any] = {
    "id": "green-youth",
    "version": 2,
    "name": {"zh": "返乡青年绿色贷款贴息", "en": "Green loans for returning youth"},
    "periods": [{"id": "2026H1", "start": "2026-01-01", "end": "2026-07-01"}],
    "budgets": [
        {"county_id": "c1", "period": "2026H1", "amount_cny": 1000},
        {"county_id": "c2", "period": "2026H1", "amount_cny": 500},
    ],
    "subsidy": {"share": 0.5, "reference_annual_rate": 0.08},
    "loss_ceiling": {"lgd": 0.6, "max_expected_loss_cny": 5000},
}


def programme(**changes: Any) -> Programme:
    return Programme.model_validate({**PROGRAMME, **changes})


# -- the file --------------------------------------------------------------------------------------


def test_a_yaml_file_and_a_json_file_say_the_same_programme(tmp_path: Path) -> None:
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text(
        """
id: green-youth
version: 2
name: {zh: 返乡青年绿色贷款贴息, en: Green loans for returning youth}
periods: [{id: 2026H1, start: 2026-01-01, end: 2026-07-01}]
budgets:
  - {county_id: c1, period: 2026H1, amount_cny: 1000}
  - {county_id: c2, period: 2026H1, amount_cny: 500}
subsidy: {share: 0.5, reference_annual_rate: 0.08}
loss_ceiling: {lgd: 0.6, max_expected_loss_cny: 5000}
""",
        encoding="utf-8",
    )
    json_file = tmp_path / "p.json"
    json_file.write_text(json.dumps(PROGRAMME), encoding="utf-8")
    from_yaml, from_json = load_programme(yaml_file), load_programme(json_file)
    assert from_yaml.programme == from_json.programme
    assert from_yaml.programme.version == 2 and len(from_yaml.sha256) == 64
    assert from_yaml.sha256 != from_json.sha256  # the digest is of the file's bytes


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"budgetz": []}, "budgetz"),
        ({"subsidy": {"share": 1.5, "reference_annual_rate": 0.08}}, "subsidy.share"),
        ({"eligibility": {"any_of": ["martian"]}}, "eligibility.any_of.0"),
        ({"budgets": [{"county_id": "c1", "period": "2027", "amount_cny": 1}]}, "period '2027'"),
        (
            {
                "periods": [
                    {"id": "a", "start": "2026-01-01", "end": "2026-04-01"},
                    {"id": "b", "start": "2026-03-01", "end": "2026-06-01"},
                ]
            },
            "overlap",
        ),
        ({"objective": {"value": "weighted"}}, "needs weights"),
    ],
)
def test_a_bad_programme_file_names_the_file_and_the_field(tmp_path: Path, change: dict, names: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**PROGRAMME, **change}), encoding="utf-8")
    with pytest.raises(ProgrammeFileError) as error:
        load_programme(path)
    message = str(error.value)
    assert str(path) in message and names in message and "\n" not in message


def test_a_file_that_is_not_yaml_says_so(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_text("id: [unclosed", encoding="utf-8")
    with pytest.raises(ProgrammeFileError, match="not valid YAML"):
        load_programme(path)


# -- cost ------------------------------------------------------------------------------------------


def test_interest_of_equal_instalments_matches_the_annuity_formula() -> None:
    # 12,000 CNY over 12 months at 12% a year: payment 1,066.1854..., interest 794.2254...
    interest = total_interest_cny([12_000.0], [0.12], [12])[0]
    payment = 12_000 * 0.01 / (1 - 1.01**-12)
    assert interest == pytest.approx(12 * payment - 12_000, abs=1e-9)
    assert interest == pytest.approx(794.2254, abs=1e-3)
    assert total_interest_cny([5_000.0], [0.0], [10])[0] == 0.0
    # More rate or a longer term never costs less.
    assert total_interest_cny([9_000.0], [0.09], [24])[0] > total_interest_cny([9_000.0], [0.09], [12])[0]


def test_subsidy_is_the_share_capped_and_never_above_what_was_declared() -> None:
    p = programme(subsidy={"share": 0.5, "max_per_loan_cny": 300, "reference_annual_rate": 0.08})
    paid = subsidy_cny(p, [100.019, 1_000.0])
    assert list(paid) == [50.0, 300.0]  # 50.0095 floored to the fen, then the cap
    assert expected_loss_cny(p, [0.1], [10_000])[0] == pytest.approx(600.0)
    assert to_fen(12.345) == 1234 and to_fen(12.341, up=True) == 1235 and to_fen(12.34, up=True) == 1234


# -- eligibility -----------------------------------------------------------------------------------


def columns(n: int, **values: Any) -> dict[str, np.ndarray]:
    base: dict[str, Any] = {
        "applied_at": np.array(["2026-02-01"] * n, dtype="datetime64[us]"),
        "pd": np.full(n, 0.05),
        "amount_cny": np.full(n, 10_000.0),
        "term_months": np.full(n, 12.0),
        "has_prior_loan": np.zeros(n),
        "green_verified_count_lifetime": np.zeros(n),
        "training_count_lifetime": np.zeros(n),
        "county_id": np.array(["c1"] * n, dtype=object),
        "gender": np.array(["female"] * n, dtype=object),
        "birth_year": np.full(n, 1995.0),
        "returning_youth": np.zeros(n),
        "left_behind_woman": np.zeros(n),
    }
    for name, value in values.items():
        base[name] = np.asarray(value, dtype=base[name].dtype)
    return base


def test_each_rule_admits_exactly_whom_it_names() -> None:
    cases: list[tuple[Any, dict[str, Any], list[bool]]] = [
        ("first_formal_loan", {"has_prior_loan": [0, 1, np.nan]}, [True, False, False]),
        ("returning_youth", {"returning_youth": [1, 0, np.nan]}, [True, False, False]),
        ("left_behind_woman", {"left_behind_woman": [1, 0, np.nan]}, [True, False, False]),
        ({"rule": "gender", "is": "male"}, {"gender": ["male", "female", None]}, [True, False, False]),
        ({"rule": "age", "min": 18, "max": 35}, {"birth_year": [1995, 1980, np.nan]}, [True, False, False]),
        (
            {"rule": "verified_green_practice", "min_count": 2},
            {"green_verified_count_lifetime": [2, 1, np.nan]},
            [True, False, False],
        ),
        ("completed_training", {"training_count_lifetime": [3, 0, np.nan]}, [True, False, False]),
    ]
    for rule, values, expected in cases:
        judged = assess(programme(eligibility={"all_of": [rule]}), columns(3, **values))
        assert judged.eligible.tolist() == expected, rule


def test_all_of_and_any_of_combine_and_each_exclusion_is_counted_by_reason() -> None:
    p = programme(
        eligibility={
            "all_of": ["first_formal_loan"],
            "any_of": ["returning_youth", "left_behind_woman"],
            "max_pd": 0.2,
        }
    )
    cols = columns(
        7,
        applied_at=[
            "2026-02-01",
            "2026-02-01",
            "2026-02-01",
            "2025-12-31",
            "2026-02-01",
            "2026-02-01",
            "2026-02-01",
        ],
        county_id=["c1", "c2", "c1", "c1", "c9", None, "c1"],
        returning_youth=[1, 0, 0, 1, 1, 1, 1],
        left_behind_woman=[0, 1, 0, 0, 0, 0, 0],
        has_prior_loan=[0, 0, 0, 0, 0, 0, 1],
        pd=[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
    )
    judged = assess(p, cols)
    assert judged.eligible.tolist() == [True, True, False, False, False, False, False]
    assert judged.period.tolist()[:2] == ["2026H1", "2026H1"]
    assert judged.exclusions() == {RULES_UNMET: 2, OUTSIDE_PERIODS: 1, NO_BUDGET: 1, NO_PROFILE: 1}
    assert assess(p, {**cols, "pd": np.full(7, 0.3)}).exclusions()[PD_ABOVE] == 6


def test_protected_reads_are_counted_only_for_applications_still_in_contention() -> None:
    p = programme(
        eligibility={"all_of": ["first_formal_loan"], "any_of": ["returning_youth", "left_behind_woman"]}
    )
    cols = columns(
        5,
        applied_at=["2026-02-01"] * 4 + ["2025-01-01"],  # the last is outside the period: nothing read
        has_prior_loan=[0, 0, 0, 1, 0],  # the 4th fails a non-protected rule first
        returning_youth=[1, 0, 0, 0, 1],
        left_behind_woman=[0, 1, 0, 0, 0],
    )
    judged = assess(p, cols)
    uses = {(u.rule, u.field): u.count for u in judged.uses}
    # county read for the 4 in the period; returning_youth for the 3 first-loan ones; left_behind_woman
    # only for the 2 that returning_youth did not admit.
    assert uses == {
        ("county_budget", "county_id"): 4,
        ("returning_youth", "returning_youth"): 3,
        ("left_behind_woman", "left_behind_woman"): 2,
    }
    assert not any(u.field == "has_prior_loan" for u in judged.uses)  # not protected: not logged


def test_weighted_value_adds_each_met_rules_weight_and_its_reads_are_logged() -> None:
    p = programme(objective={"value": "weighted", "base": 1.0, "weights": {"left_behind_woman": 2.0}})
    judged = assess(p, columns(2, left_behind_woman=[1, 0]))
    assert judged.value.tolist() == [3.0, 1.0]
    assert ("objective weight left_behind_woman", "left_behind_woman", 2) in {
        (u.rule, u.field, u.count) for u in judged.uses
    }


def test_a_batch_missing_a_column_a_rule_reads_is_an_error_naming_both() -> None:
    cols = columns(2)
    del cols["training_count_lifetime"]
    with pytest.raises(EligibilityInputError, match=r"completed_training.*training_count_lifetime"):
        assess(programme(eligibility={"all_of": ["completed_training"]}), cols)
    online = assess(programme(eligibility={"all_of": ["completed_training"]}), cols, strict=False)
    assert not online.eligible.any()  # online the rule is simply not met


# -- allocation ------------------------------------------------------------------------------------


def instance(n: int, seed: int, *, members: int | None = None, weighted: bool = False) -> AllocationProblem:
    rng = np.random.default_rng(seed)
    county = rng.choice(np.array(["a", "b"], dtype=object), n)
    period = rng.choice(np.array(["p1", "p2"], dtype=object), n)
    member = np.array([f"m{i}" for i in rng.integers(0, members or 10 * n, n)], dtype=object)
    cost = rng.uniform(100, 1000, n).round(2)
    pd_ = rng.beta(2, 20, n)
    loss = pd_ * 0.5 * rng.uniform(1000, 50000, n)
    value = rng.choice([1.0, 1.5, 3.0], n) if weighted else np.ones(n)
    budgets = {
        (c, p): float(cost[(county == c) & (period == p)].sum() * 0.45) for c in "ab" for p in ("p1", "p2")
    }
    ceilings = {p: float(loss[period == p].sum() * 0.35) for p in ("p1", "p2")}
    arrival = rng.permutation(n).astype(np.int64)
    return AllocationProblem(value, cost, loss, pd_, arrival, county, period, member, budgets, ceilings)


def brute_force(problem: AllocationProblem) -> float:
    best = 0.0
    for bits in itertools.product((False, True), repeat=len(problem)):
        chosen = np.array(bits)
        if not fits(problem, chosen):
            best = max(best, float(problem.value[chosen].sum()))
    return best


@pytest.mark.parametrize("weighted", [False, True])
def test_the_integer_program_is_optimal_against_brute_force(weighted: bool) -> None:
    for seed in range(12):
        problem = instance(12, seed, members=8, weighted=weighted)  # some members apply twice
        answer = solve(problem, mip_rel_gap=0.0)
        assert not fits(problem, answer.chosen)
        assert answer.objective == pytest.approx(brute_force(problem)), seed
        assert answer.status == "optimal"
        assert answer.bound is not None and answer.bound >= answer.objective - 1e-9


def test_every_rule_keeps_every_budget_the_ceiling_and_one_subsidy_per_household() -> None:
    for seed in range(3):
        problem = instance(2_000, seed, members=5_000)  # a few households apply twice in a period
        rules = [first_come_first_served(problem), lowest_pd_first(problem)]
        rules.append(solve(problem, time_limit=10, start=max(rules, key=lambda a: a.objective)))
        for allocation in rules:
            assert fits(problem, allocation.chosen) == [], allocation.rule
            assert allocation.chosen.any()
        assert rules[2].objective >= max(rules[0].objective, rules[1].objective)


def test_greedy_rules_take_each_application_that_still_fits_in_their_order() -> None:
    problem = instance(400, 3, members=300)
    for allocation, order in (
        (first_come_first_served(problem), np.argsort(problem.arrival)),
        (lowest_pd_first(problem), np.lexsort((problem.arrival, problem.pd))),
    ):
        # Replay the order: an application is taken exactly when, at its turn, it still fits.
        taken = np.zeros(len(problem), dtype=bool)
        for i in order:
            trial = taken.copy()
            trial[i] = True
            if not fits(problem, trial):
                taken = trial
        assert (taken == allocation.chosen).all(), allocation.rule
    # Lowest PD first takes the safest applications of each county-period first.
    low = lowest_pd_first(problem)
    assert problem.pd[low.chosen].mean() < problem.pd[first_come_first_served(problem).chosen].mean()


def test_an_empty_problem_allocates_nothing() -> None:
    problem = instance(0, 1)
    assert solve(problem).chosen.size == 0
    assert first_come_first_served(problem).objective == 0.0
