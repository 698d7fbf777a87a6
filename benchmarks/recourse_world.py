"""Recourse verified in the world: does the advice lower the members' true risk, or only game the model?

1. A world of `--members` members is simulated over `--decide-month + --horizon` months (recording
   every member's latent state from the decision month) and ingested; a model is trained on it as of
   the decision date T0 (the start of month `--decide-month`).
2. Members who applied in the six months before T0 are scored as if they applied again at T0 (same
   amount and term); `--applicants` of those the model does not approve are drawn.
3. Each gets two plans: the default one (causal actions only) and a causality-blind one (every action,
   cheapest first: `non_causal="equal"`, what a recourse tool that ignores causality would say).
4. The world is re-simulated twice from the same seed, once with every member doing their causal
   plan and once their blind plan (`simulator.interventions`: each action ends when the plan does,
   D months after T0). The causal world also holds **probes**: `--probes` other members per action
   doing a fixed dose of it, to measure each action's effect on its own.
5. Every member is re-scored at T0 + D (their features rebuilt from the re-simulated feeds through
   the real ingest and offline engine) in the world where they acted and in the baseline world, and
   their true PD for the same loan is computed from the recorded states of both.

It reports, per arm, the share whose decision flips to approve (with the actions, and without them,
in the baseline), the share whose true PD falls, and the share whose score rises while their true PD
does not change (advice that only games the model); and per action, whether the catalogue's
`causal` flag is what the world shows. JSON (`--out`) and printed tables.

Usage: `python benchmarks/recourse_world.py [--members 20000 --decide-month 24 --horizon 6 --seed 41
--applicants 400 --probes 150 --work-dir /tmp/cs-recourse --out recourse-world.json]`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# A fixed dose per action for the probes, and the months it takes.
DOSES = {
    "save_group_fund": 2000.0,
    "complete_training": 2.0,
    "adopt_green_practice": 2.0,
    "deliver_through_coop": 3.0,
    "attend_meetings": 3.0,
}
PLACEBO_MONTHS = 3  # members with no plan are re-scored this many months on
SAME_PD = 1e-12  # relative: a true PD that moved less than this did not change


def _keep_package_importable() -> None:
    """Scripts here are named like packages (training.py, features.py): keep this folder off the path."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    if str(HERE.parent) not in sys.path:
        sys.path.insert(0, str(HERE.parent))


@dataclass
class Subject:
    """One member evaluated in one arm: what they do, when they are re-scored, and what came of it."""

    member_id: str
    amount: float
    term: float
    months: int  # re-scored at T0 + months
    actions: dict[str, float] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    outcome: dict[str, Any] = field(default_factory=dict)
    rests_on_record_only: bool = False  # its causal actions alone would not reach approval


def _interventions(subjects: list[Subject], decide_month: int) -> list[Any]:
    """Each member's actions, timed to end together D months after the decision (as the plan says)."""
    from features.catalog import default_registry
    from simulator.interventions import Intervention

    actions = default_registry().action_by_name
    out = []
    for s in subjects:
        for name, units in s.actions.items():
            start = decide_month + s.months - actions[name].duration_months(units)
            out.append(Intervention(s.member_id, name, units, start))
    return out


def _rescore(model: Any, data: Path, subjects: list[Subject], t0: Any) -> dict[str, tuple[float, float, str]]:
    """Score, PD and decision of every subject at T0 + their months, from this world's feeds."""
    import pandas as pd

    from benchmarks.recourse_common import scored, spine_at

    spine = spine_at(
        [s.member_id for s in subjects],
        [t0 + pd.DateOffset(months=s.months) for s in subjects],
        [s.amount for s in subjects],
        [s.term for s in subjects],
        request_ids=[f"{s.member_id}@{s.months}" for s in subjects],
    ).drop_duplicates("request_id")
    frame = scored(model, data, spine)
    return {
        rid: (float(sc), float(p), d)
        for rid, sc, p, d in zip(
            frame["request_id"], frame["score"], frame["pd"], frame["decision"], strict=True
        )
    }


