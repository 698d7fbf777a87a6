"""Recourse: the cheapest set of member actions that turns a review or decline into an approval.

The actions and how each moves the features are declared in the feature catalogue
(`features.catalog.actions`, `Feature.levers`); `features.catalog.levers.ActionMoves` turns any
combination of action sizes into feature rows. This module searches those combinations, exactly:

1. **Candidate sizes.** A tree ensemble is a step function: the score only changes where a feature
   crosses one of the booster's split thresholds (or turns missing / non-missing). For each action
   alone, every size on its grid is mapped to the side of every threshold each moved feature falls
   on (plus the policy's evidence minimums); the sizes where that signature changes, and 0, are its
   candidates. A feature moved by several actions at once (the record counts) enters the signature
   by value, so between two neighbouring candidates of every action each feature stays on one side
   of every threshold: the cheapest point of each cell of the candidate lattice is its corner, and
   the lattice holds the optimum of the whole grid.
2. **Search by cost.** The lattice is sorted by cost (then months, then number of actions) and scored
   with the booster in growing chunks; the first point whose margin reaches the approve cutoff (the
   model's policy: PD <= approve_max_pd, with enough evidence on file) is the cheapest plan. Where
   record-only actions widen the lattice, a bound from the trees (`models.tree_bounds`) first checks
   that some combination could reach the cutoff at all.
3. **Verification.** The chosen row is scored again through `CreditModel.assess`, the path serving
   uses, and must be approved with the same score.

Actions flagged non-causal in the catalogue (they change the record, not the risk) are dropped by
default, offered only when no causal plan exists ("last"), or treated like the others ("equal": what
a causality-blind tool would do; the simulator's recourse evaluation compares them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from features.catalog import FeatureRegistry, application_features_for_request, default_registry
from features.catalog.levers import ActionMoves
from features.catalog.schema import Action
from models.credit_model import CreditModel
from models.tree_bounds import TreeBounds

FloatArray = npt.NDArray[np.float64]
NonCausal = Literal["drop", "last", "equal"]
Status = Literal["not_needed", "found", "out_of_reach", "unavailable"]
NON_CAUSAL_MODES: Final[tuple[NonCausal, ...]] = ("drop", "last", "equal")

_FIRST_CHUNK: Final = 256
_MAX_CHUNK: Final = 8192
# Sizes of the lattice beyond which a search is refused rather than run for seconds.
MAX_LATTICE: Final = 2_000_000


class RecourseUnavailableError(ValueError):
    """This model cannot give recourse (it was not trained on the feature catalogue)."""


class _Plain(BaseModel):
    """The plan types: immutable, no unknown fields; their JSON is the response's `recourse`."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureMove(_Plain):
    """One model input an action changes: its value before and right after."""

    name: str
    description_zh: str
    description_en: str
    before: float | None
    after: float | None


class PlannedAction(_Plain):
    """One step of a plan: what to do, what it costs, what it moves, and where the score then stands."""

    action: str
    label_zh: str
    label_en: str
    units: float = Field(description="how much: CNY saved, trainings, practices, or months")
    unit_zh: str
    unit_en: str
    cost_cny: float = Field(description="declared cost: money spent or set aside, or working days valued")
    months: int
    causal: bool = Field(description="false: it changes the record, not the risk (offered only last)")
    instruction_zh: str
    instruction_en: str
    mechanism_zh: str
    mechanism_en: str
    moves: tuple[FeatureMove, ...] = Field(description="the target values: each model input it moves")
    score_after: float = Field(description="the score with this and every earlier step done")
    pd_after: float
    decision_after: str


