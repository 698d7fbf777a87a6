"""What members do on advice, and what it changes in the world: the causal effects of member actions.

Recourse advice (`models.recourse`) names actions from `features.contracts.MEMBER_ACTIONS`. Here each
one is carried out in a re-simulated future, month by month, and acts on the member's latent traits
only where doing it plausibly changes their risk. The effects are a design, stated once:

- `save_group_fund` (units: CNY): three monthly deposits, mid-month, of a third of the amount each
  (in 10 CNY, the last one takes the rest), booked under the member. The money is a **buffer**: while it
  stays in the fund (the smaller of what was saved on advice and the balance), the true PD's
  log-odds fall by `BUFFER_EFFECT * ln(1 + buffer / monthly instalment of the loan)`.
- `complete_training` (units: trainings): one a month, financial literacy, then bookkeeping, then
  agronomy. Each raises **income capacity** by `TRAINING_INCOME_GAIN` from the next month (so later
  deliveries, purchases and savings are larger too); the two finance topics also raise **repayment
  discipline** by `FINANCE_DISCIPLINE_GAIN` standard deviations. Both reach the true PD through the
  world's own terms (income, loan size relative to income, discipline).
- `adopt_green_practice` (units: practices): one verified practice a month (organic fertilizer,
  integrated pest management, drip irrigation). Each multiplies **shock exposure** by
  `GREEN_EXPOSURE_FACTOR` from the next month: weather shocks build less stress and a drought fails
  less of the crop, and the true PD prices the weather stress expected over the loan
  (`_PD_STRESS * change in exposure * expected shock severity / (1 - 0.6)`, the stationary mean of
  the stress recursion; the expected severity is the county's record so far shrunk towards the
  climate's, `CLIMATE_SHOCK`, with a year's weight, so a calm first year does not read as no risk).
- `deliver_through_coop` (units: months): one delivery a month of the member's usual size, sold
  through the cooperative instead of elsewhere. The record grows; income does not: **no effect**.
- `attend_meetings` (units: months): the member attends the cooperative's monthly meeting.
  Engagement, the trait behind attendance, does not change: **no effect**.

The world's baseline true PD (`simulator.activity`) has no buffer or forward exposure term: there,
savings and exposure are outcomes of the traits already priced. The two terms only price what advice
adds, so they are zero, and nothing here runs, in a world without interventions: default worlds stay
byte-identical. Action events draw from their own random stream; trait changes still shift the draws
of later events, so a re-simulated world differs from the baseline in noise as well as in effect.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa

from features.contracts import GREEN_PRACTICES, MEMBER_ACTIONS, QUALITY_GRADES, TRAINING_TOPICS
from simulator.events import EventBatch
from simulator.population import (
    ANNUAL_DELIVERIES,
    INCOME_LOG_SD,
    PRICE_PER_KG,
    SECONDS_PER_DAY,
    BoolArray,
    Calendar,
    FloatArray,
    IntArray,
    Population,
)

BUFFER_EFFECT: Final = 0.3
TRAINING_INCOME_GAIN: Final = 0.03
FINANCE_DISCIPLINE_GAIN: Final = 0.15
GREEN_EXPOSURE_FACTOR: Final = 0.8
STRESS_PERSISTENCE: Final = 0.6  # the stress recursion in `simulator.activity`: 0.6 * stress + shocks
# Mean shock severity per month of the weather in `simulator.world._weather`: a bad month with
# probability 0.12 (the four summer months) or 0.05, of severity uniform on [0.3, 0.8].
CLIMATE_SHOCK: Final = (4 * 0.12 + 8 * 0.05) / 12 * 0.55
_PRIOR_MONTHS: Final = 12.0
CAUSAL: Final = {
    "save_group_fund": True,
    "complete_training": True,
    "adopt_green_practice": True,
    "deliver_through_coop": False,
    "attend_meetings": False,
}
assert tuple(CAUSAL) == MEMBER_ACTIONS

_TRAINING_ORDER: Final = tuple(
    TRAINING_TOPICS.index(t) for t in ("financial_literacy", "bookkeeping", "agronomy")
)
_FINANCE_TOPICS: Final = frozenset(TRAINING_TOPICS.index(t) for t in ("financial_literacy", "bookkeeping"))
_PRACTICE_ORDER: Final = tuple(
    GREEN_PRACTICES.index(p) for p in ("organic_fertilizer", "integrated_pest_management", "drip_irrigation")
)
_QUALITY_PRICE: Final = np.array([1.1, 1.0, 0.85])  # as in `simulator.activity`
assert len(_QUALITY_PRICE) == len(QUALITY_GRADES)
_MIDMONTH: Final = 14 * SECONDS_PER_DAY + 2 * 3600  # the 15th, 10:00 Beijing time
_DELIVERED_INCOME_SHARE: Final = 0.6
_SAVINGS_DEPOSITS: Final = 3


@dataclass(frozen=True)
class Intervention:
    """One member doing one action on advice, from `start_month` (a month index of the world)."""

    member_id: str
    action: str
    units: float
    start_month: int

    def __post_init__(self) -> None:
        if self.action not in MEMBER_ACTIONS:
            raise ValueError(f"intervention for {self.member_id}: unknown action {self.action!r}")
        if not self.units > 0 or self.start_month < 0:
            raise ValueError(f"intervention for {self.member_id}: need units > 0 and start_month >= 0")

    @property
    def months(self) -> int:
        """Months it runs: three deposits of savings, otherwise one month per unit."""
        if self.action == "save_group_fund":
            return _SAVINGS_DEPOSITS
        return max(1, math.ceil(self.units - 1e-9))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def read_interventions(path: Path) -> tuple[Intervention, ...]:
    """Interventions from a JSON file: `{"interventions": [{member_id, action, units, start_month}]}`."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        return tuple(Intervention(**item) for item in payload["interventions"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not an interventions file ({error})") from error


