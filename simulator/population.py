"""The simulated world's people and places: counties, cooperatives, villages and members.

Every member gets latent traits (income capacity, repayment discipline, shock exposure, engagement)
that drive all their activity; the traits never leave `truth/`. Group membership (returning youth,
left-behind women) changes what gets *recorded*, not how people repay: discipline is drawn from one
distribution for everyone, so any score gap between groups that a model learns is a data artefact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from features.contracts import PRODUCE_PRODUCTS

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ScalarT = TypeVar("ScalarT", bound=np.generic)

SECONDS_PER_DAY: Final = 86_400
NULL_TIME: Final = np.iinfo(np.int64).min

# Product table, indexed like contracts.PRODUCE_PRODUCTS:
# 玉米 maize, 水稻 rice, 小麦 wheat, 茶叶 tea, 猕猴桃 kiwifruit, 柑橘 citrus, 生猪 hogs, 蔬菜 vegetables,
# 中药材 medicinal herbs.
HOGS: Final = PRODUCE_PRODUCTS.index("生猪")
PRICE_PER_KG: Final = np.array([2.5, 2.9, 2.7, 80.0, 7.0, 3.5, 15.0, 2.8, 25.0])
# Deliveries a typical member makes per year: grain is sold in a few lumps, vegetables often.
ANNUAL_DELIVERIES: Final = np.array([3.0, 3.5, 2.5, 9.0, 5.0, 6.0, 8.0, 12.0, 4.0])
# Harvest calendar (Jan..Dec) per product; rows are normalised to sum to one below.
_HARVEST_RAW: Final = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0, 0.3, 1, 1, 0.3, 0],  # maize: September-October
        [0, 0, 0, 0, 0, 0, 0.3, 0.8, 1, 0.8, 0.1, 0],  # rice: early rice July, late rice October
        [0, 0, 0, 0, 0.8, 1, 0.2, 0, 0, 0, 0, 0],  # wheat: May-June
        [0, 0, 0.6, 1, 1, 0.5, 0.3, 0.3, 0.3, 0.2, 0, 0],  # tea: spring picking
        [0, 0, 0, 0, 0, 0, 0, 0, 0.8, 1, 0.6, 0.1],  # kiwifruit: autumn
        [1, 0.4, 0, 0, 0, 0, 0, 0, 0, 0.5, 1, 1],  # citrus: winter
        [1, 0.7, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.7, 0.9],  # hogs: Spring Festival peak
        [0.4, 0.4, 0.6, 0.8, 1, 1, 1, 1, 1, 0.9, 0.7, 0.5],  # vegetables: all year
        [0, 0, 0, 0, 0, 0, 0, 0.2, 0.6, 1, 0.8, 0.2],  # herbs: autumn digging
    ]
)
HARVEST_SEASON: Final = _HARVEST_RAW / _HARVEST_RAW.sum(axis=1, keepdims=True)
# Crops depend on the weather; hogs much less so.
EXPOSURE_SHIFT: Final = np.array([0.35, 0.35, 0.35, 0.1, 0.15, 0.15, -0.6, 0.0, 0.1])

# Each county has an agricultural profile; cooperatives specialise within it.
_COUNTY_PROFILES: Final = (
    ((0, 1, 6, 7), (0.3, 0.3, 0.2, 0.2)),  # plains: grain, hogs, vegetables
    ((3, 4, 8, 6), (0.35, 0.3, 0.2, 0.15)),  # hills: tea, kiwifruit, herbs
    ((2, 0, 5, 7), (0.35, 0.25, 0.2, 0.2)),  # north-facing: wheat, maize, citrus
)
# The onboarded cooperative sells high-value products online: a different product mix.
NEW_COOP_PRODUCTS: Final = ((4, 8, 7, 3), (0.3, 0.3, 0.2, 0.2))

_COUNTY_NAMES: Final = (
    "青川县",
    "苍溪县",
    "安化县",
    "眉县",
    "平武县",
    "石泉县",
    "宁陕县",
    "汉阴县",
    "城口县",
    "巫溪县",
)
_COOP_PREFIXES: Final = (
    "兴农",
    "丰源",
    "绿野",
    "金穗",
    "惠民",
    "富民",
    "同心",
    "众诚",
    "和顺",
    "春晖",
    "山里",
    "田园",
    "润禾",
    "嘉禾",
    "青山",
    "碧水",
)

# Correlation of the latent traits (income, discipline, exposure, engagement): disciplined members
# also tend to show up, which is what makes thin-file members scoreable from non-loan activity.
_TRAIT_CORRELATION: Final = np.array(
    [
        [1.0, 0.15, -0.1, 0.2],
        [0.15, 1.0, 0.0, 0.45],
        [-0.1, 0.0, 1.0, 0.0],
        [0.2, 0.45, 0.0, 1.0],
    ]
)
MEDIAN_MONTHLY_INCOME: Final = 3200.0
INCOME_LOG_SD: Final = 0.55

ROLE_MEMBER, ROLE_LEADER, ROLE_BOARD = 0, 1, 2
FEMALE, MALE = 0, 1  # indices into contracts.GENDERS


class Calendar:
    """Month arithmetic for the world: month 0 starts at `start`, the world ends at month `months`."""

    def __init__(self, start: date, months: int) -> None:
        self.base = np.datetime64(f"{start.year:04d}-{start.month:02d}", "M")
        self.months = months
        self.end = int(self.month_start(months))

    def month_start(self, month: int | IntArray) -> IntArray:
        """Epoch seconds at the first instant of month index `month` (may be negative)."""
        starts = (self.base + np.asarray(month, dtype=np.int64)).astype("datetime64[s]")
        return starts.astype(np.int64)

    def month_of(self, seconds: IntArray) -> IntArray:
        """Month index that contains each epoch-seconds timestamp."""
        months = seconds.astype("datetime64[s]").astype("datetime64[M]")
        return (months - self.base).astype(np.int64)

    def calendar_month(self, month: int) -> int:
        """0 = January ... 11 = December for month index `month`."""
        return int((self.base.astype(np.int64) + month) % 12)

    def label(self, month: int) -> str:
        """`YYYY-MM` of month index `month` (the export file name)."""
        return str(self.base + np.timedelta64(month, "M"))


@dataclass(frozen=True)
class Cooperative:
    """One cooperative: where it is, what it grows, how it exports its books."""

    index: int
    coop_id: str
    name: str
    county: int
    founded_month: int
    products: tuple[int, ...]
    product_weights: tuple[float, ...]
    jsonl: bool
    meeting_day: int
    meeting_hour: int
    is_new: bool = False


@dataclass
class Population:
    """Members as parallel arrays (index = member number), plus the places they live in."""

    county_ids: list[str]
    village_ids: list[str]
    coops: list[Cooperative]
    member_ids: pa.Array
    coop: IntArray
    county: IntArray
    village: IntArray
    gender: IntArray
    birth_year: IntArray
    returning_youth: BoolArray
    left_behind_woman: BoolArray
    micro_enterprise: BoolArray
    primary_product: IntArray
    role: IntArray
    join_month: IntArray
    join_time: IntArray
    leave_month: IntArray  # `months` (or more) means never leaves inside the world
    leave_time: IntArray
    income: FloatArray  # monthly income capacity, CNY
    income_z: FloatArray
    discipline_z: FloatArray
    exposure: FloatArray  # 0..1 share of livelihood hit by a weather shock
    engagement_z: FloatArray
    proxy: IntArray  # member whose id carries part of a left-behind woman's records; -1 if none
    initial_savings: FloatArray

    @property
    def size(self) -> int:
        """Number of members."""
        return len(self.coop)


def county_id(index: int) -> str:
    """Stable county identifier."""
    return f"county-{index + 1:02d}"


def coop_id(county: int, number: int) -> str:
    """Stable cooperative identifier: county and the cooperative's number inside it (1-based)."""
    return f"coop-{county + 1:02d}-{number:02d}"