def _true_pds(world: Path, subjects: list[Subject], decide_month: int) -> dict[str, float]:
    """True PD of each subject's loan at T0 + their months, from the world's recorded states."""
    import numpy as np
    import pyarrow.parquet as pq

    from simulator.activity import hypothetical_true_pd

    states = pq.read_table(world / "truth" / "member_states.parquet").to_pandas()
    states = states.set_index(["member_id", "month"])
    keys = [(s.member_id, decide_month + s.months - 1) for s in subjects]
    picked = states.loc[keys]
    columns = {c: picked[c].to_numpy(dtype=float) for c in picked.columns}
    pds = hypothetical_true_pd(
        columns,
        np.array([s.amount for s in subjects]),
        np.array([s.term for s in subjects]),
    )
    return {f"{s.member_id}@{s.months}": float(p) for s, p in zip(subjects, pds, strict=True)}


def _outcomes(
    subjects: list[Subject],
    arm: dict[str, Any],
    base: dict[str, Any],
    arm_pd: dict[str, float],
    base_pd: dict[str, float],
) -> None:
    for s in subjects:
        key = f"{s.member_id}@{s.months}"
        score, _, decision = arm[key]
        score0, _, decision0 = base[key]
        s.outcome = {
            "score": score,
            "decision": decision,
            "score_without": score0,
            "decision_without": decision0,
            "true_pd": arm_pd[key],
            "true_pd_without": base_pd[key],
        }


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else math.nan


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _effects(subjects: list[Subject]) -> dict[str, float]:
    """What the actions did, each subject against themselves in the baseline world."""
    o = [s.outcome for s in subjects]
    same = [abs(x["true_pd"] - x["true_pd_without"]) <= SAME_PD * x["true_pd_without"] for x in o]
    return {
        "members": len(o),
        "approved_with_actions": _share([x["decision"] == "approve" for x in o]),
        "approved_without_actions": _share([x["decision_without"] == "approve" for x in o]),
        "true_pd_falls": _share(
            [x["true_pd"] < x["true_pd_without"] and not sm for x, sm in zip(o, same, strict=True)]
        ),
        "score_rises": _share([x["score"] > x["score_without"] for x in o]),
        "score_rises_true_pd_unchanged": _share(
            [x["score"] > x["score_without"] and sm for x, sm in zip(o, same, strict=True)]
        ),
        "score_change": _mean([x["score"] - x["score_without"] for x in o]),
        "true_pd_change_relative": _mean([x["true_pd"] / x["true_pd_without"] - 1 for x in o]),
    }


def _rests_on_record_only(engine: Any, row: dict[str, float], actions: dict[str, float]) -> bool:
    """Whether a plan's approval needs its record-only actions: its causal actions alone, scored
    exactly with the model, do not reach approval."""
    import numpy as np

    from features.catalog import default_registry
    from features.catalog.levers import ActionMoves

    registry = default_registry()
    causal = {name: units for name, units in actions.items() if registry.action_by_name[name].causal}
    if len(causal) == len(actions):
        return False
    if not causal:
        return True
    moves = ActionMoves(registry, row, list(causal))
    levels = np.array([[causal[a.name] for a in moves.actions]])
    _, approved = engine.approves(moves.apply(levels))
    return not bool(approved[0])


