"""Drift scenarios of the simulated world: what each one does, how it is written on the command line
(`drought@14`, `unit_fen@10:coop-02-03`), and how its target is resolved against a world's counties
and cooperatives."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Final, Literal, cast, get_args

from simulator.population import coop_id, county_id

__all__ = [
    "DESCRIPTIONS",
    "SCENARIO_NAMES",
    "Scenario",
    "ScenarioName",
    "parse_scenario",
    "resolve_scenarios",
]

ScenarioName = Literal["drought", "new_coop", "unit_fen"]
SCENARIO_NAMES: Final[tuple[ScenarioName, ...]] = get_args(ScenarioName)
_SCENARIO_TEXT: Final = re.compile(r"^(?P<name>[a-z_]+)(?:@(?P<month>-?\d+))?(?::(?P<target>\S+))?$")
_COOP_ID: Final = re.compile(r"^coop-(\d+)-(\d+)$")
# What each scenario does, as written into the world's truth/scenarios.json.
DESCRIPTIONS: Final[dict[str, str]] = {
    "drought": (
        "persistent drought in one county: from its first month the exposed share of the crop fails,"
        " so deliveries and the deposits paid from them fall; stress and PD rise"
    ),
    "new_coop": "a new cooperative is onboarded: young returnees, different products, JSONL exports",
    "unit_fen": "one cooperative's exports write amount_cny in fen (x100); behaviour is unchanged",
}


@dataclass(frozen=True)
class Scenario:
    """A named drift that starts at `start_month` (0-based month index from the world's start).

    Targets default sensibly when left out: `drought` hits the last county, `new_coop` onboards
    `coop-01-<next>` in the first county, `unit_fen` switches `coop-01-01` to fen.
    """

    name: ScenarioName
    start_month: int
    county_id: str | None = None  # drought: the county hit; new_coop: where it is onboarded
    coop_id: str | None = None  # unit_fen: the cooperative writing fen; new_coop: the new id

    def __post_init__(self) -> None:
        if self.name not in SCENARIO_NAMES:
            raise ValueError(f"unknown scenario {self.name!r}; expected one of {SCENARIO_NAMES}")
        if self.start_month < 0:
            raise ValueError(f"scenario {self.name!r}: start_month must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def parse_scenario(text: str, months: int = 26) -> Scenario:
    """Parse `name`, `name@start_month` or `name@start_month:target` (e.g. `drought@14`,
    `unit_fen@10:coop-02-03`). Without a month the drift starts at `months * 2 // 3`; the target is
    a county id for `drought` and a cooperative id for `new_coop` / `unit_fen`."""
    match = _SCENARIO_TEXT.match(text.strip())
    if match is None:
        raise ValueError(
            f"cannot parse scenario {text!r}; write name[@start_month][:target], e.g. drought@14"
        )
    name = match["name"]
    if name not in SCENARIO_NAMES:
        raise ValueError(f"unknown scenario {name!r}; expected one of {', '.join(SCENARIO_NAMES)}")
    start = int(match["month"]) if match["month"] is not None else months * 2 // 3
    target = match["target"]
    scenario_name = cast(ScenarioName, name)
    if target is None:
        return Scenario(scenario_name, start)
    if name == "drought":
        return Scenario(scenario_name, start, county_id=target)
    return Scenario(scenario_name, start, coop_id=target)


def resolve_scenarios(
    scenarios: tuple[Scenario, ...], counties: int, coops_per_county: int
) -> dict[str, Scenario]:
    """Fill in default targets and check that every target exists in a world of `counties`
    counties with `coops_per_county` cooperatives each."""
    known_counties = {county_id(c) for c in range(counties)}
    known_coops = {coop_id(c, k + 1) for c in range(counties) for k in range(coops_per_county)}
    resolved: dict[str, Scenario] = {}
    # The new cooperative first: unit_fen may target it.
    for scenario in sorted(scenarios, key=lambda s: s.name != "new_coop"):
        if scenario.name == "drought":
            county = scenario.county_id or county_id(counties - 1)
            if county not in known_counties:
                raise ValueError(f"drought: unknown county {county!r}; have {sorted(known_counties)}")
            resolved["drought"] = replace(scenario, county_id=county)
        elif scenario.name == "new_coop":
            new_id = scenario.coop_id or coop_id(0, coops_per_county + 1)
            if new_id in known_coops:
                raise ValueError(f"new_coop: {new_id!r} already exists")
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", new_id):
                raise ValueError(f"new_coop: {new_id!r} is not a safe cooperative id")
            matched = _COOP_ID.match(new_id)
            if scenario.county_id is not None:
                county = scenario.county_id
            elif matched and 1 <= int(matched[1]) <= counties:
                county = county_id(int(matched[1]) - 1)  # coop-<county>-<n> names its county
            else:
                county = county_id(0)
            if county not in known_counties:
                raise ValueError(f"new_coop: unknown county {county!r}")
            resolved["new_coop"] = replace(scenario, coop_id=new_id, county_id=county)
            known_coops.add(new_id)
        else:
            target = scenario.coop_id or coop_id(0, 1)
            if target not in known_coops:
                raise ValueError(f"unit_fen: unknown cooperative {target!r}")
            resolved["unit_fen"] = replace(scenario, coop_id=target)
    return {s.name: resolved[s.name] for s in scenarios}
