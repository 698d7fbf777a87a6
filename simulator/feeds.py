"""Cooperative bookkeeping exports of the simulated world, with the faults real feeds have.

Events become *records*: each gets a `recorded_at` (usually hours after the fact, sometimes weeks or
months late) and lands in its cooperative's export file for the month it was recorded
(`events/<coop_id>/<YYYY-MM>.csv|jsonl`). On the way some records are re-sent (duplicates, often in a
later month's file) and some are mangled (malformed rows of several kinds). Good rows are rendered by
Arrow in bulk; only the few malformed rows are crafted one by one, as text.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from features.contracts import (
    EVENT_PAYLOADS,
    EVENT_TYPES,
    GREEN_PRACTICES,
    INPUT_CATEGORIES,
    MEMBERSHIP_ACTIONS,
    MEMBERSHIP_ROLES,
    PAYMENT_DIRECTIONS,
    PRODUCE_PRODUCTS,
    QUALITY_GRADES,
    TRAINING_TOPICS,
    WIDE_EVENT_CONTRACT,
)
from simulator.events import EventBatch
from simulator.population import (
    SECONDS_PER_DAY,
    BoolArray,
    Calendar,
    IntArray,
    Population,
    fixed_width_ids,
)

EVENT_ID_WIDTH: Final = 10
LOAN_ID_WIDTH: Final = 8

MALFORMED_KINDS: Final = (
    "amount_text",  # "12,5元", "约300元", "1.20万"
    "missing_member_id",
    "missing_event_time",
    "unknown_enum",
    "negative_amount",
    "recorded_before_event",
    "future_event_time",
    "unknown_event_type",
    "broken_line",  # CSV with the wrong number of fields / truncated JSON line
)
_MALFORMED_WEIGHTS: Final = np.array([0.18, 0.1, 0.08, 0.14, 0.12, 0.1, 0.08, 0.1, 0.1])
_NEEDS_AMOUNT: Final = np.array([k in ("amount_text", "negative_amount") for k in MALFORMED_KINDS])
_UNKNOWN_ENUM_VALUES: Final = {
    "action": "suspend",
    "role": "chairman",
    "product": "榴莲",
    "quality_grade": "D",
    "category": "fuel",
    "topic": "dancing",
    "direction": "sideways",
    "practice": "slash_and_burn",
}
# Event types with at least one enum payload field (where an unknown enum value can be injected).
_ENUM_EVENT_TYPES: Final = np.array(
    [any(spec.enum is not None for spec in EVENT_PAYLOADS[t]) for t in EVENT_TYPES]
)
_UNKNOWN_EVENT_TYPES: Final = ("harvest_report", "crop_insurance", "land_transfer", "Produce_Delivery")

_NORMAL_DELAY_MEDIAN_HOURS: Final = 20.0
_LATE_DELAY_MIN_DAYS: Final = 4.0
_LATE_DELAY_MEAN_EXTRA_DAYS: Final = 35.0
_LATE_DELAY_MAX_DAYS: Final = 200.0


@dataclass(frozen=True)
class FeedFaults:
    """How often records are re-sent, mangled or recorded late."""

    duplicate_rate: float
    malformed_rate: float
    late_rate: float


@dataclass
class FeedStats:
    """What the exports contain, counted as they are written."""

    rows: int = 0
    duplicates: int = 0
    malformed: int = 0
    late: int = 0
    fen_rows: int = 0
    malformed_by_kind: Counter[str] = field(default_factory=Counter)
    valid_by_type: Counter[str] = field(default_factory=Counter)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


@cache
def _clock_table() -> npt.NDArray[np.uint8]:
    """`HH:MM:SSZ` for every second of a day, as a (86400, 9) byte table (built on first use)."""
    second = np.arange(SECONDS_PER_DAY)
    table = np.empty((SECONDS_PER_DAY, 9), dtype=np.uint8)
    table[:] = np.frombuffer(b"00:00:00Z", dtype=np.uint8)
    for column, values in ((0, second // 3600), (3, second % 3600 // 60), (6, second % 60)):
        table[:, column] = 48 + values // 10
        table[:, column + 1] = 48 + values % 10
    return table


def iso_strings(seconds: IntArray, valid: BoolArray | None = None) -> pa.Array:
    """Epoch seconds -> `YYYY-MM-DDTHH:MM:SSZ` strings (nulls where not `valid`).

    Built as a byte matrix from two lookup tables (dates in range, seconds of the day): row gathers
    instead of per-row string formatting.
    """
    count = len(seconds)
    secs = np.where(valid, seconds, 0) if valid is not None else seconds
    days = secs // SECONDS_PER_DAY
    second_of_day = secs - days * SECONDS_PER_DAY
    first = int(days.min()) if count else 0
    last = int(days.max()) if count else 0
    dates = np.datetime_as_string(np.arange(first, last + 1).astype("datetime64[D]"))
    date_table = np.frombuffer(np.char.add(dates, "T").astype("S11").tobytes(), dtype=np.uint8)
    matrix = np.empty((count, 20), dtype=np.uint8)
    matrix[:, :11] = date_table.reshape(-1, 11)[days - first]
    matrix[:, 11:] = _clock_table()[second_of_day]
    offsets = np.arange(0, 20 * (count + 1), 20, dtype=np.int32)
    validity = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(matrix), validity)


def iso_string(seconds: int) -> str:
    """One epoch-seconds instant as `YYYY-MM-DDTHH:MM:SSZ`."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _enum(values: tuple[str, ...], codes: IntArray) -> pa.Array:
    """Enum codes -> strings; negative codes become nulls (not applicable)."""
    return pc.take(pa.array(values, pa.string()), pa.array(codes, mask=codes < 0))


