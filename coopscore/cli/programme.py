"""`coopscore programme ...`: interest-subsidy programmes (贴息).

`coopscore programme check FILE` validates a programme file (YAML or JSON) and prints what it says.

`coopscore programme allocate --programme FILE [--applications FILE] [--profiles FILE] [--out DIR]`
chooses which approved applications get the subsidy: an integer program (HiGHS) maximising the
households reached (or the programme's declared weighted value) within each county's budget per
period, the period's ceiling on expected loss and one subsidy per household per period, set beside
two greedy rules (first come first served; lowest PD first). Applications come from the decision log
(each application's latest decision; approved by its final word, a review's included) unless
`--applications` names a file (CSV, Parquet or JSON Lines with application_id, member_id, applied_at,
amount_cny, term_months, pd; optional decision, annual_rate and the evidence features). Member
profiles (read for targeting only, every read counted and logged) come from the event log unless
`--profiles` names a file. The report (JSON, HTML with a chart, the list subsidised) goes to
`<data_dir>/programmes/<id>/<UTC stamp>/` or `--out`.

Exit codes: 0 allocated, 2 bad input (a programme file that does not validate, a missing column, no
decision log, no member profiles), 5 nothing to allocate (no application is eligible; nothing is
written), 1 internal error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from coopscore.cli.output import EXIT_BAD_INPUT, JsonOnStdoutOption, console, emit, fail

EXIT_NOTHING = 5

app = typer.Typer(
    help="Interest-subsidy programmes (贴息): check a file, allocate a budget.", no_args_is_help=True
)

ProgrammeFile = Annotated[
    Path, typer.Option("--programme", help="The programme file (YAML or JSON), e.g. --programme green.yaml.")
]


def _load(path: Path, as_json: bool) -> Any:
    from models.programmes.programme import ProgrammeFileError, load_programme

    try:
        return load_programme(path)
    except ProgrammeFileError as error:
        _stop(str(error), EXIT_BAD_INPUT, as_json)


def _stop(message: str, code: int, as_json: bool) -> NoReturn:
    payload = {"status": "error", "exit_code": code, "message": message} if as_json else None
    fail(message, code, payload=payload, soft_wrap=True)


@app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="The programme file (YAML or JSON).")],
    as_json: JsonOnStdoutOption = False,
) -> None:
    """Validate a programme file and print its periods, budgets, rules and subsidy.

    Exit codes: 0 valid, 2 invalid (the field and the problem named), 1 internal error.
    """
    loaded = _load(path, as_json)
    p = loaded.programme
    summary = {
        "status": "ok",
        "id": p.id,
        "version": p.version,
        "sha256": loaded.sha256,
        "programme": p.model_dump(mode="json", by_alias=True),
    }
    if as_json:
        emit(summary)
        return
    lines = [
        f"programme {p.id} v{p.version}: {p.name.zh} · {p.name.en}",
        f"  periods: {', '.join(f'{x.id} [{x.start}, {x.end})' for x in p.periods)}",
        f"  budgets: {len(p.budgets)} county-period lines, {sum(b.amount_cny for b in p.budgets):,.2f} CNY",
        f"  subsidy: {p.subsidy.share:.0%} of interest "
        f"(reference rate {p.subsidy.reference_annual_rate:.2%})",
        f"  loss ceiling: {p.loss_ceiling.max_expected_loss_cny:,.2f} CNY a period "
        f"at LGD {p.loss_ceiling.lgd:.0%}",
        f"  eligibility: all of [{', '.join(r.rule for r in p.eligibility.all_of)}], "
        f"any of [{', '.join(r.rule for r in p.eligibility.any_of)}]",
    ]
    console.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)


@app.command("allocate")
def allocate(
    programme: ProgrammeFile,
    applications: Annotated[
        Path | None,
        typer.Option(
            "--applications",
            help="Approved applications with their PD (CSV, Parquet, JSON Lines), e.g. --applications q1.csv;"
            " default: the decision log.",
        ),
    ] = None,
    profiles: Annotated[
        Path | None,
        typer.Option(
            "--profiles",
            help="Member profiles file, e.g. --profiles profiles.csv; default: the event log's table.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Report folder, e.g. --out reports/q1; default <data_dir>/programmes/<id>/<UTC stamp>/.",
        ),
    ] = None,
    time_limit: Annotated[
        float,
        typer.Option("--time-limit", min=1.0, help="Seconds the solver may take, e.g. --time-limit 120."),
    ] = 60.0,
    gap: Annotated[
        float,
        typer.Option(
            "--gap",
            min=0.0,
            max=0.1,
            help="Relative optimality gap the solver stops at (0: exact), e.g. --gap 0.001.",
        ),
    ] = 1e-4,
    as_json: JsonOnStdoutOption = False,
) -> None:
    """Choose which approved applications get the subsidy: the integer program beside first come first
    served and lowest PD first; write the report (JSON, HTML, chart, the list subsidised).

    Exit codes: 0 allocated, 2 bad input, 5 nothing eligible (nothing written), 1 internal error.
    """
    from coopscore.settings import get_settings
    from models.programmes.eligibility import EligibilityInputError
    from monitoring.programme_allocation import (
        AllocationInputError,
        decision_log_candidates,
        file_candidates,
        profile_book,
    )
    from monitoring.programme_allocation import allocate as run_allocation
    from monitoring.programme_report import comparison_rows, write_report

    loaded = _load(programme, as_json)
    settings = get_settings()
    try:
        candidates = (
            file_candidates(applications, settings)
            if applications is not None
            else decision_log_candidates(settings)
        )
        book = profile_book(settings, profiles)
        run = run_allocation(loaded, candidates, book, time_limit=time_limit, mip_rel_gap=gap)
    except (AllocationInputError, EligibilityInputError) as error:
        _stop(str(error), EXIT_BAD_INPUT, as_json)
    if len(run.eligible) == 0:
        excluded = ", ".join(f"{v:,} {k}" for k, v in candidates.excluded.items()) or "none read"
        _stop(
            f"nothing to allocate: no application of {candidates.source} is eligible "
            f"({candidates.read:,} read; left out: {excluded})",
            EXIT_NOTHING,
            as_json,
        )
    payload, folder = write_report(run, settings.data_dir, out)
    if as_json:
        emit({"status": "ok", **payload})
        return
    _print(payload, comparison_rows(payload), folder)


def _print(payload: dict[str, Any], rows: list[dict[str, str]], folder: Path) -> None:
    from rich.table import Table

    apps = payload["applications"]
    programme = payload["programme"]
    console.print(
        f"{programme['id']} v{programme['version']}: {apps['read']:,} applications read "
        f"from {payload['source']}, {apps['eligible']:,} eligible",
        highlight=False,
        soft_wrap=True,
    )
    for reason, count in apps["excluded"].items():
        console.print(f"  left out: {count:,} ({reason})", highlight=False)
    for note in apps["notes"]:
        console.print(f"  note: {note}", highlight=False)
    names = [r["rule"] for r in payload["rules"]]
    table = Table(title="allocation compared · 分配方法对比")
    table.add_column("figure · 指标")
    for name in names:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(row["figure"], *(row[n] for n in names))
    console.print(table)
    solver = payload["solver"]
    bound = "-" if solver["bound"] is None else f"{solver['bound']:,.1f}"
    console.print(f"solver: HiGHS {solver['status']}, bound {bound}", highlight=False)
    uses = ", ".join(f"{u['rule']}→{u['field']} {u['count']:,}" for u in payload["profile_uses"]) or "none"
    console.print(f"protected profile reads (targeting, logged): {uses}", highlight=False, soft_wrap=True)
    console.print(f"report: {folder / 'report.html'}", highlight=False, soft_wrap=True)
