"""`coopscore audit ...`: fairness audits from the command line (registered by `coopscore.cli`).

`coopscore audit fairness --model champion|VERSION --data oot|decision-log|FILE`:
- `--data oot`: the labelled applications of the event log, out-of-time slice (the default
  TrainingConfig splits), scored by the model; groups from the member-profile table.
- `--data decision-log`: the served decisions as logged (PD and decision of the model that made
  them; `--model VERSION` keeps that version's rows) with outcomes posted to /v1/outcomes; groups
  from the member-profile table. The model explains gaps by its reason-group points.
- `--data FILE --model ...`: a table of feature rows with a `defaulted` column, scored by the model.

Without `--model`, `--data FILE --protected COL ...` audits a table of decisions (CSV or Parquet:
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

    from coopscore.settings import Settings
    from models.credit_model import CreditModel

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


def _profile_groups(data: pd.DataFrame, profiles: pd.DataFrame, protected: list[str]) -> pd.DataFrame:
    """Group columns per row of `data` (`member_id`, `applied_at`) from the member profiles."""
    from monitoring.fairness import FILE_COLUMN, PROTECTED_GROUP_COLUMNS, protected_groups

    missing = [c for c in ("member_id", "applied_at") if c not in data.columns]
    if missing:
        raise _fail(f"group columns from profiles need {missing} in the data")
    built = protected_groups(profiles, data)
    wanted = protected or [c for c in (*PROTECTED_GROUP_COLUMNS, FILE_COLUMN) if c in built.columns]
    unknown = [c for c in wanted if c not in built.columns]
    if unknown:
        raise _fail(f"unknown group columns {unknown}; built: {list(built.columns)}")
    return built[wanted].reset_index(drop=True)


def _groups(data: pd.DataFrame, protected: list[str], profiles: Path | None) -> pd.DataFrame:
    import pandas as pd

    from monitoring.fairness import age_band

    if profiles is not None:
        return _profile_groups(data, _read_table(profiles), protected)
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


@dataclass
class _Inputs:
    """What one audit runs on: decisions (pd, decision, defaulted, score), groups and features."""

    frame: pd.DataFrame
    groups: pd.DataFrame
    features: pd.DataFrame | None  # columns scanned for proxies (model inputs when a model is given)
    source: str
    pd_col: str = "pd"
    decision_col: str = "decision"
    approved_col: str | None = None
    label_col: str = "defaulted"
    score_col: str | None = "score"


def _scored(model: CreditModel, features: pd.DataFrame) -> pd.DataFrame:
    """PD, policy decision and score of `model` for each row."""
    import pandas as pd

    pds = model.predict_pd(features)
    return pd.DataFrame(
        {
            "pd": pds,
            "decision": [d.outcome for d in model.decisions(features, pds=pds)],
            "score": model.scale.score_from_pd(pds),
        }
    )


def _stored_profiles(settings: Settings) -> pd.DataFrame:
    from features.event_log import EventLog

    log = EventLog(settings.events_dir, settings.tables_dir)
    if not log.table_files("member_profiles"):
        raise _fail(f"no member_profiles table under {settings.tables_dir}: ingest the profiles first")
    profiles: pd.DataFrame = log.read_table("member_profiles").to_pandas()
    return profiles


def _oot_inputs(model: CreditModel, settings: Settings, protected: list[str]) -> _Inputs:
    """The event log's labelled out-of-time applications, scored by `model`."""
    from features.offline import read_applications
    from training.config import TrainingConfig
    from training.datasets import THIN_FILE_FEATURE
    from training.job import EventLogSource
    from training.splits import time_split

    training_set = EventLogSource(settings.events_dir, settings.tables_dir, settings.ledger_path).load()
    split = time_split(training_set.applied_at, training_set.horizon, TrainingConfig().splits)
    oot = split.masks["oot"]
    features = training_set.features.loc[oot].reset_index(drop=True)
    frame = _scored(model, features)
    frame["defaulted"] = training_set.label[oot]
    applications = read_applications(settings.tables_dir).drop_duplicates("application_id", keep="last")
    rows = applications.set_index("application_id").reindex(training_set.ids[oot]).reset_index()
    if THIN_FILE_FEATURE in features:
        rows["has_prior_loan"] = features[THIN_FILE_FEATURE].to_numpy()
    groups = _profile_groups(rows, _stored_profiles(settings), protected)
    first, last = training_set.applied_at[oot].min(), training_set.applied_at[oot].max()
    return _Inputs(frame, groups, features, f"oot: {int(oot.sum()):,} applications {first} to {last}")


def _decision_log_inputs(
    model_arg: str | None, model: CreditModel | None, settings: Settings, protected: list[str]
) -> _Inputs:
    """Served decisions as logged, with outcomes posted to /v1/outcomes."""
    from decisions.factory import decision_log_reader
    from monitoring.sources import current_from_decision_log

    if not settings.decision_log_path.exists():
        raise _fail(f"no decision log at {settings.decision_log_path}")
    log = decision_log_reader(settings)
    try:
        frame = current_from_decision_log(log.feature_rows)
        outcomes = log.outcome_rows()
        versions = log.versions_by_application()
    finally:
        log.close()
    if frame.empty:
        raise _fail("the decision log holds no decisions")
    if model_arg is not None and model_arg.isdigit():
        made_by = frame["application_id"].astype(str).map(versions)
        frame = frame[(made_by == model_arg).to_numpy()].reset_index(drop=True)
        if frame.empty:
            raise _fail(f"no logged decision was made by version {model_arg}")
    frame["defaulted"] = frame["application_id"].astype(str).map(outcomes).astype("Float64")
    frame["applied_at"] = frame["created_at"]
    groups = _profile_groups(frame, _stored_profiles(settings), protected)
    features = frame[model.feature_names] if model is not None else None
    source = (
        f"decision log: {len(frame):,} decisions, {int(frame['defaulted'].notna().sum()):,} with outcomes"
    )
    return _Inputs(frame.astype({"defaulted": "float64"}), groups, features, source)