def _with_nulls(array: pa.Array, valid: BoolArray) -> pa.Array:
    return pc.if_else(pa.array(valid), array, pa.scalar(None, array.type))


class FeedWriter:
    """Turns each month's events into records and writes the cooperatives' monthly exports."""

    def __init__(
        self,
        out_dir: Path,
        population: Population,
        calendar: Calendar,
        faults: FeedFaults,
        seed: int,
        fen_coop: int = -1,
        fen_start_month: int = 0,
    ) -> None:
        self.out_dir = out_dir
        self.pop = population
        self.calendar = calendar
        self.faults = faults
        self.seed = seed
        self.fen_coop = fen_coop
        self.fen_start_month = fen_start_month
        self.pending: list[EventBatch] = []
        self.stats = FeedStats()
        self.coop_ids = pa.array([c.coop_id for c in population.coops], pa.string())
        self.coop_jsonl = np.array([c.jsonl for c in population.coops], dtype=bool)
        self.village_ids = pa.array(population.village_ids, pa.string())
        self.header = (",".join(WIDE_EVENT_CONTRACT.names) + "\n").encode()

    # --- records ------------------------------------------------------------------------------

    def record(self, events: EventBatch, month: int) -> None:
        """Assign `recorded_at` (late for some), drop what is unknown by the world's end, and queue
        each record (and any re-sent copy) for the export month it falls in."""
        rng = np.random.default_rng([self.seed, 2, month])
        count = len(events)
        backfill = events["backfill"]
        hours = np.exp(rng.normal(np.log(_NORMAL_DELAY_MEDIAN_HOURS), 0.7, count))
        delay = np.clip(hours * 3600, 300, 5 * SECONDS_PER_DAY)
        late = ~backfill & (rng.random(count) < self.faults.late_rate)
        late_days = np.minimum(
            _LATE_DELAY_MIN_DAYS + rng.exponential(_LATE_DELAY_MEAN_EXTRA_DAYS, count),
            _LATE_DELAY_MAX_DAYS,
        )
        delay = np.where(late, late_days * SECONDS_PER_DAY, delay)
        delay = np.ceil(delay / 60).astype(np.int64) * 60
        recorded = np.where(backfill, events["recorded_at"], events["event_time"] + delay)
        events.cols["recorded_at"] = recorded
        events.cols["late"] = late
        known = (events["event_time"] < self.calendar.end) & (recorded < self.calendar.end)
        if not known.all():
            events = events.take(known)
        events.cols["export_month"] = self.calendar.month_of(events["recorded_at"])
        if len(events) and int(events["export_month"].min()) < month:
            # Such a record would belong to an export already written and be silently lost.
            raise RuntimeError(f"month {month} produced records for an earlier month's export")
        self.stats.late += int(events["late"].sum())

        # Re-sent copies: same event_id and content, often in a later month's export.
        resend = rng.random(len(events)) < self.faults.duplicate_rate
        events.cols["has_dup"] = resend
        copies = events.take(resend)
        lag = np.where(rng.random(len(copies)) < 0.3, 0, np.minimum(rng.geometric(0.6, len(copies)), 4))
        copies.cols["export_month"] = np.minimum(copies["export_month"] + lag, self.calendar.months - 1)
        copies.cols["dup"] = np.ones(len(copies), dtype=bool)
        copies.cols["has_dup"] = np.zeros(len(copies), dtype=bool)
        self.pending.extend([events, copies])

    # --- exports ------------------------------------------------------------------------------

    def export(self, month: int) -> None:
        """Write every cooperative's export file for `month`."""
        rng = np.random.default_rng([self.seed, 3, month])
        queued = EventBatch.concat(self.pending)
        due = queued["export_month"] == month
        self.pending = [queued.take(~due)]
        picked = np.flatnonzero(due)
        if not len(picked):
            return
        # File order: CSV cooperatives first, then JSONL ones; by cooperative; by recording time.
        coop = queued["coop"][picked]
        jsonl = self.coop_jsonl[coop]
        order = np.lexsort(
            (
                queued["dup"][picked],
                queued["seq"][picked],
                queued["recorded_at"][picked],
                coop,
                jsonl,
            )
        )
        rows = queued.take(picked[order])
        jsonl = jsonl[order]

        if self.fen_coop >= 0 and month >= self.fen_start_month:
            # The cooperative's new bookkeeping software writes fen: only the records change.
            fen = (rows["coop"] == self.fen_coop) & ~np.isnan(rows["amount"])
            rows["amount"][fen] = np.round(rows["amount"][fen] * 100, 2)
            self.stats.fen_rows += int(fen.sum())

        malformed = (rng.random(len(rows)) < self.faults.malformed_rate) & ~rows["dup"] & ~rows["has_dup"]
        kind = self._malformed_kinds(rows, rng)
        aux = rng.integers(0, 1_000_000, size=len(rows))

        self.stats.rows += len(rows)
        self.stats.duplicates += int(rows["dup"].sum())
        self.stats.malformed += int(malformed.sum())
        for code, n in zip(*np.unique(kind[malformed], return_counts=True), strict=True):
            self.stats.malformed_by_kind[MALFORMED_KINDS[int(code)]] += int(n)
        valid = ~rows["dup"] & ~malformed
        for code, n in zip(*np.unique(rows["etype"][valid], return_counts=True), strict=True):
            self.stats.valid_by_type[EVENT_TYPES[int(code)]] += int(n)

        split = int(np.searchsorted(jsonl, True))
        for lo, hi, as_jsonl in ((0, split, False), (split, len(rows), True)):
            if hi > lo:
                part = rows.slice(lo, hi)
                self._write_files(part, malformed[lo:hi], kind[lo:hi], aux[lo:hi], month, as_jsonl)

    def _malformed_kinds(self, rows: EventBatch, rng: np.random.Generator) -> IntArray:
        """A malformation kind per row (only used where the row is chosen to be malformed); kinds
        that need an amount or an enum fall back to ones that apply to every row."""
        weights = _MALFORMED_WEIGHTS / _MALFORMED_WEIGHTS.sum()
        kind = rng.choice(len(MALFORMED_KINDS), size=len(rows), p=weights)
        no_amount = np.isnan(rows["amount"])
        kind = np.where(_NEEDS_AMOUNT[kind] & no_amount, MALFORMED_KINDS.index("missing_member_id"), kind)
        no_enum = ~_ENUM_EVENT_TYPES[rows["etype"]]
        unknown_enum = MALFORMED_KINDS.index("unknown_enum")
        kind = np.where((kind == unknown_enum) & no_enum, MALFORMED_KINDS.index("unknown_event_type"), kind)
        return kind.astype(np.int64)

    def _write_files(
        self,
        rows: EventBatch,
        malformed: BoolArray,
        kind: IntArray,
        aux: IntArray,
        month: int,
        as_jsonl: bool,
    ) -> None:
        """Render the rows of one format in bulk, then cut them into one file per cooperative,
        swapping in hand-crafted text for the malformed rows."""
        table = self.wide_table(rows)
        data, starts = _json_lines(table) if as_jsonl else _csv_lines(table)
        view = memoryview(data)
        bad_positions = np.flatnonzero(malformed)
        crafted = {
            int(pos): self._malformed_line(record, rows, int(pos), int(kind[pos]), int(aux[pos]), as_jsonl)
            for pos, record in zip(
                bad_positions, table.take(pa.array(bad_positions)).to_pylist(), strict=True
            )
        }
        coops = rows["coop"]
        boundaries = np.flatnonzero(np.diff(coops)) + 1
        label = self.calendar.label(month)
        suffix = "jsonl" if as_jsonl else "csv"
        for lo, hi in zip(
            np.concatenate([[0], boundaries]), np.concatenate([boundaries, [len(rows)]]), strict=True
        ):
            coop_id = self.pop.coops[int(coops[lo])].coop_id
            parts: list[bytes | memoryview] = [] if as_jsonl else [self.header]
            cursor = int(lo)
            inside = bad_positions[(bad_positions >= lo) & (bad_positions < hi)]
            for pos in inside:
                parts.append(view[starts[cursor] : starts[pos]])
                parts.append(crafted[int(pos)])
                cursor = int(pos) + 1
            parts.append(view[starts[cursor] : starts[hi]])
            relative = f"events/{coop_id}/{label}.{suffix}"
            path = self.out_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"".join(parts))
            self.stats.files[relative] = {
                "rows": int(hi - lo),
                "format": suffix,
                "duplicates": int(rows["dup"][lo:hi].sum()),
                "malformed": len(inside),
            }

    # --- rendering ----------------------------------------------------------------------------

    def wide_table(self, rows: EventBatch) -> pa.Table:
        """The rows as an Arrow table in `WIDE_EVENT_CONTRACT` column order, timestamps as ISO
        strings, not-applicable cells as nulls."""
        has_loan = rows["loan"] >= 0
        has_due = rows["due"] != np.iinfo(np.int64).min
        has_days = rows["days_late"] >= 0
        builders: dict[str, pa.Array] = {
            "event_id": fixed_width_ids("E", rows["seq"], EVENT_ID_WIDTH),
            "member_id": pc.take(self.pop.member_ids, pa.array(rows["member"])),
            "coop_id": pc.take(self.coop_ids, pa.array(rows["coop"])),
            "event_type": _enum(EVENT_TYPES, rows["etype"]),
            "event_time": iso_strings(rows["event_time"]),
            "recorded_at": iso_strings(rows["recorded_at"]),
            "action": _enum(MEMBERSHIP_ACTIONS, rows["action"]),
            "role": _enum(MEMBERSHIP_ROLES, rows["role"]),
            "village_id": pc.take(self.village_ids, pa.array(rows["village"], mask=rows["village"] < 0)),
            "product": _enum(PRODUCE_PRODUCTS, rows["product"]),
            "quantity_kg": pa.array(rows["quantity"], from_pandas=True),
            "amount_cny": pa.array(rows["amount"], from_pandas=True),
            "quality_grade": _enum(QUALITY_GRADES, rows["quality"]),
            "category": _enum(INPUT_CATEGORIES, rows["category"]),
            "on_credit": pa.array(rows["on_credit"] == 1, mask=rows["on_credit"] < 0),
            "loan_id": _with_nulls(
                fixed_width_ids("L", np.maximum(rows["loan"], 0), LOAN_ID_WIDTH), has_loan
            ),
            "due_date": iso_strings(rows["due"], has_due),
            "days_late": pa.array(rows["days_late"].astype(np.int32), mask=~has_days),
            "topic": _enum(TRAINING_TOPICS, rows["topic"]),
            "direction": _enum(PAYMENT_DIRECTIONS, rows["direction"]),
            "practice": _enum(GREEN_PRACTICES, rows["practice"]),
            "verified": pa.array(rows["verified"] == 1, mask=rows["verified"] < 0),
        }
        names = WIDE_EVENT_CONTRACT.names
        if set(builders) != set(names):
            raise RuntimeError(
                f"simulator and WIDE_EVENT_CONTRACT disagree on columns: {sorted(set(builders) ^ set(names))}"
            )
        return pa.table([builders[name] for name in names], names=names)

    def _malformed_line(
        self,
        record: dict[str, Any],
        rows: EventBatch,
        pos: int,
        kind_code: int,
        aux: int,
        as_jsonl: bool,
    ) -> bytes:
        """One mangled record, as the text a careless export would contain."""
        kind = MALFORMED_KINDS[kind_code]
        values: dict[str, Any] = dict(record)
        if kind == "amount_text":
            amount = float(values["amount_cny"])
            variants = (
                f"{amount:.1f}".replace(".", ",") + "元",
                f"约{round(amount)}元",
                f"{amount / 10000:.2f}万",
            )
            values["amount_cny"] = variants[aux % len(variants)]
        elif kind == "missing_member_id":
            values["member_id"] = ""
        elif kind == "missing_event_time":
            values["event_time"] = None if as_jsonl and aux % 2 else ""
        elif kind == "unknown_enum":
            for name, bad in _UNKNOWN_ENUM_VALUES.items():
                if values.get(name) is not None:
                    values[name] = bad
                    break
        elif kind == "negative_amount":
            values["amount_cny"] = -float(values["amount_cny"])
        elif kind == "recorded_before_event":
            event_time = int(rows["event_time"][pos])
            values["recorded_at"] = iso_string(event_time - (1 + aux % 30) * SECONDS_PER_DAY)
        elif kind == "future_event_time":
            future = self.calendar.end + (366 + aux % 365) * SECONDS_PER_DAY
            values["event_time"] = iso_string(future)
        elif kind == "unknown_event_type":
            values["event_type"] = _UNKNOWN_EVENT_TYPES[aux % len(_UNKNOWN_EVENT_TYPES)]
        if as_jsonl:
            line = json.dumps(
                {k: v for k, v in values.items() if v is not None},
                ensure_ascii=False,
                separators=(",", ":"),
            )
            if kind == "broken_line":
                # The export was cut off mid-record: no closing brace, so never valid JSON.
                line = line[: max(10, len(line) * (40 + aux % 40) // 100)]
            return (line + "\n").encode()
        cells = [_csv_cell(values[name]) for name in WIDE_EVENT_CONTRACT.names]
        if kind == "broken_line":
            cells = cells[: -(3 + aux % 5)] if aux % 2 else [*cells, "补录"]
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(cells)
        return buffer.getvalue().encode()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _csv_lines(table: pa.Table) -> tuple[pa.Buffer, IntArray]:
    """CSV body (no header) and the byte offset where each row starts (plus the end)."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    data = sink.getvalue()
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    if len(newlines) != table.num_rows:
        raise RuntimeError("a rendered CSV row spans several lines")
    return data, np.concatenate([[0], newlines + 1]).astype(np.int64)


def _json_lines(table: pa.Table) -> tuple[pa.Buffer, IntArray]:
    """JSON Lines body (null keys omitted) and each row's starting byte offset (plus the end).

    Built column-wise with Arrow string kernels: every value we emit is an id, an enum, an ISO
    timestamp or a number, none of which needs JSON escaping.
    """
    pieces = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        values = column.combine_chunks()
        if pa.types.is_string(values.type):
            pieces.append(pc.binary_join_element_wise(f'"{name}":"', values, '"', ""))
        else:
            text = pc.cast(values, pa.string())
            pieces.append(pc.binary_join_element_wise(f'"{name}":', text, ""))
    body = pc.binary_join_element_wise(*pieces, ",", null_handling="skip")
    lines = pc.binary_join_element_wise("{", body, "}\n", "")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    return lines.buffers()[2], offsets.astype(np.int64)
