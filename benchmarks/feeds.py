"""Synthetic wide event feeds at benchmark scale, generated vectorized (no per-row Python)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contracts import EVENT_PAYLOADS, EVENT_TYPES, WIDE_EVENT_CONTRACT

_PAYLOAD_VALUES = {
    "action": "join",
    "role": "member",
    "village_id": "v01",
    "product": "玉米",
    "quantity_kg": 120.5,
    "quality_grade": "A",
    "category": "seed",
    "on_credit": False,
    "loan_id": "L1",
    "due_date": "2025-09-01T00:00:00Z",
    "days_late": 0,
    "topic": "agronomy",
    "direction": "in",
    "practice": "straw_return",
    "verified": True,
}


def _prefixed(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


def feed_table(
    rows: int,
    seed: int,
    first_id: int = 0,
    typed: bool = False,
    dup_rate: float = 0.01,
    bad_rate: float = 0.005,
) -> pa.Table:
    """`rows` wide event rows with ~1% re-sent rows and ~0.5% bad amounts.

    Text exports (`typed=False`) carry strings, as a bookkeeping CSV does; typed exports carry
    timestamps and numbers, as a Parquet export from another system does.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(first_id, first_id + rows)
    dup = rng.random(rows) < dup_rate
    ids[dup] = rng.integers(first_id, first_id + rows, int(dup.sum()))
    etype_idx = rng.integers(0, len(EVENT_TYPES), rows)
    start = np.datetime64("2024-01-01T00:00:00", "us").astype(np.int64)
    event_us = start + rng.integers(0, 2 * 365 * 86400, rows) * 1_000_000
    recorded_us = event_us + (rng.exponential(2 * 86400, rows) * 1_000_000).astype(np.int64)
    amounts = np.round(rng.lognormal(5, 1, rows), 2)
    bad = rng.random(rows) < bad_rate
    columns: dict[str, pa.Array] = {
        "event_id": _prefixed("ev-", ids),
        "member_id": _prefixed("m", rng.integers(0, 200_000, rows)),
        "coop_id": _prefixed("c", rng.integers(0, 60, rows)),
        "event_type": pc.take(pa.array(EVENT_TYPES), pa.array(etype_idx)),
    }
    utc = pa.timestamp("us", tz="UTC")
    for name, micros in (("event_time", event_us), ("recorded_at", recorded_us)):
        stamps = pa.array(micros, pa.int64()).cast(utc)
        columns[name] = stamps if typed else pc.strftime(stamps, "%Y-%m-%dT%H:%M:%SZ")
    if typed:
        amount_array = pa.array(np.where(bad, -amounts, amounts))
    else:
        amount_array = pc.if_else(pa.array(bad), "12,5元", pc.cast(pa.array(amounts), pa.string()))
    for spec in WIDE_EVENT_CONTRACT.fields[6:]:
        carriers = [i for i, t in enumerate(EVENT_TYPES) if spec.name in {f.name for f in EVENT_PAYLOADS[t]}]
        mask = pa.array(np.isin(etype_idx, carriers))
        if spec.name == "amount_cny":
            value: pa.Array = amount_array
        else:
            constant = _PAYLOAD_VALUES[spec.name]
            if typed:
                scalar = pa.scalar(constant).cast(pa.string()) if spec.type == pa.string() else None
                if spec.name == "due_date":
                    scalar = pa.scalar(np.datetime64("2025-09-01", "us").astype(np.int64)).cast(utc)
                elif scalar is None:
                    scalar = pa.scalar(constant).cast(spec.type)
            else:
                text = constant if isinstance(constant, str) else str(constant).lower()
                scalar = pa.scalar(text)
            value = pa.repeat(scalar, rows)
        columns[spec.name] = pc.if_else(mask, value, pa.nulls(rows, value.type))
    return pa.table(columns)


def write_feed(
    folder: Path, total_rows: int, fmt: str, rows_per_file: int = 2_000_000, seed: int = 0
) -> list[Path]:
    """Write `total_rows` rows as CSV (text) or Parquet (typed) files under `folder/events/`."""
    out = folder / "events"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, start in enumerate(range(0, total_rows, rows_per_file)):
        rows = min(rows_per_file, total_rows - start)
        table = feed_table(rows, seed + number, first_id=start, typed=fmt == "parquet")
        path = out / f"part-{number:03d}.{fmt}"
        if fmt == "csv":
            pacsv.write_csv(table, path)
        else:
            pq.write_table(table, path, compression="zstd")
        paths.append(path)
    return paths
