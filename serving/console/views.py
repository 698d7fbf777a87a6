"""What the console's monitoring, onboarding and member pages read: the champion and challenger with
their model cards and gate results (MLflow), the ingest ledger and quarantine, and a member's monthly
activity from the event log. Reads only; each is bounded (newest batches, 24 months, top reasons)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from coopscore.settings import Settings
from features.event_log import PART_GLOB
from features.ledger import EMPTY, FAILED, STORED_WITH_QUARANTINE, IngestLedger
from models import mlflow_io
from models.signing import MODEL_CARD_FILE

# The member view's activity charts: (key, event types, measure). `amount` sums amount_cny (savings:
# deposits), `count` counts events.
ACTIVITY: Final[tuple[tuple[str, tuple[str, ...], str], ...]] = (
    ("deliveries", ("produce_delivery",), "amount"),
    ("savings", ("savings_deposit",), "amount"),
    ("repayments", ("loan_repayment",), "amount"),
    ("trainings", ("training_completed",), "count"),
    ("green_practices", ("green_practice",), "count"),
)
ACTIVITY_MONTHS: Final = 24
BATCHES_SHOWN: Final = 20
FILES_SHOWN: Final = 60
REASONS_SHOWN: Final = 60
_CARD_TTL_S: Final = 60.0


@dataclass(frozen=True)
class ModelPanel:
    """One registered version under an alias: its gate results (as promotion tagged them), its
    headline metrics and its model card (markdown)."""

    alias: str
    version: str
    status: str
    decided_at: str
    gates: list[dict[str, Any]]
    metrics: dict[str, str]
    card: str | None


@dataclass
class ModelPanels:
    """Champion and challenger panels, cached a minute (each read asks MLflow and downloads a card)."""

    settings: Settings
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cached: tuple[float, list[ModelPanel | None]] | None = None
    _cards: dict[tuple[str, str], str | None] = field(default_factory=dict)

    def read(self) -> list[ModelPanel | None]:
        """[champion, challenger]; None where the alias is not set."""
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < _CARD_TTL_S:
                return self._cached[1]
            panels = [self._panel(alias) for alias in ("champion", "challenger")]
            self._cached = (time.monotonic(), panels)
            return panels

    def _panel(self, alias: str) -> ModelPanel | None:
        uri, name = self.settings.tracking_uri, self.settings.model_name
        try:
            record = mlflow_io.get_version(uri, name, alias)
        except KeyError:
            return None
        tags = record.tags
        gates = []
        for key in sorted(tags):
            if key.startswith("gate.") and key.endswith(".passed"):
                gate = key[len("gate.") : -len(".passed")]
                skipped = tags.get(f"gate.{gate}.skipped") == "true"
                gates.append(
                    {
                        "gate": gate,
                        "verdict": "skipped" if skipped else ("pass" if tags[key] == "true" else "fail"),
                        "reason": tags.get(f"gate.{gate}.reason", ""),
                    }
                )
        metrics = {k.removeprefix("metric."): v for k, v in sorted(tags.items()) if k.startswith("metric.")}
        cache_key = (name, record.version)
        if cache_key not in self._cards:
            self._cards[cache_key] = _card(uri, record.run_id)
        return ModelPanel(
            alias=alias,
            version=record.version,
            status=tags.get("promotion.status", "unjudged"),
            decided_at=tags.get("promotion.decided_at", ""),
            gates=gates,
            metrics=metrics,
            card=self._cards[cache_key],
        )


def _card(tracking_uri: str, run_id: str) -> str | None:
    """A run's model card text, or None when the run has none."""
    if not run_id:
        return None
    with mlflow_io.temp_dir("coopscore-card-") as tmp:
        try:
            path = mlflow_io.download_run_artifact(tracking_uri, run_id, MODEL_CARD_FILE, Path(tmp))
        except Exception:  # MLflow raises its own (OSError, MlflowException) for a missing artifact
            return None
        return path.read_text(encoding="utf-8")


