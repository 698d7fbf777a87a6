"""`coopscore audit ...`: fairness audits from the command line (registered by `coopscore.cli`).

`coopscore audit fairness --data FILE --protected COL ...` audits a table of decisions (CSV or Parquet:
one row per application with a PD column, a decision (approve/review/decline) or approved column, a
nullable `defaulted` column and the protected group columns). With `--profiles FILE` (the
`member_profiles` table) the group columns are built from the profile instead (the data then needs
`member_id` and `applied_at`); `--protected` picks among them (default: all protected groups and the
thin/thick file split). A `birth_year` column given as `--protected` becomes `age_band` when the data
has `applied_at`. When gaps are flagged, the other columns of the file are scanned as proxies.

Outputs go to `<data_dir>/audits/<UTC stamp>/` (JSON, HTML, PNG). Exit code 0 when no judged group
breaks a threshold, 3 when some do, 2 for bad input. Heavy imports happen inside the command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

EXIT_BAD_INPUT = 2
EXIT_FLAGGED = 3

console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]{message}[/red]")
    return typer.Exit(EXIT_BAD_INPUT)


def _read_table(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.exists():
        raise _fail(f"no such file: {path}")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".txt"):
        return pd.read_csv(path)
    if suffix in (".json", ".jsonl"):
        return pd.read_json(path, lines=suffix == ".jsonl")
    raise _fail(f"{path}: expected .parquet, .csv or .json(l)")


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _groups(data: pd.DataFrame, protected: list[str], profiles: Path | None) -> pd.DataFrame:
    import pandas as pd

    from monitoring.fairness import FILE_COLUMN, PROTECTED_GROUP_COLUMNS, age_band, protected_groups

    if profiles is not None:
        missing = [c for c in ("member_id", "applied_at") if c not in data.columns]
        if missing:
            raise _fail(f"--profiles needs {missing} in --data")
        built = protected_groups(_read_table(profiles), data)
        wanted = protected or [c for c in (*PROTECTED_GROUP_COLUMNS, FILE_COLUMN) if c in built.columns]
        unknown = [c for c in wanted if c not in built.columns]
        if unknown:
            raise _fail(f"unknown group columns {unknown}; built: {list(built.columns)}")
        return built[wanted].reset_index(drop=True)
    if not protected:
        raise _fail("give --protected COL (one or more) or --profiles FILE")
    out = pd.DataFrame(index=data.index)
    for column in protected:
        if column not in data.columns:
            raise _fail(
                f"--protected column {column!r} is not in the data ({', '.join(map(str, data.columns))})"
            )
        if column == "birth_year" and "applied_at" in data.columns:
            out["age_band"] = age_band(data[column], data["applied_at"])
        else:
            out[column] = data[column]
    return out.reset_index(drop=True)


def _print_audit(payload: dict[str, Any]) -> None:
    out = Console(width=None if sys.stdout.isatty() else 150)
    verdict = "[bold green]PASS[/bold green]" if payload["passed"] else "[bold red]FLAGGED[/bold red]"
    out.print(
        f"{verdict}: {payload['n']:,} applications, {payload['n_labelled']:,} with outcomes; "
        f"min group size {payload['min_group_size']}"
    )
    table = Table(title="approval and outcomes by group")
    for column in (
        "attribute",
        "group",
        "n",
        "approval",
        "ratio",
        "approve|repaid",
        "approve|default",
        "AUC",
        "cal gap",
        "status",
    ):
        table.add_column(column, justify="left" if column in ("attribute", "group", "status") else "right")

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for attribute in payload["attributes"].values():
        for g in attribute["groups"]:
            v = g["values"]
            table.add_row(
                attribute["attribute"],
                g["group"],
                f"{g['n']:,}",
                pct(v["approval_rate"]),
                num(v["approval_ratio"]),
                pct(v["approval_if_repaid"]),
                pct(v["approval_if_defaulted"]),
                num(v["auc"]),
                pct(v["calibration_gap"]),
                g["status"],
            )
    out.print(table)
    for flag in payload["flags"][:20]:
        out.print(f"  • {flag['message']}")
    for attribute, entry in payload.get("explanations", {}).items():
        top = ", ".join(
            f"{p['feature']}→{p['group']} (AUC {p['auc']:.2f})" for p in entry.get("proxies", [])[:5]
        )
        if top:
            out.print(f"  proxies for {attribute}: {top}")
    out.print(f"report: {payload['outputs']['report']}")


def register(app: typer.Typer) -> None:
    """Add the `audit` sub-app (command `fairness`) to the coopscore CLI."""
    audit_app = typer.Typer(help="Fairness audits.", no_args_is_help=True)
    app.add_typer(audit_app, name="audit")

    @audit_app.command("fairness")
    def fairness(
        data: Annotated[Path, typer.Option("--data", help="decisions table (CSV / Parquet / JSON)")],
        protected: Annotated[
            list[str] | None,
            typer.Option("--protected", help="group column(s); repeat or comma-separate"),
        ] = None,
        profiles: Annotated[
            Path | None, typer.Option("--profiles", help="member_profiles table to build groups from")
        ] = None,
        pd_col: Annotated[str, typer.Option("--pd-col")] = "pd",
        decision_col: Annotated[str, typer.Option("--decision-col")] = "decision",
        approved_col: Annotated[
            str | None, typer.Option("--approved-col", help="boolean approved column (instead of decisions)")
        ] = None,
        label_col: Annotated[str, typer.Option("--label-col")] = "defaulted",
        score_col: Annotated[str | None, typer.Option("--score-col")] = None,
        min_group_size: Annotated[int, typer.Option("--min-group-size", min=1)] = 100,
        n_boot: Annotated[int, typer.Option("--n-boot", min=0)] = 200,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        min_approval_ratio: Annotated[float, typer.Option("--min-approval-ratio")] = 0.8,
        max_eo_difference: Annotated[float, typer.Option("--max-eo-difference")] = 0.05,
        max_calibration_gap: Annotated[float, typer.Option("--max-calibration-gap")] = 0.02,
        require_ci: Annotated[
            bool, typer.Option("--require-ci", help="flag only when the 95% CI is wholly beyond a limit")
        ] = False,
        data_dir: Annotated[
            Path | None, typer.Option("--data-dir", help="where audits/ goes (default: settings)")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the audit as JSON on stdout")] = False,
    ) -> None:
        """Audit decisions by protected group: approval ratio, equal opportunity, calibration."""
        from monitoring.fairness import FairnessThresholds, audit_fairness, explain_gaps
        from monitoring.fairness_report import write_fairness_audit

        try:
            frame = _read_table(data)
        except (OSError, ValueError) as error:
            raise _fail(f"cannot read {data}: {error}") from error
        frame = frame.reset_index(drop=True)
        groups = _groups(frame, _split(protected), profiles)
        needed = [pd_col, label_col, approved_col or decision_col, *([score_col] if score_col else [])]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise _fail(f"columns missing from {data}: {missing}")
        audit = audit_fairness(
            frame,
            pd_col=pd_col,
            decision_col=decision_col,
            approved_col=approved_col,
            label_col=label_col,
            score_col=score_col,
            groups=groups,
            min_group_size=min_group_size,
            n_boot=n_boot,
            seed=seed,
            thresholds=FairnessThresholds(
                min_approval_ratio, max_eo_difference, max_calibration_gap, require_ci=require_ci
            ),
        )
        if audit.flags:
            used = {
                pd_col,
                label_col,
                decision_col,
                approved_col,
                score_col,
                *groups.columns,
                *_split(protected),
            }
            candidates = [
                c
                for c in frame.columns
                if c not in used and c not in ("member_id", "application_id", "applied_at")
            ]
            if candidates:
                explain_gaps(audit, features=frame[candidates], groups=groups)
        if data_dir is None:
            from coopscore.settings import get_settings

            data_dir = get_settings().data_dir
        stored = write_fairness_audit(audit, data_dir, context={"source": f"file {data}"})
        if as_json:
            sys.stdout.write(json.dumps(stored.payload, ensure_ascii=False, default=str) + "\n")
        else:
            _print_audit(stored.payload)
        raise typer.Exit(0 if audit.passed else EXIT_FLAGGED)