class RecoursePlan(_Plain):
    """What would change the decision (zh/en), computed exactly from the model; or why nothing within
    the declared actions would. It is the one recourse type from model to response (`/v1/score`)."""

    status: Status
    non_causal: NonCausal
    score: float | None = Field(default=None, description="the score now")
    pd: float | None = None
    decision: str | None = None
    target_score: float | None = Field(default=None, description="the approve cutoff, in points")
    target_pd: float | None = None
    actions: tuple[PlannedAction, ...] = ()
    reached_score: float | None = Field(
        default=None, description="with every action done (the closest plan's, when out of reach)"
    )
    reached_pd: float | None = None
    reached_decision: str | None = None
    total_cost_cny: float = 0.0
    months: int = 0
    summary_zh: str = ""
    summary_en: str = ""
    notes: tuple[str, ...] = ()
    lattice: int = Field(default=0, description="candidate combinations of action sizes")
    evaluated: int = Field(default=0, description="combinations scored before the answer was known")
    unavailable_actions: dict[str, str] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class _Search:
    """The outcome of one search over a set of actions."""

    moves: ActionMoves
    found: bool
    levels: FloatArray  # the chosen (or, when nothing reaches approval, the closest) sizes per action
    margin: float
    lattice: int
    evaluated: int
    proved: bool = False  # out of reach by the trees' bound, without scoring the lattice