def onboarding(settings: Settings) -> dict[str, Any]:
    """The newest ingest batches with each file's status, and quarantine reasons by cooperative."""
    batches: list[dict[str, Any]] = []
    if settings.ledger_path.is_file():
        ledger = IngestLedger(settings.ledger_path)
        try:
            batches = [dict(b) for b in ledger.batches()[-BATCHES_SHOWN:]][::-1]
            files = ledger.batch_sources([str(b["batch_id"]) for b in batches])
        finally:
            ledger.close()
        by_batch: dict[str, list[dict[str, Any]]] = {}
        for row in files:
            by_batch.setdefault(str(row["batch_id"]), []).append(dict(row))
        order = {FAILED: 0, STORED_WITH_QUARANTINE: 1, EMPTY: 2}
        for batch in batches:  # the files needing attention first, at most FILES_SHOWN a batch
            listed = sorted(by_batch.get(str(batch["batch_id"]), []), key=lambda f: order.get(f["status"], 3))
            batch["files"], batch["more_files"] = listed[:FILES_SHOWN], max(len(listed) - FILES_SHOWN, 0)
    return {"batches": batches, "reasons": quarantine_reasons(settings.quarantine_dir)}


def quarantine_reasons(quarantine_dir: Path) -> list[dict[str, Any]]:
    """Quarantined records counted by cooperative (`coop_id` of the raw record; "?" for a line that
    could not be parsed) and broken rule, most frequent first."""
    files = sorted(str(p) for p in quarantine_dir.glob(f"batch=*/{PART_GLOB}"))
    if not files:
        return []
    import duckdb

    with duckdb.connect() as con:
        rows = con.execute(
            """SELECT coop, reason, count(*) AS n FROM (
                   SELECT coalesce(CASE WHEN json_valid(raw) THEN json_extract_string(raw, '$.coop_id') END,
                                   '?') AS coop,
                          unnest(string_split(reasons, '; ')) AS reason
                   FROM read_parquet(?, hive_partitioning = false, union_by_name = true))
               GROUP BY coop, reason ORDER BY n DESC, coop, reason LIMIT ?""",
            [files, REASONS_SHOWN],
        ).fetchall()
    return [{"coop_id": c, "reason": r, "n": int(n)} for c, r, n in rows]


def member_activity(settings: Settings, member_id: str) -> dict[str, list[tuple[str, float]]]:
    """The member's monthly activity over the last `ACTIVITY_MONTHS` months that have events, per
    `ACTIVITY` key: [(YYYY-MM, value)], months without events as 0."""
    types = {t: (key, measure) for key, kinds, measure in ACTIVITY for t in kinds}
    files = [str(p) for t in types for p in sorted((settings.events_dir / f"event_type={t}").glob(PART_GLOB))]
    if not files or not member_id:
        return {}
    import duckdb

    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")  # months as UTC dates, whatever the server's zone
        rows = con.execute(
            """SELECT event_type, strftime(date_trunc('month', event_time), '%Y-%m') AS month,
                      count(*) AS n, coalesce(sum(amount_cny), 0) AS amount
               FROM read_parquet(?, hive_partitioning = false, union_by_name = true)
               WHERE member_id = ? GROUP BY ALL""",
            [files, member_id],
        ).fetchall()
    if not rows:
        return {}
    last = max(r[1] for r in rows)
    months = _months_back(last, ACTIVITY_MONTHS)
    series: dict[str, dict[str, float]] = {key: dict.fromkeys(months, 0.0) for key, _, _ in ACTIVITY}
    for event_type, month, n, amount in rows:
        key, measure = types[event_type]
        if month not in series[key]:
            continue
        value = float(amount) if measure == "amount" else float(n)
        series[key][month] += value
    return {key: list(values.items()) for key, values in series.items()}


def _months_back(last: str, count: int) -> list[str]:
    year, month = (int(p) for p in last.split("-"))
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out[::-1]
