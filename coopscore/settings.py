"""One validated configuration for every coopscore process, read from env (`COOPSCORE_*`) or `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings shared by the CLI, the jobs and the API; nothing else hard-codes a path."""

    model_config = SettingsConfigDict(env_prefix="COOPSCORE_", env_file=".env", extra="ignore", frozen=True)

    environment: str = Field("development", description="development | production")
    data_dir: Path = Field(Path("data"), description="event log, quarantine, stores, decision log")
    tracking_uri: str = Field("sqlite:///mlruns/mlflow.db", description="MLflow tracking URI")
    artifact_root: Path = Field(Path("mlruns/artifacts"), description="MLflow artifact root")

    # Ingestion limits: amounts above the cap are almost certainly unit or typing errors.
    max_amount_cny: float = Field(5_000_000.0, gt=0)
    max_quantity_kg: float = Field(1_000_000.0, gt=0)
    clock_skew_seconds: int = Field(300, ge=0, description="allowed event_time ahead of now")
    ingest_chunk_rows: int = Field(1_000_000, ge=1_000, description="rows per streamed chunk")

    @property
    def events_dir(self) -> Path:
        """Hive-partitioned Parquet event log (`event_type=.../part-*.parquet`)."""
        return self.data_dir / "events"

    @property
    def tables_dir(self) -> Path:
        """Reference tables: applications, outcomes, member profiles, cooperatives."""
        return self.data_dir / "tables"

    @property
    def quarantine_dir(self) -> Path:
        """Rejected rows with their reasons, one Parquet file per ingest batch."""
        return self.data_dir / "quarantine"

    @property
    def online_store_path(self) -> Path:
        """SQLite (WAL) online feature store."""
        return self.data_dir / "online" / "features.sqlite"

    @property
    def ledger_path(self) -> Path:
        """SQLite ingest ledger: one row per batch with source, checksum and counts."""
        return self.data_dir / "ledger.sqlite"


@lru_cache
def get_settings() -> Settings:
    """Settings for this process, validated once."""
    return Settings()
