"""Which eligible applications get the subsidy: an integer program, and the greedy rules it beats.

The integer program, solved by HiGHS (branch and bound on the LP relaxation):

    maximise   Σ v_i x_i                        (households reached: v_i = 1; or a declared value)
    subject to Σ c_i x_i <= B_(county, period)   for each county and period   (c: subsidy, yuan)
               Σ l_i x_i <= L_period             for each period              (l: PD × LGD × principal)
               Σ x_i     <= 1                    for each member with several applications in a period
               x_i ∈ {0, 1}

The greedy rules walk the applications in one order and take each that still fits every constraint:
first come first served (by application time: what online reservations do) and lowest PD first.
The solver is warm-started with the better greedy answer, so it never reports less than either.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

SOLVER: Final = "integer program (HiGHS)"
FCFS: Final = "first come first served"
LOWEST_PD: Final = "lowest PD first"


@dataclass(frozen=True)
class AllocationProblem:
    """The eligible applications (one entry each) and the limits they share."""

    value: Floats
    cost: Floats  # subsidy, yuan
    loss: Floats  # expected loss, yuan
    pd: Floats
    arrival: npt.NDArray[np.int64]  # rank in application time (0 = first)
    county: npt.NDArray[np.object_]
    period: npt.NDArray[np.object_]
    member: npt.NDArray[np.object_]
    budgets: dict[tuple[str, str], float]  # (county, period) -> yuan
    loss_ceilings: dict[str, float]  # period -> yuan

    def __len__(self) -> int:
        return len(self.value)

    def row_keys(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Per application: index of its budget row, its loss row, and its member-period group."""
        budget_keys = list(self.budgets)
        budget_index = {k: i for i, k in enumerate(budget_keys)}
        periods = list(self.loss_ceilings)
        period_index = {p: i for i, p in enumerate(periods)}
        budget_row = np.array(
            [budget_index[(c, p)] for c, p in zip(self.county, self.period, strict=True)], dtype=np.int64
        )
        loss_row = np.array([period_index[p] for p in self.period], dtype=np.int64)
        groups: dict[tuple[object, object], int] = {}
        member_group = np.array(
            [groups.setdefault((m, p), len(groups)) for m, p in zip(self.member, self.period, strict=True)],
            dtype=np.int64,
        )
        return budget_row, loss_row, member_group


@dataclass(frozen=True)
class Allocation:
    """One rule's answer: which applications are subsidised, and how the solver finished."""

    rule: str
    chosen: Mask
    seconds: float
    status: str = "done"
    objective: float = 0.0
    bound: float | None = None  # the solver's proof: no allocation is worth more than this

    @property
    def gap(self) -> float | None:
        """Relative distance to the bound (0: proven optimal)."""
        if self.bound is None:
            return None
        return max(self.bound - self.objective, 0.0) / max(abs(self.bound), 1e-9)


def fits(problem: AllocationProblem, chosen: Mask, *, tolerance: float = 1e-6) -> list[str]:
    """Every constraint the allocation breaks (empty when it holds them all)."""
    broken = []
    for (county, period), budget in problem.budgets.items():
        used = float(problem.cost[chosen & (problem.county == county) & (problem.period == period)].sum())
        if used > budget + tolerance:
            broken.append(f"budget {county}/{period}: {used:.2f} > {budget:.2f}")
    for period, ceiling in problem.loss_ceilings.items():
        loss = float(problem.loss[chosen & (problem.period == period)].sum())
        if loss > ceiling + tolerance:
            broken.append(f"loss ceiling {period}: {loss:.2f} > {ceiling:.2f}")
    _, _, group = problem.row_keys()
    if len(group) and np.bincount(group[chosen], minlength=int(group.max()) + 1).max(initial=0) > 1:
        broken.append("a member is subsidised twice in one period")
    return broken


def greedy(problem: AllocationProblem, order: npt.NDArray[np.int64], rule: str) -> Allocation:
    """Walk `order`, taking each application that still fits its county budget, its period's loss
    ceiling and its member's one subsidy per period."""
    started = time.perf_counter()
    budget_row, loss_row, group = problem.row_keys()
    budget_left = np.array(list(problem.budgets.values()), dtype=np.float64)
    loss_left = np.array(list(problem.loss_ceilings.values()), dtype=np.float64)
    taken_group = np.zeros(int(group.max()) + 1 if len(group) else 0, dtype=bool)
    chosen = np.zeros(len(problem), dtype=bool)
    cost, loss = problem.cost, problem.loss
    for i in order.tolist():
        b, lr, g = budget_row[i], loss_row[i], group[i]
        if taken_group[g] or cost[i] > budget_left[b] or loss[i] > loss_left[lr]:
            continue
        budget_left[b] -= cost[i]
        loss_left[lr] -= loss[i]
        taken_group[g] = True
        chosen[i] = True
    seconds = time.perf_counter() - started
    return Allocation(rule, chosen, seconds, objective=float(problem.value[chosen].sum()))


def first_come_first_served(problem: AllocationProblem) -> Allocation:
    """Greedy in application-time order: what a running budget does online."""
    return greedy(problem, np.argsort(problem.arrival, kind="stable"), FCFS)


def lowest_pd_first(problem: AllocationProblem) -> Allocation:
    """Greedy from the safest borrower up (ties by application time)."""
    return greedy(problem, np.lexsort((problem.arrival, problem.pd)), LOWEST_PD)