def write_interventions(path: Path, interventions: tuple[Intervention, ...]) -> None:
    """The inverse of `read_interventions`."""
    payload = {"interventions": [i.to_dict() for i in interventions]}
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


class MemberActions:
    """The interventions of one world run: their events month by month, and their effects on the
    (mutable copies of the) traits of `population`."""

    def __init__(
        self, interventions: tuple[Intervention, ...], population: Population, calendar: Calendar, seed: int
    ) -> None:
        index = {member_id: i for i, member_id in enumerate(population.member_ids.to_pylist())}
        unknown = [i.member_id for i in interventions if i.member_id not in index]
        if unknown:
            raise ValueError(f"interventions name members the world does not have: {unknown[:3]}")
        self.pop = population
        self.calendar = calendar
        self.seed = seed
        self.member = np.array([index[i.member_id] for i in interventions], dtype=np.int64)
        self.action = np.array([MEMBER_ACTIONS.index(i.action) for i in interventions], dtype=np.int64)
        self.units = np.array([i.units for i in interventions], dtype=np.float64)
        self.start = np.array([i.start_month for i in interventions], dtype=np.int64)
        self.months = np.array([i.months for i in interventions], dtype=np.int64)
        self.saved = np.zeros(population.size)  # CNY put in the group fund on advice
        self.base_exposure = population.exposure.copy()

    def _running(self, month: int, action: str) -> IntArray:
        """Rows of the interventions of `action` that act in `month`."""
        code = MEMBER_ACTIONS.index(action)
        return np.flatnonzero(
            (self.action == code) & (self.start <= month) & (month < self.start + self.months)
        )

    def attending(self, month: int) -> BoolArray:
        """Members who attend this month's meeting on advice."""
        forced = np.zeros(self.pop.size, dtype=bool)
        forced[self.member[self._running(month, "attend_meetings")]] = True
        return forced

    def events(self, month: int, lo: IntArray, hi: IntArray) -> tuple[list[EventBatch], FloatArray]:
        """This month's records of the actions (members still in their cooperative only), and the
        CNY each member deposits on advice."""
        rng = np.random.default_rng([self.seed, 9, month])
        when = int(self.calendar.month_start(month)) + _MIDMONTH
        pop = self.pop

        def present(rows: IntArray) -> IntArray:
            members = self.member[rows]
            return rows[(lo[members] <= when) & (when < hi[members])]

        batches = []
        rows = present(self._running(month, "save_group_fund"))
        step = month - self.start[rows]
        third = np.round(self.units[rows] / _SAVINGS_DEPOSITS, -1)
        amount = np.where(step < _SAVINGS_DEPOSITS - 1, third, self.units[rows] - 2 * third).astype(
            np.float64
        )
        who = self.member[rows]
        deposits = np.bincount(who, weights=amount, minlength=pop.size).astype(np.float64)
        self.saved += deposits
        batches.append(self._records("savings_deposit", who, when, amount=amount))
        rows = present(self._running(month, "complete_training"))
        topic = _in_order(_TRAINING_ORDER, month - self.start[rows])
        batches.append(self._records("training_completed", self.member[rows], when, topic=topic))
        rows = present(self._running(month, "adopt_green_practice"))
        practice = _in_order(_PRACTICE_ORDER, month - self.start[rows])
        verified = np.ones(len(rows), dtype=np.int8)
        batches.append(
            self._records("green_practice", self.member[rows], when, practice=practice, verified=verified)
        )
        batches.append(self._deliveries(present(self._running(month, "deliver_through_coop")), when, rng))
        return batches, deposits

    def _records(
        self, event_type: str, who: IntArray, when: int, **payload: np.ndarray[Any, Any]
    ) -> EventBatch:
        """One record per member, at `when`, filed under the member and their cooperative."""
        return EventBatch.build(
            event_type, member=who, coop=self.pop.coop[who], event_time=np.full(len(who), when), **payload
        )

    def _deliveries(self, rows: IntArray, when: int, rng: np.random.Generator) -> EventBatch:
        """One delivery of the member's usual size, at an ordinary quality mix."""
        pop = self.pop
        who = self.member[rows]
        product = pop.primary_product[who]
        value = pop.income[who] * 12 * _DELIVERED_INCOME_SHARE / ANNUAL_DELIVERIES[product]
        u = rng.random(len(who))
        quality = np.where(u < 0.3, 0, np.where(u < 0.8, 1, 2))
        unit_price = PRICE_PER_KG[product] * _QUALITY_PRICE[quality]
        quantity = np.maximum(0.5, np.round(value / unit_price * 2) / 2)
        return self._records(
            "produce_delivery",
            who,
            when,
            product=product,
            quantity=quantity,
            amount=np.round(quantity * unit_price, 2),
            quality=quality,
        )

    def after_month(self, month: int) -> None:
        """Trait changes of what was completed this month; they act from the next month on."""
        pop = self.pop
        rows = self._running(month, "complete_training")
        if len(rows):
            who = self.member[rows]
            gain = 1.0 + TRAINING_INCOME_GAIN
            np.multiply.at(pop.income, who, gain)
            np.add.at(pop.income_z, who, math.log(gain) / INCOME_LOG_SD)
            topic = _in_order(_TRAINING_ORDER, month - self.start[rows])
            finance = np.isin(topic, list(_FINANCE_TOPICS))
            np.add.at(pop.discipline_z, who[finance], FINANCE_DISCIPLINE_GAIN)
        rows = self._running(month, "adopt_green_practice")
        if len(rows):
            np.multiply.at(pop.exposure, self.member[rows], GREEN_EXPOSURE_FACTOR)

    def buffer(self, members: IntArray, savings: FloatArray) -> FloatArray:
        """CNY these members saved on advice that is still in the fund (withdrawals take it first)."""
        return np.minimum(self.saved[members], np.maximum(savings[members], 0.0))


