"""`coopscore simulate`: write a simulated cooperative world with known truth."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.table import Table

from coopscore.cli.output import JsonOption, console, emit, fail, progress_bar

if TYPE_CHECKING:
    from simulator.world import ProxyTrap

app = typer.Typer()


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Folder to write the world into, e.g. --out world/.")],
    members: Annotated[
        int, typer.Option(min=100, help="Number of members (borrowers), e.g. --members 5000.")
    ] = 20_000,
    months: Annotated[
        int, typer.Option(min=6, help="Months of cooperative activity, e.g. --months 36.")
    ] = 26,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes, e.g. --seed 5.")] = 7,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            help="Drift scenario NAME[@MONTH]: drought, new_coop, unit_fen. Repeatable, "
            "e.g. --scenario drought@20."
        ),
    ] = None,
    proxy_trap: Annotated[
        str,
        typer.Option(
            help="mild: 60% of a left-behind woman's deliveries and 50% of her land inputs are filed "
            "under another household's id; household: all of them and her group savings too. "
            "E.g. --proxy-trap household.",
        ),
    ] = "mild",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing world folder.")] = False,
    interventions: Annotated[
        Path | None,
        typer.Option(
            help="Re-simulate the same world with members acting on advice: a JSON file "
            '{"interventions": [{"member_id", "action", "units", "start_month"}]}, e.g. '
            "--interventions advice.json (the same seed gives the same months before the first).",
            dir_okay=False,
        ),
    ] = None,
    record_states_from: Annotated[
        int | None,
        typer.Option(
            help="Write every member's latent state at the end of each month from this month on "
            "(truth/member_states.parquet), e.g. --record-states-from 24.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Simulate a cooperative world with known truth: raw feeds, applications, outcomes, truth/."""
    from simulator.interventions import read_interventions
    from simulator.scenarios import parse_scenario
    from simulator.world import SimulationConfig, simulate_world

    if out.exists() and any(out.iterdir()) and not overwrite:
        fail(f"{out} is not empty; pass --overwrite to replace it")
    try:
        scenarios = tuple(parse_scenario(s, months) for s in scenario or [])
        config = SimulationConfig(
            members=members,
            months=months,
            seed=seed,
            scenarios=scenarios,
            proxy_trap=cast("ProxyTrap", proxy_trap),
            interventions=read_interventions(interventions) if interventions else (),
            record_states_from=record_states_from,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with progress_bar(not as_json) as bar:
        task = bar.add_task("simulating", total=months)
        summary = simulate_world(
            config,
            out,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            overwrite=overwrite,
        )
    if as_json:
        emit(summary.to_dict())
        return
    table = Table(title=f"world written to {out}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in summary.to_dict().items():
        if isinstance(value, dict):
            for sub, count in value.items():
                table.add_row(f"{key}: {sub}", f"{count:,}")
        else:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


@app.command("simulate-table")
def simulate_table(
    out: Annotated[
        Path,
        typer.Option(help="CSV (or .parquet) file to write, e.g. --out applications.csv.", dir_okay=False),
    ],
    rows: Annotated[int, typer.Option(min=100, help="Number of applications, e.g. --rows 1000.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same table, e.g. --seed 3.")] = 11,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
    gender_proxy: Annotated[
        bool,
        typer.Option(
            "--gender-proxy",
            help="Add childcare_leave_days, an input that encodes gender (for the proxy warning).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a lender's awkward application table to try `coopscore train --table` on: dd/mm/yyyy
    dates, a text id, a constant column, a text label with a third value, a leaking column, gaps;
    protected columns age and gender."""
    from simulator.lender_table import write_lender_table

    if out.exists() and not overwrite:
        fail(f"{out} exists; pass --overwrite to replace it")
    write_lender_table(out, rows, seed=seed, gender_proxy=gender_proxy)
    if as_json:
        emit({"path": str(out), "rows": rows, "seed": seed})
        return
    console.print(f"wrote {rows:,} applications to {out}")