def solve(
    problem: AllocationProblem,
    *,
    time_limit: float = 60.0,
    mip_rel_gap: float = 1e-4,
    threads: int | None = None,
    start: Allocation | None = None,
) -> Allocation:
    """The integer program, solved by HiGHS within `time_limit` seconds and `mip_rel_gap`.

    `start` (e.g. the better greedy answer) is handed to the solver as its first incumbent. The
    answer is checked against every constraint in exact arithmetic; should the solver's feasibility
    tolerance let a row over by a fraction of a fen, the least valuable applications of that row
    are dropped until it holds (counted in `status`).
    """
    import highspy

    began = time.perf_counter()
    n = len(problem)
    if n == 0:
        return Allocation(SOLVER, np.zeros(0, dtype=bool), 0.0, "optimal", 0.0, 0.0)
    budget_row, loss_row, group = problem.row_keys()
    n_budget, n_loss = len(problem.budgets), len(problem.loss_ceilings)
    # Member rows only where a member has several applications in a period.
    sizes = np.bincount(group)
    shared = np.flatnonzero(sizes > 1)
    member_row = np.full(len(sizes), -1, dtype=np.int64)
    member_row[shared] = n_budget + n_loss + np.arange(len(shared))
    own_row = member_row[group]

    rows = [budget_row, n_budget + loss_row]
    vals = [problem.cost, problem.loss]
    cols = [np.arange(n), np.arange(n)]
    in_group = own_row >= 0
    rows.append(own_row[in_group])
    vals.append(np.ones(int(in_group.sum())))
    cols.append(np.flatnonzero(in_group))
    row, val, col = np.concatenate(rows), np.concatenate(vals), np.concatenate(cols)
    sort = np.lexsort((row, col))
    row, val, col = row[sort], val[sort], col[sort]
    starts = np.concatenate([[0], np.cumsum(np.bincount(col, minlength=n))])

    lp = highspy.HighsLp()
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.num_col_ = n
    lp.num_row_ = n_budget + n_loss + len(shared)
    lp.col_cost_ = problem.value.astype(np.float64)
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.ones(n)
    lp.row_lower_ = np.full(lp.num_row_, -highspy.kHighsInf)
    lp.row_upper_ = np.concatenate(
        [
            np.array(list(problem.budgets.values()), dtype=np.float64),
            np.array(list(problem.loss_ceilings.values()), dtype=np.float64),
            np.ones(len(shared)),
        ]
    )
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = starts.astype(np.int32)
    lp.a_matrix_.index_ = row.astype(np.int32)
    lp.a_matrix_.value_ = val.astype(np.float64)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n

    with _stdout_to_stderr():  # HiGHS prints its banner on stdout, which `--json` keeps for one object
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    h.setOptionValue("random_seed", 7)
    if threads is not None:
        h.setOptionValue("threads", int(threads))
    h.passModel(lp)
    if start is not None and start.chosen.any():
        incumbent = highspy.HighsSolution()
        incumbent.col_value = start.chosen.astype(np.float64).tolist()
        h.setSolution(incumbent)
    h.run()
    model_status = h.getModelStatus()
    values = np.asarray(h.getSolution().col_value, dtype=np.float64)
    chosen = values > 0.5 if len(values) == n else np.zeros(n, dtype=bool)
    if model_status == highspy.HighsModelStatus.kOptimal:
        status = "optimal"
    elif model_status == highspy.HighsModelStatus.kTimeLimit:
        status = "time limit"
    else:
        status = h.modelStatusToString(model_status)
    info = h.getInfo()
    bound = float(info.mip_dual_bound) if np.isfinite(info.mip_dual_bound) else None
    dropped = _repair(problem, chosen)
    if dropped:
        status += f" (repaired: {dropped} dropped)"
    if start is not None and problem.value[start.chosen].sum() > problem.value[chosen].sum():
        chosen = start.chosen.copy()  # the solver found nothing better than its incumbent in time
    return Allocation(
        SOLVER, chosen, time.perf_counter() - began, status, float(problem.value[chosen].sum()), bound
    )


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what C code writes to file descriptor 1 to descriptor 2 for the duration."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _repair(problem: AllocationProblem, chosen: Mask) -> int:
    """Drop the least valuable applications (per yuan) from any row broken by more than rounding."""
    dropped = 0
    budget_row, loss_row, group = problem.row_keys()
    limits = [
        (budget_row, problem.cost, np.array(list(problem.budgets.values()), dtype=np.float64)),
        (loss_row, problem.loss, np.array(list(problem.loss_ceilings.values()), dtype=np.float64)),
    ]
    for keys, amount, limit in limits:
        for r in range(len(limit)):
            members = np.flatnonzero(chosen & (keys == r))
            members = members[np.argsort(problem.value[members] / np.maximum(amount[members], 1e-9))]
            total = float(amount[members].sum())
            for i in members:
                if total <= limit[r]:
                    break
                chosen[i] = False
                total -= float(amount[i])
                dropped += 1
    for g in np.flatnonzero(np.bincount(group[chosen], minlength=int(group.max()) + 1) > 1):
        extra = np.flatnonzero(chosen & (group == g))[1:]
        chosen[extra] = False
        dropped += len(extra)
    return dropped