def _file_inputs(
    path: Path,
    model: CreditModel | None,
    protected: list[str],
    profiles: Path | None,
    columns: dict[str, str | None],
) -> _Inputs:
    """A table of decisions (no model) or of feature rows with outcomes (scored by `model`)."""
    try:
        frame = _read_table(path).reset_index(drop=True)
    except (OSError, ValueError) as error:
        raise _fail(f"cannot read {path}: {error}") from error
    groups = _groups(frame, protected, profiles)
    label_col = str(columns["label_col"])
    if model is not None:
        missing = [c for c in (*model.feature_names, label_col) if c not in frame.columns]
        if missing:
            raise _fail(f"columns missing from {path}: {missing[:10]}")
        features = frame[model.feature_names]
        scored = _scored(model, features)
        scored["defaulted"] = frame[label_col].to_numpy()
        return _Inputs(scored, groups, features, f"file {path}, scored by the model")
    decision = columns["approved_col"] or columns["decision_col"]
    needed = [str(c) for c in (columns["pd_col"], label_col, decision, columns["score_col"]) if c]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise _fail(f"columns missing from {path}: {missing}")
    used = {*columns.values(), *groups.columns, *protected}
    candidates = [
        c for c in frame.columns if c not in used and c not in ("member_id", "application_id", "applied_at")
    ]
    return _Inputs(
        frame,
        groups,
        frame[candidates] if candidates else None,
        f"file {path}",
        pd_col=str(columns["pd_col"]),
        decision_col=str(columns["decision_col"]),
        approved_col=columns["approved_col"],
        label_col=label_col,
        score_col=columns["score_col"],
    )


def register(app: typer.Typer) -> None:
    """Add the `audit` sub-app (command `fairness`) to the coopscore CLI."""
    audit_app = typer.Typer(help="Fairness audits.", no_args_is_help=True)
    app.add_typer(audit_app, name="audit")

    @audit_app.command("fairness")
    def fairness(
        data: Annotated[
            str,
            typer.Option("--data", help="oot | decision-log | a table FILE (CSV / Parquet / JSON)"),
        ],
        model: Annotated[
            str | None,
            typer.Option("--model", help="registered model: champion, challenger or a VERSION number"),
        ] = None,
        protected: Annotated[
            list[str] | None,
            typer.Option("--protected", help="group column(s); repeat or comma-separate"),
        ] = None,
        profiles: Annotated[
            Path | None, typer.Option("--profiles", help="FILE: member_profiles table to build groups from")
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
        from coopscore.settings import get_settings
        from monitoring.fairness import FairnessThresholds, audit_fairness, explain_gaps
        from monitoring.fairness_report import write_fairness_audit

        settings = get_settings()
        wanted = _split(protected)
        credit_model = None
        context: dict[str, Any] = {}
        if model is not None:
            from models.registry import ArtifactIntegrityError, load_model

            try:
                credit_model = load_model(model, settings.tracking_uri, model_name=settings.model_name)
            except (KeyError, ArtifactIntegrityError) as error:
                raise _fail(f"cannot load model {model!r}: {error}") from error
            identity = credit_model.identity
            context = {"model_name": settings.model_name, "model_version": identity and identity.version}
        if data == "oot":
            if credit_model is None:
                raise _fail("--data oot needs --model (champion, challenger or a version)")
            inputs = _oot_inputs(credit_model, settings, wanted)
        elif data == "decision-log":
            inputs = _decision_log_inputs(model, credit_model, settings, wanted)
        else:
            columns = {
                "pd_col": pd_col,
                "decision_col": decision_col,
                "approved_col": approved_col,
                "label_col": label_col,
                "score_col": score_col,
            }
            inputs = _file_inputs(Path(data), credit_model, wanted, profiles, columns)
        audit = audit_fairness(
            inputs.frame,
            pd_col=inputs.pd_col,
            decision_col=inputs.decision_col,
            approved_col=inputs.approved_col,
            label_col=inputs.label_col,
            score_col=inputs.score_col,
            groups=inputs.groups,
            min_group_size=min_group_size,
            n_boot=n_boot,
            seed=seed,
            thresholds=FairnessThresholds(
                min_approval_ratio, max_eo_difference, max_calibration_gap, require_ci=require_ci
            ),
        )
        if audit.flags and inputs.features is not None:
            explain_gaps(audit, features=inputs.features, groups=inputs.groups, model=credit_model)
        stored = write_fairness_audit(
            audit, data_dir or settings.data_dir, context={"source": inputs.source, **context}
        )
        if as_json:
            sys.stdout.write(json.dumps(stored.payload, ensure_ascii=False, default=str) + "\n")
        else:
            _print_audit(stored.payload)
        raise typer.Exit(0 if audit.passed else EXIT_FLAGGED)