@cache
def _digit_table(width: int) -> npt.NDArray[np.uint8]:
    """Zero-padded decimal digits of 0 .. 10**width - 1 as a (10**width, width) byte table."""
    numbers = np.arange(10**width)
    table = np.empty((10**width, width), dtype=np.uint8)
    for k in range(width):
        table[:, width - 1 - k] = 48 + (numbers // 10**k) % 10
    return table


def fixed_width_ids(prefix: str, numbers: IntArray, width: int) -> pa.Array:
    """`prefix` + zero-padded numbers as an Arrow string array, built from bytes (no Python loop):
    digits are gathered from a lookup table in groups of up to four."""
    count = len(numbers)
    row = len(prefix) + width
    matrix = np.empty((count, row), dtype=np.uint8)
    matrix[:, : len(prefix)] = np.frombuffer(prefix.encode(), dtype=np.uint8)
    values = numbers.astype(np.int64) % 10**width
    end = row
    while end > len(prefix):
        group = min(4, end - len(prefix))
        matrix[:, end - group : end] = _digit_table(group)[values % 10**group]
        values //= 10**group
        end -= group
    offsets = np.arange(0, row * (count + 1), row, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(matrix))


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


def build_cooperatives(
    counties: int,
    coops_per_county: int,
    jsonl_share: float,
    rng: np.random.Generator,
) -> list[Cooperative]:
    """The world's established cooperatives (a new one may be added by the `new_coop` scenario)."""
    total = counties * coops_per_county
    jsonl_count = round(jsonl_share * total)
    jsonl_flags = np.zeros(total, dtype=bool)
    jsonl_flags[rng.permutation(total)[:jsonl_count]] = True
    coops: list[Cooperative] = []
    for county in range(counties):
        products, weights = _COUNTY_PROFILES[county % len(_COUNTY_PROFILES)]
        county_name = _COUNTY_NAMES[county % len(_COUNTY_NAMES)]
        prefixes = rng.permutation(len(_COOP_PREFIXES))
        for k in range(coops_per_county):
            index = len(coops)
            picked = rng.choice(len(products), size=2, replace=False, p=np.array(weights))
            chosen = tuple(products[int(i)] for i in picked)
            prefix = _COOP_PREFIXES[int(prefixes[k % len(prefixes)])]
            repeat = "" if k < len(prefixes) else str(k // len(prefixes) + 1)
            name = f"{county_name[:-1]}{prefix}{PRODUCE_PRODUCTS[chosen[0]]}专业合作社{repeat}"
            coops.append(
                Cooperative(
                    index=index,
                    coop_id=coop_id(county, k + 1),
                    name=name,
                    county=county,
                    founded_month=int(rng.integers(-180, -24)),
                    products=chosen,
                    product_weights=(0.65, 0.35),
                    jsonl=bool(jsonl_flags[index]),
                    meeting_day=int(rng.integers(5, 26)),
                    meeting_hour=int(rng.integers(0, 8)),
                )
            )
    return coops


def new_cooperative(index: int, coop_code: str, county: int, start_month: int) -> Cooperative:
    """The cooperative onboarded by the `new_coop` scenario: young, online, different products."""
    products, weights = NEW_COOP_PRODUCTS
    return Cooperative(
        index=index,
        coop_id=coop_code,
        name=f"{_COUNTY_NAMES[county % len(_COUNTY_NAMES)][:-1]}青年电商果蔬专业合作社",
        county=county,
        founded_month=start_month,
        products=products,
        product_weights=weights,
        jsonl=True,  # onboarded with the service center's app, which exports JSON Lines
        meeting_day=15,
        meeting_hour=2,
        is_new=True,
    )


@dataclass(frozen=True)
class PopulationSpec:
    """The knobs of the population that the simulator's config exposes."""

    members: int
    months: int
    counties: int
    villages_per_county: int
    new_coop_share: float


def build_population(
    spec: PopulationSpec,
    coops: list[Cooperative],
    calendar: Calendar,
    rng: np.random.Generator,
) -> Population:
    """Draw every member's place, profile, join date and latent traits, vectorised."""
    regular = [c for c in coops if not c.is_new]
    new = [c for c in coops if c.is_new]
    n = spec.members
    n_new = round(n * spec.new_coop_share) if new else 0
    n_regular = n - n_new

    # Cooperative sizes vary a lot: a few big ones, many small ones.
    size_weights = rng.lognormal(0.0, 0.5, size=len(regular))
    coop = np.concatenate(
        [
            rng.choice(len(regular), size=n_regular, p=size_weights / size_weights.sum()),
            np.full(n_new, new[0].index if new else 0, dtype=np.int64),
        ]
    ).astype(np.int64)
    is_new = np.arange(n) >= n_regular
    county = np.array([c.county for c in coops], dtype=np.int64)[coop]
    founded = np.array([c.founded_month for c in coops], dtype=np.int64)[coop]

    # Villages: each cooperative draws members from a handful of villages of its county.
    village = np.empty(n, dtype=np.int64)
    product = np.empty(n, dtype=np.int64)
    for c in coops:
        members_here = np.flatnonzero(coop == c.index)
        catchment = rng.choice(
            spec.villages_per_county, size=min(spec.villages_per_county, 3 + c.index % 3), replace=False
        )
        village[members_here] = c.county * spec.villages_per_county + rng.choice(
            catchment, size=len(members_here)
        )
        product[members_here] = np.array(c.products)[
            rng.choice(len(c.products), size=len(members_here), p=np.array(c.product_weights))
        ]

    micro = rng.random(n) < np.where(is_new, 0.25, 0.15)
    youth = rng.random(n) < np.where(is_new, 0.55, 0.08)
    # Left-behind women: about one in ten established members; their husbands work in the cities.
    lbw = ~is_new & ~youth & ~micro & (rng.random(n) < 0.12)

    gender = np.where(rng.random(n) < 0.72, MALE, FEMALE)
    gender = np.where(youth, np.where(rng.random(n) < 0.3, FEMALE, MALE), gender)
    gender = np.where(lbw, FEMALE, gender).astype(np.int64)
    birth_year = rng.integers(1952, 1989, size=n)
    birth_year = np.where(youth, rng.integers(1989, 2004, size=n), birth_year)
    birth_year = np.where(lbw, rng.integers(1966, 1993, size=n), birth_year).astype(np.int64)

    # Join dates: half long-standing, some joined in the year before digitisation, many join during
    # the world. Returning youth are all recent; the new cooperative's members join at onboarding.
    u = rng.random(n)
    old = rng.integers(np.minimum(np.maximum(founded, -120), -13), -12)
    last_year = rng.integers(-12, 0, size=n)
    in_world = rng.integers(0, spec.months, size=n)
    join_month = np.where(u < 0.5, old, np.where(u < 0.65, last_year, in_world))
    join_month = np.where(youth & ~is_new, rng.integers(-12, spec.months, size=n), join_month)
    onboarding = np.where(
        rng.random(n) < 0.6, founded, rng.integers(np.minimum(founded, spec.months - 1), spec.months)
    )
    join_month = np.where(is_new, onboarding, np.maximum(join_month, founded)).astype(np.int64)
    join_time = _time_in_month(calendar, join_month, rng)

    # A small monthly hazard of leaving the cooperative (moving away, giving up farming).
    leave_month = np.maximum(join_month, 0) + rng.geometric(0.004, size=n)
    leave_month = np.where(lbw, spec.months + 1, leave_month).astype(np.int64)
    leave_time = np.where(leave_month < spec.months, _time_in_month(calendar, leave_month, rng), NULL_TIME)

    role_draw = rng.random(n)
    role = np.where(
        role_draw < 0.01, ROLE_LEADER, np.where(role_draw < 0.04, ROLE_BOARD, ROLE_MEMBER)
    ).astype(np.int64)

    # Latent traits. Discipline has one distribution for every group (the fairness premise).
    z = rng.standard_normal((n, 4)) @ np.linalg.cholesky(_TRAIT_CORRELATION).T
    income_z = z[:, 0]
    income = np.exp(np.log(MEDIAN_MONTHLY_INCOME) + INCOME_LOG_SD * income_z) * np.where(micro, 1.8, 1.0)
    discipline_z = z[:, 1]
    exposure = _sigmoid(0.9 * z[:, 2] - 0.4 + EXPOSURE_SHIFT[product])
    engagement_z = z[:, 3] + np.where(is_new, 0.4, 0.0)

    proxy = _assign_proxies(coop, gender, lbw, youth, join_month, leave_month, spec.months, rng)
    initial_savings = np.where(join_month < 0, np.round(income * rng.uniform(0.0, 1.5, size=n), -1), 0.0)

    # Member numbers follow registration order, as a cooperative's ledger would assign them.
    order = np.lexsort((np.arange(n), join_time))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    proxy = np.where(proxy >= 0, rank[np.maximum(proxy, 0)], -1)
    width = max(7, len(str(n)))

    def reorder(values: npt.NDArray[ScalarT]) -> npt.NDArray[ScalarT]:
        return values[order]

    return Population(
        county_ids=[county_id(c) for c in range(spec.counties)],
        village_ids=[
            f"village-{c + 1:02d}-{v + 1:02d}"
            for c in range(spec.counties)
            for v in range(spec.villages_per_county)
        ],
        coops=coops,
        member_ids=fixed_width_ids("M", np.arange(1, n + 1, dtype=np.int64), width),
        coop=reorder(coop),
        county=reorder(county),
        village=reorder(village),
        gender=reorder(gender),
        birth_year=reorder(birth_year),
        returning_youth=reorder(youth),
        left_behind_woman=reorder(lbw),
        micro_enterprise=reorder(micro),
        primary_product=reorder(product),
        role=reorder(role),
        join_month=reorder(join_month),
        join_time=reorder(join_time),
        leave_month=reorder(leave_month),
        leave_time=reorder(leave_time),
        income=reorder(income),
        income_z=reorder(income_z),
        discipline_z=reorder(discipline_z),
        exposure=reorder(exposure),
        engagement_z=reorder(engagement_z),
        proxy=reorder(proxy),
        initial_savings=reorder(initial_savings),
    )


def _time_in_month(calendar: Calendar, month: IntArray, rng: np.random.Generator) -> IntArray:
    """A minute-aligned instant in each given month (daytime, Beijing time)."""
    start = calendar.month_start(month)
    length_days = (calendar.month_start(month + 1) - start) // SECONDS_PER_DAY
    day = np.floor(rng.random(len(month)) * length_days).astype(np.int64)
    minute = rng.integers(0, 12 * 60, size=len(month))  # 08:00-20:00 in UTC+8
    return start + day * SECONDS_PER_DAY + minute * 60


def _assign_proxies(
    coop: IntArray,
    gender: IntArray,
    lbw: BoolArray,
    youth: BoolArray,
    join_month: IntArray,
    leave_month: IntArray,
    months: int,
    rng: np.random.Generator,
) -> IntArray:
    """For each left-behind woman, the member (husband's or a relative's household) whose id carries
    part of her deliveries and land records: a long-standing male member of the same cooperative."""
    proxy = np.full(len(coop), -1, dtype=np.int64)
    candidate = (gender == MALE) & ~lbw & ~youth & (join_month < 0) & (leave_month >= months)
    for c in np.unique(coop[lbw]):
        women = np.flatnonzero(lbw & (coop == c))
        pool = np.flatnonzero(candidate & (coop == c))
        if len(pool):
            proxy[women] = rng.choice(pool, size=len(women))
    return proxy