class RecourseEngine:
    """Exact recourse for one `CreditModel` over the catalogue's actions (build once per model)."""

    def __init__(self, model: CreditModel, registry: FeatureRegistry | None = None) -> None:
        registry = registry or default_registry()
        if model.spec.source != "feature_views":
            raise RecourseUnavailableError(
                "recourse needs a model trained on the feature catalogue, not a table"
            )
        unknown = [n for n in model.feature_names if n not in registry.by_name]
        if unknown:
            raise RecourseUnavailableError(
                f"the model reads features the catalogue does not declare: {unknown[:3]}"
            )
        self.model = model
        self.registry = registry
        index = {name: i for i, name in enumerate(registry.names)}
        self._columns = np.array([index[n] for n in model.feature_names], dtype=np.int64)
        self._trees = TreeBounds(model.booster, len(model.feature_names))
        # Registry column -> the thresholds that matter for it (empty: the model ignores it).
        self._thresholds: dict[int, FloatArray] = {
            int(col): t for col, t in zip(self._columns, self._trees.thresholds, strict=True) if len(t)
        }
        policy = model.policy
        self.target_pd = policy.approve_max_pd
        a, b = model.calibration.slope, model.calibration.intercept
        target_log_odds = math.log(self.target_pd) - math.log1p(-self.target_pd)
        self._cut_margin = (target_log_odds - b) / a
        self.target_score = float(model.scale.score_from_log_odds(target_log_odds))
        rule = policy.evidence
        self._evidence_min = [(index[n], m) for n, m in rule.minimums.items() if n in index]
        self._evidence_any = [index[n] for n in rule.sufficient_if_positive if n in index]
        self._evidence_columns = [(n, index[n]) for n in rule.features if n in index]
        self._immutable = {f.name for f in registry.features if f.immutable}

    # ---- scores ----

    def _margins(self, rows: FloatArray) -> FloatArray:
        x = np.ascontiguousarray(rows[:, self._columns])
        threads = 1 if len(x) <= 2048 else 0
        return np.asarray(
            self.model.booster.predict(x, raw_score=True, num_threads=threads), dtype=np.float64
        )

    def _score(self, margin: FloatArray | float) -> FloatArray:
        return np.asarray(self.model.scale.score_from_log_odds(self.model.calibration.log_odds(margin)))

    def approves(self, rows: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """Booster margins of feature rows (registry order), and which of them the policy approves."""
        margins = self._margins(rows)
        return margins, (margins <= self._cut_margin) & self._enough_evidence(rows)

    def _enough_evidence(self, rows: FloatArray) -> npt.NDArray[np.bool_]:
        """The policy's thin-file rule on many rows (missing counts as none)."""
        if not self._evidence_min and not self._evidence_any:
            return np.ones(len(rows), dtype=bool)
        ok = np.ones(len(rows), dtype=bool)
        for col, minimum in self._evidence_min:
            ok &= rows[:, col] >= minimum  # NaN compares False: no evidence
        for col in self._evidence_any:
            ok |= rows[:, col] > 0
        return ok

    # ---- the search ----

    def _candidates(
        self, moves: ActionMoves, action: int, joint: set[int]
    ) -> tuple[FloatArray, dict[int, FloatArray]]:
        """Sizes of one action where anything the model or policy can see changes (0 first), and the
        columns it moves at those sizes."""
        units = _units(moves.actions[action])
        moved = moves.moved(moves.single(action, units))
        parts: list[FloatArray] = []
        for col, sources in moves.moved_by.items():
            if action not in sources:
                continue
            values = moved[col]
            if col in joint:
                parts.append(np.nan_to_num(values, nan=-np.inf))
                continue
            cuts = self._thresholds.get(col)
            if cuts is not None:
                parts.append(np.searchsorted(cuts, values, side="left").astype(np.float64))
                parts.append(np.isnan(values).astype(np.float64))
                parts.append((values == 0).astype(np.float64))
        evidence_cols = [c for c, _ in self._evidence_min] + self._evidence_any
        if any(action in moves.moved_by.get(c, ()) for c in evidence_cols):
            rows = moves.apply(moves.single(action, units))
            parts.append(self._enough_evidence(rows).astype(np.float64))
        if not parts:
            return units[:1], {col: values[:1] for col, values in moved.items()}
        signature = np.stack(parts, axis=1)
        changed = np.flatnonzero((signature[1:] != signature[:-1]).any(axis=1)) + 1
        keep = np.concatenate([[0], changed])
        return np.asarray(units[keep], dtype=np.float64), {col: values[keep] for col, values in moved.items()}

    def _out_of_reach(
        self, moves: ActionMoves, alone: list[dict[int, FloatArray]], joint: set[int]
    ) -> float | None:
        """The trees' bound on the margin over every combination (None when it may reach approval):
        each model input ranges over what the actions can make of it."""
        low, high = moves.base[self._columns].copy(), moves.base[self._columns].copy()
        missing = np.isnan(low)
        for k, col in enumerate(self._columns):
            sources = moves.moved_by.get(int(col))
            if not sources:
                continue
            seen = np.concatenate([alone[j][int(col)] for j in sources])
            kinds = {lever.kind for lever in self.registry.by_name[moves.names[col]].levers}
            if int(col) in joint and kinds == {"add"}:  # the actions' additions add up
                start = 0.0 if math.isnan(moves.base[col]) else moves.base[col]
                deltas = [alone[j][int(col)] - start for j in sources]
                low[k] = start + sum(float(np.nanmin(d)) for d in deltas)
                high[k] = start + sum(float(np.nanmax(d)) for d in deltas)
            elif int(col) in joint and not kinds:  # derived from several actions: anything
                low[k], high[k], missing[k] = -np.inf, np.inf, True
                continue
            else:  # one action, or a reset / floor any of them sets
                present = seen[~np.isnan(seen)]
                low[k], high[k] = (present.min(), present.max()) if len(present) else (np.inf, -np.inf)
            missing[k] = bool(np.isnan(seen).any())
        bound = self._trees.lowest_margin(low, high, missing)
        return bound if bound > self._cut_margin else None

    def _search(self, row: Mapping[str, Any], actions: Sequence[str], *, prune: bool) -> _Search | None:
        """The cheapest approved combination of sizes of `actions` (or the closest one); with `prune`,
        first the trees' bound, which may prove every combination out of reach without scoring them."""
        moves = ActionMoves(self.registry, row, actions)
        count = len(moves.actions)
        if count == 0:
            return None
        joint = {col for col, sources in moves.moved_by.items() if len(sources) > 1}
        found = [self._candidates(moves, j, joint) for j in range(count)]
        candidates = [units for units, _ in found]
        sizes = [len(c) for c in candidates]
        lattice = math.prod(sizes)
        if prune:
            bound = self._out_of_reach(moves, [moved for _, moved in found], joint)
            if bound is not None:
                return _Search(moves, False, np.zeros(count), bound, lattice, 0, proved=True)
        if lattice > MAX_LATTICE:
            raise ValueError(f"recourse lattice of {lattice:,} combinations is too large to search")
        grid = np.indices(sizes).reshape(count, -1).T  # every combination, as candidate indices
        levels = np.stack([candidates[j][grid[:, j]] for j in range(count)], axis=1)
        costs = np.zeros(lattice)
        months = np.zeros(lattice)
        for j, action in enumerate(moves.actions):
            costs += levels[:, j] * action.cost_cny_per_unit
            durations = np.array([action.duration_months(u) for u in candidates[j]], dtype=np.float64)
            months = np.maximum(months, durations[grid[:, j]])
        order = np.lexsort(((levels > 0).sum(axis=1), months, np.round(costs, 6)))
        best_margin, best_at = math.inf, 0
        evaluated, chunk, start = 0, _FIRST_CHUNK, 0
        while start < lattice:
            picked = order[start : start + chunk]
            margins, ok = self.approves(moves.apply(levels[picked]))
            evaluated += len(picked)
            for k in np.flatnonzero(ok):
                if self._verified(moves, levels[picked[k]], float(margins[k])):
                    return _Search(moves, True, levels[picked[k]], float(margins[k]), lattice, evaluated)
            lowest = int(np.argmin(margins))
            if margins[lowest] < best_margin:  # the closest plan: highest score, cheapest first
                best_margin, best_at = float(margins[lowest]), int(picked[lowest])
            start += len(picked)
            chunk = min(chunk * 2, _MAX_CHUNK)
        return _Search(moves, False, levels[best_at], best_margin, lattice, evaluated)

    def _judge(self, rows: FloatArray) -> list[tuple[float, float, str]]:
        """Score, PD and decision of feature rows, from one booster call (no explanation needed)."""
        margins = self._margins(rows)
        log_odds = self.model.calibration.log_odds(margins)
        scores = self.model.scale.score_from_log_odds(log_odds)
        pds = 1.0 / (1.0 + np.exp(-log_odds))
        policy = self.model.policy
        out: list[tuple[float, float, str]] = []
        for k, (score, pd_) in enumerate(zip(scores.tolist(), pds.tolist(), strict=True)):
            evidence = {name: rows[k, col] for name, col in self._evidence_columns}
            out.append((score, pd_, policy.decide(pd_, evidence).outcome))
        return out

    def _verified(self, moves: ActionMoves, levels: FloatArray, margin: float) -> bool:
        """Re-score the chosen row the way serving does: approved, at the score the search saw."""
        row = self._row(moves, levels)
        assessment = self.model.assess(row, top_k=0)
        return assessment.decision.outcome == "approve" and math.isclose(
            assessment.score, float(self._score(margin)), rel_tol=0.0, abs_tol=1e-6
        )

    def _row(self, moves: ActionMoves, levels: FloatArray) -> dict[str, float]:
        values = moves.apply(levels[None, :])[0]
        return dict(zip(moves.names, values.tolist(), strict=True))

    # ---- the answer ----

    def plan(self, row: Mapping[str, Any], *, non_causal: NonCausal = "drop") -> RecoursePlan:
        """The cheapest plan that reaches approval for this applicant (member vector plus request-time
        features), or why there is none. `non_causal`: drop, last or equal (module docstring)."""
        if non_causal not in NON_CAUSAL_MODES:
            raise ValueError(f"non_causal must be one of {NON_CAUSAL_MODES}")
        pd_now = float(self.model.predict_pd(row)[0])
        decision = self.model.decide(row, pd_now).outcome
        base = {
            "non_causal": non_causal,
            "score": float(self.model.scale.score_from_pd(pd_now)),
            "pd": pd_now,
            "decision": decision,
            "target_score": self.target_score,
            "target_pd": self.target_pd,
        }
        if decision == "approve":
            return RecoursePlan(status="not_needed", **base)  # type: ignore[arg-type]
        causal = [a.name for a in self.registry.actions if a.causal]
        every = [a.name for a in self.registry.actions]
        rounds = {"drop": [causal], "last": [causal, every], "equal": [every]}[non_causal]
        stuck = self._fixed_shortfalls(row)
        closest: _Search | None = None
        lattice = evaluated = 0
        if not stuck:
            for k, actions in enumerate(rounds):
                # Record-only actions widen the lattice most: a bound first (no closest plan from them).
                search = self._search(row, actions, prune=k > 0 or non_causal == "equal")
                if search is None:
                    continue
                lattice += search.lattice
                evaluated += search.evaluated
                if search.found:
                    return self._answer("found", search, base, lattice, evaluated, ())
                if not search.proved:
                    closest = closest or search
        notes = tuple(stuck) or ("no combination of the declared actions reaches the approve cutoff",)
        if closest is None:
            plan = RecoursePlan(status="out_of_reach", notes=notes, **base)  # type: ignore[arg-type]
            return plan
        return self._answer("out_of_reach", closest, base, lattice, evaluated, notes)

    def _fixed_shortfalls(self, row: Mapping[str, Any]) -> list[str]:
        """Thin-file shortfalls no action can mend (e.g. months of history), as notes."""
        notes = []
        if any(_value(row, self.registry.names[c]) > 0 for c in self._evidence_any):
            return []
        for col, minimum in self._evidence_min:
            name = self.registry.names[col]
            movable = any(f.name == name and f.levers for f in self.registry.features)
            if _value(row, name) < minimum and not movable:
                notes.append(
                    f"{name} is {_value(row, name):g}, below the policy's minimum of {minimum:g} for an "
                    "automatic decision; no action changes it (only time on file does)"
                )
        return notes

    def _answer(
        self,
        status: Status,
        search: _Search,
        base: dict[str, Any],
        lattice: int,
        evaluated: int,
        notes: tuple[str, ...],
    ) -> RecoursePlan:
        moves, levels = search.moves, search.levels
        chosen = [j for j in range(len(moves.actions)) if levels[j] > 0]
        steps = self._steps(moves, levels, chosen)
        [(reached_score, reached_pd, reached_decision)] = self._judge(moves.apply(levels[None, :]))
        cost = math.fsum(s.cost_cny for s in steps)
        months = max((s.months for s in steps), default=0)
        extra: tuple[str, ...] = ()
        if any(not s.causal for s in steps):
            extra = (
                "some actions change the record, not the risk: they are offered only because no plan "
                "of causal actions reaches approval",
            )
        summary_zh, summary_en = _summary(status, steps, base, reached_score, cost, months)
        return RecoursePlan(
            status=status,
            actions=tuple(steps),
            reached_score=reached_score,
            reached_pd=reached_pd,
            reached_decision=reached_decision,
            total_cost_cny=cost,
            months=months,
            summary_zh=summary_zh,
            summary_en=summary_en,
            notes=notes + extra,
            lattice=lattice,
            evaluated=evaluated,
            unavailable_actions=dict(moves.unavailable),
            **base,
        )

    def _steps(self, moves: ActionMoves, levels: FloatArray, chosen: list[int]) -> list[PlannedAction]:
        """The chosen actions in the order that raises the score most at each step."""
        done = np.zeros_like(levels)
        remaining = list(chosen)
        steps = []
        while remaining:
            trials = np.repeat(done[None, :], len(remaining), axis=0)
            for k, j in enumerate(remaining):
                trials[k, j] = levels[j]
            judged = self._judge(moves.apply(trials))
            pick = max(range(len(judged)), key=lambda k: judged[k][0])
            j = remaining.pop(pick)
            done[j] = levels[j]
            steps.append(self._planned(moves, j, float(levels[j]), *judged[pick]))
        return steps

    def _planned(
        self, moves: ActionMoves, j: int, units: float, score: float, pd_: float, decision: str
    ) -> PlannedAction:
        action: Action = moves.actions[j]
        alone = moves.apply(moves.single(j, [units]))[0]
        shown = []
        for col in self._columns:
            before, after = float(moves.base[col]), float(alone[col])
            name = moves.names[col]
            if col in moves.moved_by and j in moves.moved_by[col] and not _same(before, after):
                assert name not in self._immutable  # the catalogue forbids it; a plan never says so
                feature = self.registry.by_name[name]
                shown.append(
                    FeatureMove(
                        name=name,
                        description_zh=feature.description_zh,
                        description_en=feature.description_en,
                        before=None if math.isnan(before) else before,
                        after=None if math.isnan(after) else after,
                    )
                )
        months = action.duration_months(units)
        return PlannedAction(
            action=action.name,
            label_zh=action.label_zh,
            label_en=action.label_en,
            units=units,
            unit_zh=action.unit_zh,
            unit_en=action.unit_en,
            cost_cny=units * action.cost_cny_per_unit,
            months=months,
            causal=action.causal,
            instruction_zh=action.instruction_zh.format(units=units, months=months),
            instruction_en=action.instruction_en.format(units=units, months=months),
            mechanism_zh=action.mechanism_zh,
            mechanism_en=action.mechanism_en,
            moves=tuple(shown),
            score_after=score,
            pd_after=pd_,
            decision_after=decision,
        )


@lru_cache(maxsize=64)
def _units_of(minimum: float, step: float, maximum: float, grid: tuple[float, ...]) -> FloatArray:
    units = np.concatenate([[0.0], np.asarray(grid, dtype=np.float64)])
    units.setflags(write=False)
    return units


def _units(action: Action) -> FloatArray:
    """0 and every size on the action's grid."""
    return _units_of(action.minimum, action.step, action.maximum, action.grid())


def applicant_recourse(
    engine: RecourseEngine,
    member_features: Mapping[str, float],
    *,
    amount_cny: float,
    term_months: int,
    non_causal: NonCausal = "drop",
) -> RecoursePlan:
    """Recourse for a member's stored vector and the loan they ask for (the request-time features
    computed by the one shared `application_features`, as serving does)."""
    row = {
        **member_features,
        **application_features_for_request(member_features, amount_cny=amount_cny, term_months=term_months),
    }
    return engine.plan(row, non_causal=non_causal)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _value(row: Mapping[str, Any], name: str) -> float:
    value = row.get(name)
    if value is None:
        return 0.0
    number = float(value)
    return 0.0 if math.isnan(number) else number


def _summary(
    status: Status,
    steps: Sequence[PlannedAction],
    base: Mapping[str, Any],
    reached: float,
    cost: float,
    months: int,
) -> tuple[str, str]:
    """One zh and one en paragraph: where the score is, what to do, and where it gets to."""
    now, target = base["score"], base["target_score"]
    zh_steps = "；".join(
        f"{i}. {s.instruction_zh}（评分至{s.score_after:.1f}分）" for i, s in enumerate(steps, 1)
    )
    en_steps = "; ".join(
        f"{i}. {s.instruction_en} (score {s.score_after:.1f})" for i, s in enumerate(steps, 1)
    )
    if status == "found":
        zh = (
            f"当前评分{now:.1f}分，获批需要{target:.1f}分。在{months}个月内完成以下行动"
            f"（折合成本约{cost:,.0f}元）即可达到{reached:.1f}分并获批：{zh_steps}。"
        )
        en = (
            f"The score is {now:.1f}; approval needs {target:.1f}. Within {months} month(s), at a cost of "
            f"about {cost:,.0f} CNY, these actions reach {reached:.1f} and approval: {en_steps}."
        )
    else:
        zh = (
            f"当前评分{now:.1f}分，获批需要{target:.1f}分。现有可选行动无法达到获批标准；"
            f"最接近的方案可达到{reached:.1f}分：{zh_steps or '无'}。"
        )
        en = (
            f"The score is {now:.1f}; approval needs {target:.1f}. No combination of the actions on offer "
            f"reaches approval; the closest reaches {reached:.1f}: {en_steps or 'none'}."
        )
    return zh, en
