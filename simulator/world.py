"""The cooperative-world simulator: the project's reference world, with a known truth.

No public data set of cooperative activity exists, so this module builds one. Members of rural
cooperatives get latent traits (income capacity, repayment discipline, shock exposure, engagement);
their month-by-month activity is generated from those traits; lender applications record their **true
PD**, so the best achievable AUC (the oracle) is known. The output is what a county service center
would receive: each cooperative's monthly bookkeeping export (CSV or JSON Lines, with duplicates,
late records and malformed rows), reference tables, and - kept apart under `truth/` - the traits and
true PDs that nothing but evaluation may read.

Layout of `out_dir` (ingestion relies on it):

    events/<coop_id>/<YYYY-MM>.csv|jsonl    one file per cooperative per recorded month
    applications/applications.csv           contracts.APPLICATION_CONTRACT columns
    outcomes/outcomes.csv                   contracts.OUTCOME_CONTRACT (observed by the world's end)
    members/member_profiles.csv             contracts.MEMBER_PROFILE_CONTRACT (protected)
    cooperatives/cooperatives.csv           contracts.COOPERATIVE_CONTRACT
    truth/members.parquet, truth/applications.parquet, truth/scenarios.json
    truth/member_states.parquet             with `record_states_from`: every member's traits, stress
                                            and savings at the end of each month from then on
    manifest.json                           config, summary, per-file row counts (written last)

`interventions` re-run the same world with members acting on advice (`simulator.interventions`):
every month before the first one is the same as without them, byte for byte.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path
from time import perf_counter
from typing import Any, Final, Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score

from features.contracts import (
    APPLICATION_CONTRACT,
    COOPERATIVE_CONTRACT,
    GENDERS,
    LOAN_PURPOSES,
    MEMBER_PROFILE_CONTRACT,
    OUTCOME_CONTRACT,
    PRODUCE_PRODUCTS,
    SCHEMA_VERSION,
    TIMESTAMP,
    TableContract,
)
from simulator.activity import ActivityParams, WorldActivity
from simulator.feeds import MALFORMED_KINDS, FeedFaults, FeedWriter, iso_strings
from simulator.interventions import Intervention, MemberActions, state_table
from simulator.population import (
    NULL_TIME,
    SECONDS_PER_DAY,
    Calendar,
    FloatArray,
    IntArray,
    Population,
    PopulationSpec,
    build_cooperatives,
    build_population,
    fixed_width_ids,
    new_cooperative,
)
from simulator.scenarios import DESCRIPTIONS, Scenario, resolve_scenarios

__all__ = [
    "PROXY_TRAPS",
    "ProxyTrap",
    "SimulationConfig",
    "SimulationSummary",
    "simulate_world",
]

ProxyTrap = Literal["mild", "household"]
PROXY_TRAPS: Final[tuple[ProxyTrap, ...]] = get_args(ProxyTrap)
# Everything the simulator writes at the top of `out_dir` (and nothing else is ever removed).
_OUTPUTS: Final = (
    "events",
    "applications",
    "outcomes",
    "members",
    "cooperatives",
    "truth",
    "manifest.json",
)


@dataclass(frozen=True)
class SimulationConfig:
    """Size, seed and fault rates of a simulated world. Same config -> byte-identical files."""

    members: int = 20_000
    months: int = 26
    seed: int = 7
    start: date = date(2024, 1, 1)  # must be the first day of a month
    counties: int = 3
    coops_per_county: int = 8
    villages_per_county: int = 12
    scenarios: tuple[Scenario, ...] = ()
    duplicate_rate: float = 0.01
    malformed_rate: float = 0.005
    late_rate: float = 0.05
    jsonl_coop_share: float = 0.3
    application_rate: float = 0.015  # monthly chance an eligible member applies to the lender
    coop_loan_rate: float = 0.018  # monthly chance an eligible member borrows from the coop fund
    new_coop_share: float = 0.05  # share of members in the `new_coop` scenario's cooperative
    # The proxy trap: "mild" files 60% of a left-behind woman's deliveries and 50% of her land inputs
    # under another household's id; "household" books all of them, and her group-savings records,
    # under that household head (cooperatives that keep one book per household).
    proxy_trap: ProxyTrap = "mild"
    # Members acting on advice (recourse evaluation), and the month from which states are recorded.
    interventions: tuple[Intervention, ...] = ()
    record_states_from: int | None = None

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.members >= 100, "members must be >= 100"),
            (1 <= self.months <= 240, "months must be between 1 and 240"),
            (self.start.day == 1, "start must be the first day of a month"),
            (1 <= self.counties <= 99, "counties must be between 1 and 99"),
            (1 <= self.coops_per_county <= 98, "coops_per_county must be between 1 and 98"),
            (3 <= self.villages_per_county <= 99, "villages_per_county must be between 3 and 99"),
            (0.0 <= self.duplicate_rate <= 0.5, "duplicate_rate must be in [0, 0.5]"),
            (0.0 <= self.malformed_rate <= 0.5, "malformed_rate must be in [0, 0.5]"),
            (0.0 <= self.late_rate <= 1.0, "late_rate must be in [0, 1]"),
            (0.0 <= self.jsonl_coop_share <= 1.0, "jsonl_coop_share must be in [0, 1]"),
            (0.0 < self.application_rate <= 0.5, "application_rate must be in (0, 0.5]"),
            (0.0 <= self.coop_loan_rate <= 0.5, "coop_loan_rate must be in [0, 0.5]"),
            (0.0 < self.new_coop_share < 0.5, "new_coop_share must be in (0, 0.5)"),
            (self.proxy_trap in PROXY_TRAPS, f"proxy_trap must be one of {PROXY_TRAPS}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        names = [s.name for s in self.scenarios]
        if len(set(names)) != len(names):
            raise ValueError(f"each scenario may appear once, got {names}")
        late = [i for i in self.interventions if i.start_month >= self.months]
        if late:
            raise ValueError(f"an intervention starts at month {late[0].start_month}, after the world ends")
        if self.record_states_from is not None and not 0 <= self.record_states_from < self.months:
            raise ValueError("record_states_from must be a month of the world")
        for scenario in self.scenarios:
            if scenario.start_month >= self.months:
                raise ValueError(
                    f"scenario {scenario.name!r} starts at month {scenario.start_month}, "
                    f"but the world has only {self.months} months"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (dates as ISO strings)."""
        data = asdict(self)
        data["start"] = self.start.isoformat()
        data["scenarios"] = [s.to_dict() for s in self.scenarios]
        # Left out when unused, so a default world's manifest is what it always was.
        for name in ("interventions", "record_states_from"):
            if not data[name]:
                del data[name]
        return data