def _arm_summary(subjects: list[Subject]) -> dict[str, Any]:
    planned = [s for s in subjects if s.actions]
    placebo = [s for s in subjects if not s.actions]
    resting = [s for s in planned if s.rests_on_record_only]
    return {
        "plans_resting_on_record_only_actions": len(resting),
        "resting_on_record_only": _effects(resting),
        "plans": len(planned),
        "no_plan": len(placebo),
        # Out of reach because the file is too thin for an automatic decision (no action adds history).
        "no_plan_thin_file": sum(1 for s in placebo if any("minimum" in n for n in s.plan.get("notes", ()))),
        "plan_cost_cny": _mean([s.plan["total_cost_cny"] for s in planned]),
        "plan_months": _mean([s.plan["months"] for s in planned]),
        "promised_score_gain": _mean([s.plan["reached_score"] - s.plan["score"] for s in planned]),
        "plans_with_record_only_actions": _share(
            [any(not a["causal"] for a in s.plan["actions"]) for s in planned]
        ),
        "with_plan": _effects(planned),
        "without_plan": _effects(placebo),
        "actions_used": {name: sum(1 for s in planned if name in s.actions) for name in DOSES},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--decide-month", type=int, default=24)
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--seed", type=int, default=41)
    parser.add_argument("--applicants", type=int, default=400)
    parser.add_argument("--probes", type=int, default=150, help="members per action for the per-action check")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/cs-recourse"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    _keep_package_importable()

    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from benchmarks.recourse_common import baseline, not_approved
    from benchmarks.worlds import prepare_world
    from features.catalog import default_registry
    from models.recourse import RecourseEngine
    from simulator.world import SimulationConfig

    began = time.perf_counter()
    months = args.decide_month + args.horizon
    world_a, data_a, t0, model = baseline(
        args.work_dir, args.members, args.decide_month, args.horizon, args.seed
    )
    frame, rows = not_approved(data_a, model, t0.to_pydatetime())
    rng = np.random.default_rng(args.seed)
    picked = np.sort(rng.choice(len(rows), size=min(args.applicants, len(rows)), replace=False))
    engine = RecourseEngine(model)
    registry = default_registry()
    arms: dict[str, list[Subject]] = {"causal": [], "blind": []}
    for i in picked:
        row, member = rows[i], str(frame.loc[i, "member_id"])
        amount, term = float(frame.loc[i, "amount_cny"]), float(frame.loc[i, "term_months"])
        for arm, mode in (("causal", "drop"), ("blind", "equal")):
            plan = engine.plan(row, non_causal=mode).to_dict()  # type: ignore[arg-type]
            found = plan["status"] == "found"
            actions = {a["action"]: a["units"] for a in plan["actions"]} if found else {}
            arms[arm].append(
                Subject(
                    member,
                    amount,
                    term,
                    plan["months"] if found else PLACEBO_MONTHS,
                    actions,
                    plan,
                    rests_on_record_only=bool(actions) and _rests_on_record_only(engine, row, actions),
                )
            )
    # Probes: other members, active at T0 and through the horizon, each doing one action's fixed dose.
    truth = pq.read_table(world_a / "truth" / "members.parquet").to_pandas()
    joined = pd.to_datetime(truth["joined_at"], utc=True)
    left = pd.to_datetime(truth["left_at"], utc=True)
    stays = (joined < t0 - pd.DateOffset(months=6)) & (
        left.isna() | (left > t0 + pd.DateOffset(months=args.horizon))
    )
    taken = {s.member_id for s in arms["causal"]}
    pool = [m for m in truth.loc[stays, "member_id"] if m not in taken]
    chosen = rng.choice(len(pool), size=args.probes * len(DOSES), replace=False)
    amounts = frame["amount_cny"].median()
    probes: dict[str, list[Subject]] = {}
    for k, name in enumerate(DOSES):
        units = DOSES[name]
        members = [pool[j] for j in chosen[k * args.probes : (k + 1) * args.probes]]
        months_needed = registry.action_by_name[name].duration_months(units)
        probes[name] = [Subject(m, float(amounts), 12.0, months_needed, {name: units}) for m in members]
    probe_subjects = [s for group in probes.values() for s in group]

    worlds: dict[str, tuple[Path, Path]] = {}
    for arm, extra in (("causal", probe_subjects), ("blind", [])):
        interventions = _interventions(arms[arm] + extra, args.decide_month)
        config = SimulationConfig(
            members=args.members,
            months=months,
            seed=args.seed,
            record_states_from=args.decide_month,
            interventions=tuple(interventions),
        )
        world, data, _ = prepare_world(args.work_dir, config, label=f"{arm} plans: ")
        worlds[arm] = (world, data)
    every = {"causal": arms["causal"] + probe_subjects, "blind": arms["blind"]}
    base_scores = _rescore(model, data_a, every["causal"] + every["blind"], t0)
    base_pds = _true_pds(world_a, every["causal"] + every["blind"], args.decide_month)
    for arm, subjects in every.items():
        world, data = worlds[arm]
        _outcomes(
            subjects,
            _rescore(model, data, subjects, t0),
            base_scores,
            _true_pds(world, subjects, args.decide_month),
            base_pds,
        )

    result: dict[str, Any] = {
        "members": args.members,
        "months": months,
        "decide_month": args.decide_month,
        "decided_at": t0.isoformat(),
        "seed": args.seed,
        "model": {
            "trees": model.booster.num_trees(),
            "approve_max_pd": model.policy.approve_max_pd,
            "target_score": engine.target_score,
        },
        "not_approved_at_t0": frame["decision"].value_counts().to_dict(),
        "applicants": len(picked),
        "arms": {arm: _arm_summary(subjects) for arm, subjects in arms.items()},
        "actions": {
            name: {
                "causal_declared": registry.action_by_name[name].causal,
                "dose": DOSES[name],
                **_effects(group),
            }
            for name, group in probes.items()
        },
        "seconds": round(time.perf_counter() - began, 1),
    }
    for row in result["actions"].values():
        row["validated"] = (row["true_pd_falls"] >= 0.9) == row["causal_declared"]
    _print(result)
    if args.out is not None:
        args.out.write_text(json.dumps(_strict(result), indent=1) + "\n", encoding="utf-8")


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1%}"


