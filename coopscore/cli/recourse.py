"""`coopscore recourse MEMBER_ID`: what would turn a member's review or decline into an approval.

Reads the member's live vector from the online store and the model from the registry (verified as
the server does), and asks `models.recourse` for the cheapest plan over the catalogue's actions: the
same answer `/v1/score` gives with `"recourse": true`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

import typer
from rich.table import Table

from coopscore.cli.output import EXIT_BAD_INPUT, JsonOption, console, emit, fail

app = typer.Typer()

EXIT_OUT_OF_REACH = 6


@app.command()
def recourse(
    member_id: Annotated[str, typer.Argument(help="The member asking, e.g. M0000123.")],
    amount: Annotated[
        float, typer.Option("--amount", min=1, help="Amount asked for (CNY), e.g. --amount 20000.")
    ],
    term: Annotated[int, typer.Option("--term", min=1, max=120, help="Term in months, e.g. --term 12.")],
    purpose: Annotated[
        str,
        typer.Option(
            "--purpose",
            help="farm_inputs, livestock, equipment, processing, trade or other, e.g. --purpose livestock.",
        ),
    ] = "farm_inputs",
    model: Annotated[
        str, typer.Option("--model", help="champion, challenger or a version number, e.g. --model 3.")
    ] = "champion",
    non_causal: Annotated[
        str,
        typer.Option(
            "--non-causal",
            help="drop: only actions that change the risk (default); last: actions that only change the "
            "record too, when no causal plan reaches approval; e.g. --non-causal last.",
        ),
    ] = "drop",
    as_json: JsonOption = False,
) -> None:
    """The cheapest actions that reach approval (zh/en), each with its target values, cost, time
    and the score it reaches; computed exactly from the model.

    Exit codes: 0 a plan reaches approval (or none is needed), 6 no combination of the declared
    actions reaches approval (the closest is shown), 2 bad input (an unknown member, model or
    purpose, a table-trained model, vectors of another feature set), 1 internal error.
    """
    from coopscore.settings import get_settings
    from features.contracts import LOAN_PURPOSES
    from features.online.factory import online_store, online_store_exists
    from models.recourse import RecourseEngine, RecourseUnavailableError, applicant_recourse
    from models.registry import load_version
    from models.signing import Keyring

    if purpose not in LOAN_PURPOSES:
        fail(f"--purpose {purpose!r}: one of {', '.join(LOAN_PURPOSES)}")
    if non_causal not in ("drop", "last"):
        fail(f"--non-causal {non_causal!r}: drop or last")
    settings = get_settings()
    try:
        loaded = load_version(
            model,
            settings.tracking_uri,
            model_name=settings.model_name,
            keyring=Keyring.from_settings(settings),
        ).model
    except KeyError:
        fail(f"{settings.model_name}: no model {model!r} in the registry (train and promote one first)")
    vector = None
    if online_store_exists(settings):
        with online_store(settings) as store:
            vector = store.online_read([member_id])[0]
    if vector is None:
        fail(
            f"{member_id}: no vector in the online store "
            "(check the id, or run `coopscore features materialize`)"
        )
    if loaded.catalog_feature_set and vector.feature_set_version != loaded.catalog_feature_set:
        fail(
            f"{member_id}'s vector is of feature set {vector.feature_set_version}, the model of "
            f"{loaded.catalog_feature_set}: run `coopscore features materialize` or retrain"
        )
    try:
        engine = RecourseEngine(loaded)
    except RecourseUnavailableError as error:
        fail(str(error))
    plan = applicant_recourse(
        engine,
        vector.features,
        amount_cny=amount,
        term_months=term,
        non_causal=cast(Literal["drop", "last"], non_causal),
    )
    identity = loaded.identity
    payload: dict[str, Any] = {
        "member_id": member_id,
        "application": {"amount_cny": amount, "term_months": term, "purpose": purpose},
        "model_name": identity.name if identity else settings.model_name,
        "model_version": identity.version if identity else None,
        "features_as_of": vector.as_of.isoformat(),
        **plan.to_dict(),
    }
    code = EXIT_OUT_OF_REACH if plan.status == "out_of_reach" else 0
    if as_json:
        emit(payload)
        raise typer.Exit(code)
    _print(payload)
    raise typer.Exit(code)


def _print(payload: dict[str, Any]) -> None:
    """The plan as people read it: where the score is, each step, the summary in zh and en."""
    console.print(
        f"{payload['member_id']}: {payload['decision']} at score {payload['score']:.0f} "
        f"(approval from {payload['target_score']:.0f}); recourse {payload['status']}"
    )
    if payload["actions"]:
        table = Table(title="plan, cheapest first (score after each step)")
        for column in ("step", "action", "cost CNY", "months", "causal", "score after", "targets"):
            table.add_column(column, overflow="fold")
        for i, step in enumerate(payload["actions"], 1):
            targets = "; ".join(
                f"{m['name']} {_shown(m['before'])} → {_shown(m['after'])}" for m in step["moves"][:4]
            )
            table.add_row(
                str(i),
                f"{step['instruction_en']}\n{step['instruction_zh']}",
                f"{step['cost_cny']:,.0f}",
                str(step["months"]),
                "yes" if step["causal"] else "no",
                f"{step['score_after']:.1f} ({step['decision_after']})",
                targets,
            )
        console.print(table)
    for note in payload["notes"]:
        console.print(f"note: {note}")
    if payload["summary_en"]:
        console.print(payload["summary_en"])
        console.print(payload["summary_zh"])


def _shown(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.3g}"


__all__ = ["EXIT_BAD_INPUT", "EXIT_OUT_OF_REACH", "app"]