@dataclass(frozen=True)
class SimulationSummary:
    """What was simulated and written; `seconds` is the only field not stored in the manifest."""

    members: int
    events_written: int  # rows in event files, duplicates and malformed rows included
    valid_events: int  # distinct well-formed events: events_written - duplicates - malformed
    applications: int
    outcomes: int  # outcomes observed by the world's end (the rest are still pending)
    default_rate: float  # share of all applications that default (truth)
    thin_file_share: float  # applicants with no prior cooperative loan at application time
    recent_join_share: float  # applicants who joined less than 12 months before applying
    oracle_auc: float  # ROC AUC of true PD against the drawn defaults
    duplicates_injected: int
    malformed_injected: int
    late_injected: int
    seconds: float
    files: int
    events_by_type: dict[str, int] = field(default_factory=dict)  # valid events per type
    malformed_by_kind: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def simulate_world(
    config: SimulationConfig,
    out_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    overwrite: bool = False,
) -> SimulationSummary:
    """Simulate the world month by month and write it to `out_dir` (layout: module docstring).

    `progress(done_months, total_months)` is called after each month. An `out_dir` that already
    holds simulator output is refused unless `overwrite`, which removes only the simulator's own
    entries. Memory stays bounded: only per-member state and the not-yet-exported records are held.
    """
    began = perf_counter()
    out_dir = Path(out_dir)
    # Refuse bad targets before touching out_dir.
    scenarios = resolve_scenarios(config.scenarios, config.counties, config.coops_per_county)
    _prepare(out_dir, overwrite)
    calendar = Calendar(config.start, config.months)

    coops = build_cooperatives(
        config.counties,
        config.coops_per_county,
        config.jsonl_coop_share,
        np.random.default_rng([config.seed, 0, 0]),
    )
    new_coop_index = -1
    if "new_coop" in scenarios:
        onboarded = scenarios["new_coop"]
        new_coop_index = len(coops)
        coops.append(
            new_cooperative(
                new_coop_index,
                str(onboarded.coop_id),
                _county_index(str(onboarded.county_id)),
                onboarded.start_month,
            )
        )
    population = build_population(
        PopulationSpec(
            members=config.members,
            months=config.months,
            counties=config.counties,
            villages_per_county=config.villages_per_county,
            new_coop_share=config.new_coop_share,
        ),
        coops,
        calendar,
        np.random.default_rng([config.seed, 0, 1]),
    )
    weather = _weather(config, calendar, scenarios, np.random.default_rng([config.seed, 0, 2]))
    drought = scenarios.get("drought")
    acting, actions = population, None
    if config.interventions:
        # Advice changes traits as it takes effect: act on copies, keep the drawn ones for truth/.
        acting = replace(
            population,
            income=population.income.copy(),
            income_z=population.income_z.copy(),
            discipline_z=population.discipline_z.copy(),
            exposure=population.exposure.copy(),
        )
        actions = MemberActions(config.interventions, acting, calendar, config.seed)
    activity = WorldActivity(
        acting,
        calendar,
        weather,
        ActivityParams(
            seed=config.seed,
            months=config.months,
            application_rate=config.application_rate,
            coop_loan_rate=config.coop_loan_rate,
            new_coop_index=new_coop_index,
            drought_county=_county_index(str(drought.county_id)) if drought else -1,
            drought_start=drought.start_month if drought else 0,
            **(
                {"proxy_delivery_share": 1.0, "proxy_land_share": 1.0, "proxy_savings_share": 1.0}
                if config.proxy_trap == "household"
                else {}
            ),
        ),
        actions=actions,
        record_states_from=config.record_states_from,
    )
    fen = scenarios.get("unit_fen")
    coop_index = {c.coop_id: c.index for c in coops}
    writer = FeedWriter(
        out_dir,
        population,
        calendar,
        FeedFaults(config.duplicate_rate, config.malformed_rate, config.late_rate),
        config.seed,
        fen_coop=coop_index[str(fen.coop_id)] if fen else -1,
        fen_start_month=fen.start_month if fen else 0,
    )

    proxied_records = 0
    for month in range(config.months):
        events = activity.simulate_month(month)
        proxied_records += int(events["proxied"].sum())
        writer.record(events, month)
        writer.export(month)
        if progress is not None:
            progress(month + 1, config.months)

    applications = _finish_applications(activity, population, calendar)
    _write_reference_tables(out_dir, population, calendar, applications)
    _write_truth(out_dir, population, calendar, activity, applications)
    if activity.states:
        pq.write_table(
            state_table(activity.states, population.member_ids),
            out_dir / "truth" / "member_states.parquet",
            compression="zstd",
        )
    stats = writer.stats
    _write_json(
        out_dir / "truth" / "scenarios.json",
        {
            "scenarios": [
                {
                    **s.to_dict(),
                    "start_date": calendar.label(s.start_month) + "-01",
                    "description": DESCRIPTIONS[s.name],
                }
                for s in scenarios.values()
            ],
            "weather_shocks": {
                county: [round(float(x), 3) for x in weather[i]]
                for i, county in enumerate(population.county_ids)
            },
            "proxy_trap": {
                "left_behind_women": int(population.left_behind_woman.sum()),
                "with_proxy_household": int((population.proxy >= 0).sum()),
                "records_filed_under_proxy": proxied_records,
            },
            "unit_fen_rows": stats.fen_rows,
        },
    )

    defaulted = applications["defaulted"]
    true_pd = applications["true_pd"]
    both_classes = 0 < int(defaulted.sum()) < len(defaulted)
    event_files = len(stats.files)
    summary = SimulationSummary(
        members=population.size,
        events_written=stats.rows,
        valid_events=stats.rows - stats.duplicates - stats.malformed,
        applications=len(defaulted),
        outcomes=int(applications["outcome_emitted"].sum()),
        default_rate=_share(defaulted),
        thin_file_share=_share(~applications["prior_loan"]),
        recent_join_share=_share(applications["recent_join"]),
        oracle_auc=(round(float(roc_auc_score(defaulted, true_pd)), 6) if both_classes else float("nan")),
        duplicates_injected=stats.duplicates,
        malformed_injected=stats.malformed,
        late_injected=stats.late,
        seconds=0.0,
        # + reference tables, truth files (and the states), manifest
        files=event_files + 4 + 3 + (1 if activity.states else 0) + 1,
        events_by_type=dict(sorted(stats.valid_by_type.items())),
        malformed_by_kind={k: stats.malformed_by_kind.get(k, 0) for k in MALFORMED_KINDS},
    )
    stored = summary.to_dict()
    del stored["seconds"]  # wall-clock time would break byte-identical manifests
    _write_json(
        out_dir / "manifest.json",
        {
            "schema_version": SCHEMA_VERSION,
            "generator": "simulator.world",
            "config": config.to_dict(),
            "summary": stored,
            "world": {
                "start": calendar.label(0) + "-01T00:00:00Z",
                "end": calendar.label(config.months) + "-01T00:00:00Z",
                "counties": population.county_ids,
                "cooperatives": [c.coop_id for c in coops],
                "jsonl_cooperatives": [c.coop_id for c in coops if c.jsonl],
                "scenarios": [s.to_dict() for s in scenarios.values()],
            },
            "event_files": dict(sorted(stats.files.items())),
        },
    )
    return replace(summary, seconds=round(perf_counter() - began, 3))