def _effect_cells(e: dict[str, float]) -> list[str]:
    """The with-vs-without columns of one row."""
    return [
        _pct(e["approved_with_actions"]),
        _pct(e["approved_without_actions"]),
        _pct(e["true_pd_falls"]),
        _pct(e["score_rises"]),
        _pct(e["score_rises_true_pd_unchanged"]),
        f"{e['score_change']:+.1f}",
        _pct(e["true_pd_change_relative"]),
    ]


def _print(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    table = Table(
        title=f"recourse in the world: {result['applicants']} members not approved at "
        f"{result['decided_at'][:10]} "
        f"({result['members']:,}-member world, seed {result['seed']}), re-scored when their plan ends",
        caption="with vs without: the same member in the re-simulated world where they acted and in the "
        "baseline world; gaming = score rises while the true PD does not change. Members with no plan did "
        "nothing: their rows measure how much a re-simulated future moves scores by chance",
    )
    for column in (
        "arm",
        "plans",
        "mean cost CNY",
        "months",
        "approved with actions",
        "approved without",
        "true PD falls",
        "score rises",
        "gaming",
        "Δ score",
        "Δ true PD",
        "plans with record-only actions",
    ):
        table.add_column(column, justify="left" if column == "arm" else "right")
    labels = {"causal": "causal actions (default)", "blind": "every action, causality-blind"}
    for arm, summary in result["arms"].items():
        table.add_row(
            labels[arm],
            f"{summary['plans']} ({summary['no_plan']} none, {summary['no_plan_thin_file']} thin)",
            f"{summary['plan_cost_cny']:,.0f}",
            f"{summary['plan_months']:.1f}",
            *_effect_cells(summary["with_plan"]),
            _pct(summary["plans_with_record_only_actions"]),
        )
        resting = summary["resting_on_record_only"]
        if resting["members"]:
            label = "  of which approval rests on record-only actions"
            table.add_row(label, str(resting["members"]), "-", "-", *_effect_cells(resting), "100.0%")
    for arm, summary in result["arms"].items():
        nothing = summary["without_plan"]
        label = f"  no plan ({arm} arm): the noise floor"
        table.add_row(label, str(nothing["members"]), "-", str(PLACEBO_MONTHS), *_effect_cells(nothing), "-")
    console.print(table)
    actions = Table(title="each action alone (probes: other members doing a fixed dose)")
    for column in (
        "action",
        "dose",
        "declared causal",
        "members",
        "true PD falls",
        "Δ true PD",
        "score rises",
        "score rises, true PD same",
        "Δ score",
        "flag holds",
    ):
        actions.add_column(column, justify="left" if column == "action" else "right")
    for name, row in result["actions"].items():
        actions.add_row(
            name,
            f"{row['dose']:g}",
            "yes" if row["causal_declared"] else "no",
            str(row["members"]),
            _pct(row["true_pd_falls"]),
            _pct(row["true_pd_change_relative"]),
            _pct(row["score_rises"]),
            _pct(row["score_rises_true_pd_unchanged"]),
            f"{row['score_change']:+.1f}",
            "yes" if row["validated"] else "NO",
        )
    console.print(actions)
    print(f"took {result['seconds']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