def _in_order(order: tuple[int, ...], step: IntArray) -> IntArray:
    """The code of each intervention's `step`-th item (topic, practice), the last one repeating."""
    return np.asarray(np.array(order, dtype=np.int64)[np.minimum(step, len(order) - 1)])


def expected_shock(weather: FloatArray, month: int) -> FloatArray:
    """Expected shock severity per county after `month`: the record so far shrunk towards the climate."""
    seen = weather[:, : month + 1]
    return np.asarray((seen.sum(axis=1) + _PRIOR_MONTHS * CLIMATE_SHOCK) / (seen.shape[1] + _PRIOR_MONTHS))


def action_log_odds(
    buffer_cny: FloatArray,
    instalment_cny: FloatArray,
    exposure: FloatArray,
    base_exposure: FloatArray,
    mean_shock: FloatArray,
    stress_coefficient: float,
) -> FloatArray:
    """What advice adds to the true PD's log-odds: the savings buffer and the forward weather stress
    (both zero without interventions; see the module docstring)."""
    buffer_term = -BUFFER_EFFECT * np.log1p(np.maximum(buffer_cny, 0.0) / instalment_cny)
    exposure_term = stress_coefficient * (exposure - base_exposure) * mean_shock / (1.0 - STRESS_PERSISTENCE)
    return np.asarray(buffer_term + exposure_term)


STATE_COLUMNS: Final = (
    "member_id",
    "month",
    "stress",
    "income",
    "income_z",
    "discipline_z",
    "engagement_z",
    "exposure",
    "base_exposure",
    "savings_balance",
    "saved_on_advice",
    "mean_shock",
)


def state_table(columns: dict[str, list[np.ndarray[Any, Any]]], member_ids: pa.Array) -> pa.Table:
    """The recorded monthly states as one table (`truth/member_states.parquet`)."""
    arrays = {name: np.concatenate(parts) for name, parts in columns.items()}
    ids = member_ids.take(pa.array(arrays.pop("member")))
    return pa.table({"member_id": ids, **{k: pa.array(v) for k, v in arrays.items()}})