# --- set-up ---------------------------------------------------------------------------------------


def _prepare(out_dir: Path, overwrite: bool) -> None:
    existing = [out_dir / name for name in _OUTPUTS if (out_dir / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a simulated world ({existing[0].name}); "
            "pass overwrite=True to replace it"
        )
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _county_index(county: str) -> int:
    return int(county.rsplit("-", 1)[1]) - 1


def _weather(
    config: SimulationConfig,
    calendar: Calendar,
    scenarios: dict[str, Scenario],
    rng: np.random.Generator,
) -> FloatArray:
    """Shock severity per (county, month): random bad months, likelier in summer; a drought
    scenario makes every month from its start a severe one in its county."""
    seasons = np.array([calendar.calendar_month(m) for m in range(config.months)])
    p_bad = np.where((seasons >= 5) & (seasons <= 8), 0.12, 0.05)
    bad = rng.random((config.counties, config.months)) < p_bad
    severity = rng.uniform(0.3, 0.8, size=(config.counties, config.months))
    weather = np.where(bad, severity, 0.0)
    drought = scenarios.get("drought")
    if drought is not None:
        county = _county_index(str(drought.county_id))
        start = drought.start_month
        severe = 0.85 + 0.1 * rng.random(config.months - start)
        weather[county, start:] = np.maximum(weather[county, start:], severe)
    return weather


# --- applications, reference tables and truth ---------------------------------------------------


def _finish_applications(
    activity: WorldActivity, population: Population, calendar: Calendar
) -> dict[str, Any]:
    """Applications in time order with ids, and which outcomes are observed by the world's end."""
    columns = activity.applications.arrays()
    member = columns["member"].astype(np.int64)
    applied_at = columns["applied_at"].astype(np.int64)
    order = np.lexsort((member, applied_at))
    apps = {name: values[order] for name, values in columns.items()}
    count = len(order)
    apps["member"] = apps["member"].astype(np.int64)
    apps["application_id"] = fixed_width_ids("A", np.arange(1, count + 1, dtype=np.int64), 8)
    apps["outcome_emitted"] = apps["observed_at"] <= calendar.end
    apps["defaulted"] = apps["defaulted"].astype(bool)
    apps["prior_loan"] = apps["prior_loan"].astype(bool)
    apps["recent_join"] = apps["recent_join"].astype(bool)
    apps["coop"] = population.coop[apps["member"]]
    return apps


def _share(flags: np.ndarray) -> float:
    return round(float(np.mean(flags)), 6) if len(flags) else float("nan")


def _timestamps(seconds: IntArray, valid: np.ndarray | None = None) -> pa.Array:
    """Epoch seconds as the contracts' UTC microsecond timestamp type (for Parquet)."""
    values = pa.array(seconds.astype("datetime64[s]"), mask=None if valid is None else ~valid)
    return values.cast(TIMESTAMP)


def _write_csv(path: Path, contract: TableContract, columns: dict[str, pa.Array]) -> None:
    """A reference table with exactly the contract's columns, in order; no quoting is needed as
    every value is an id, enum, number, boolean, ISO timestamp or comma-free name."""
    if set(columns) != set(contract.names):
        raise RuntimeError(f"{contract.name}: columns {sorted(columns)} != contract")
    table = pa.table([columns[name] for name in contract.names], names=contract.names)
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    path.write_bytes((",".join(contract.names) + "\n").encode() + sink.getvalue().to_pybytes())


def _write_reference_tables(
    out_dir: Path, population: Population, calendar: Calendar, apps: dict[str, Any]
) -> None:
    coop_ids = pa.array([c.coop_id for c in population.coops], pa.string())
    county_ids = pa.array(population.county_ids, pa.string())
    _write_csv(
        out_dir / "applications" / "applications.csv",
        APPLICATION_CONTRACT,
        {
            "application_id": apps["application_id"],
            "member_id": pc.take(population.member_ids, pa.array(apps["member"])),
            "coop_id": pc.take(coop_ids, pa.array(apps["coop"])),
            "applied_at": iso_strings(apps["applied_at"]),
            "amount_cny": pa.array(apps["amount"], pa.float64()),
            "term_months": pa.array(apps["term"], pa.int32()),
            "purpose": pc.take(pa.array(LOAN_PURPOSES), pa.array(apps["purpose"])),
        },
    )
    seen = np.flatnonzero(apps["outcome_emitted"])
    seen = seen[np.lexsort((seen, apps["observed_at"][seen]))]
    _write_csv(
        out_dir / "outcomes" / "outcomes.csv",
        OUTCOME_CONTRACT,
        {
            "application_id": pc.take(apps["application_id"], pa.array(seen)),
            "defaulted": pa.array(apps["defaulted"][seen]),
            "observed_at": iso_strings(apps["observed_at"][seen]),
        },
    )
    _write_csv(
        out_dir / "members" / "member_profiles.csv",
        MEMBER_PROFILE_CONTRACT,
        {
            "member_id": population.member_ids,
            "gender": pc.take(pa.array(GENDERS), pa.array(population.gender)),
            "birth_year": pa.array(population.birth_year, pa.int32()),
            "returning_youth": pa.array(population.returning_youth),
            "left_behind_woman": pa.array(population.left_behind_woman),
            "county_id": pc.take(county_ids, pa.array(population.county)),
        },
    )
    founded = (
        calendar.month_start(np.array([c.founded_month for c in population.coops], dtype=np.int64))
        + np.array([(c.index * 5) % 27 for c in population.coops], dtype=np.int64) * SECONDS_PER_DAY
    )
    _write_csv(
        out_dir / "cooperatives" / "cooperatives.csv",
        COOPERATIVE_CONTRACT,
        {
            "coop_id": coop_ids,
            "name": pa.array([c.name for c in population.coops], pa.string()),
            "county_id": pc.take(county_ids, pa.array([c.county for c in population.coops])),
            "founded_at": iso_strings(founded),
        },
    )


def _write_truth(
    out_dir: Path,
    population: Population,
    calendar: Calendar,
    activity: WorldActivity,
    apps: dict[str, Any],
) -> None:
    """Latent traits and true PDs: for evaluation and tests only, never for features."""
    truth = out_dir / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    pop = population
    coop_ids = pa.array([c.coop_id for c in pop.coops], pa.string())
    has_proxy = pop.proxy >= 0
    left = pop.leave_time != NULL_TIME
    borrowed = activity.first_loan_time != np.iinfo(np.int64).max
    members = pa.table(
        {
            "member_id": pop.member_ids,
            "coop_id": pc.take(coop_ids, pa.array(pop.coop)),
            "county_id": pc.take(pa.array(pop.county_ids), pa.array(pop.county)),
            "village_id": pc.take(pa.array(pop.village_ids), pa.array(pop.village)),
            "gender": pc.take(pa.array(GENDERS), pa.array(pop.gender)),
            "birth_year": pa.array(pop.birth_year, pa.int32()),
            "returning_youth": pa.array(pop.returning_youth),
            "left_behind_woman": pa.array(pop.left_behind_woman),
            "micro_enterprise": pa.array(pop.micro_enterprise),
            "primary_product": pc.take(pa.array(PRODUCE_PRODUCTS), pa.array(pop.primary_product)),
            "joined_at": _timestamps(pop.join_time),
            "left_at": _timestamps(np.where(left, pop.leave_time, 0), left),
            "income_capacity_cny": pa.array(np.round(pop.income, 2)),
            "income_z": pa.array(pop.income_z),
            # Probability-like view of the discipline trait; the z-score drives the generator.
            "repayment_discipline": pa.array(1.0 / (1.0 + np.exp(-(1.5 + pop.discipline_z)))),
            "discipline_z": pa.array(pop.discipline_z),
            "shock_exposure": pa.array(pop.exposure),
            "engagement_z": pa.array(pop.engagement_z),
            "proxy_member_id": pc.if_else(
                pa.array(has_proxy),
                pc.take(pop.member_ids, pa.array(np.maximum(pop.proxy, 0))),
                pa.scalar(None, pa.string()),
            ),
            "first_coop_loan_at": _timestamps(np.where(borrowed, activity.first_loan_time, 0), borrowed),
        }
    )
    pq.write_table(members, truth / "members.parquet", compression="zstd")
    member = apps["member"]
    applications = pa.table(
        {
            "application_id": apps["application_id"],
            "member_id": pc.take(pop.member_ids, pa.array(member)),
            "coop_id": pc.take(coop_ids, pa.array(apps["coop"])),
            "applied_at": _timestamps(apps["applied_at"]),
            "amount_cny": pa.array(apps["amount"], pa.float64()),
            "term_months": pa.array(apps["term"], pa.int32()),
            "true_pd": pa.array(apps["true_pd"], pa.float64()),
            "defaulted": pa.array(apps["defaulted"]),
            "observed_at": _timestamps(apps["observed_at"]),
            "outcome_emitted": pa.array(apps["outcome_emitted"]),
            "prior_coop_loan": pa.array(apps["prior_loan"]),
            "joined_within_12_months": pa.array(apps["recent_join"]),
            "stress_at_application": pa.array(apps["stress"], pa.float64()),
            "amount_to_annual_income": pa.array(apps["size_to_income"], pa.float64()),
            "left_behind_woman": pa.array(pop.left_behind_woman[member]),
            "returning_youth": pa.array(pop.returning_youth[member]),
        }
    )
    pq.write_table(applications, truth / "applications.parquet", compression="zstd")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
