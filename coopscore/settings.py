"""One validated configuration for every coopscore process, read from env (`COOPSCORE_*`) or `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Scope = Literal["score", "ingest", "read", "admin"]


class ApiKeyEntry(BaseModel):
    """One API key as stored in settings: only its SHA-256 is kept, never the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[Scope, ...]


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

    # Serving.
    api_keys: tuple[ApiKeyEntry, ...] = Field(
        default=(), description='JSON list of {"name", "sha256", "scopes"}; see `coopscore keys create`'
    )
    max_body_bytes: int = Field(default=2_000_000, ge=1_024, description="request body size limit")
    max_batch_items: int = Field(default=1_000, ge=1, description="applications per /v1/score/batch")
    max_events_per_request: int = Field(default=10_000, ge=1, description="events per POST /v1/events")
    docs_enabled: bool = Field(default=True, description="serve /docs and /openapi.json")
    cors_origins: tuple[str, ...] = Field(default=(), description="allowed CORS origins (closed by default)")
    model_name: str = Field(default="coopscore-pd", description="registered model name")

    @model_validator(mode="after")
    def _production_is_locked_down(self) -> Settings:
        if self.environment == "production" and not self.api_keys:
            raise ValueError("COOPSCORE_API_KEYS must be set in production")
        return self

    @property
    def decision_log_path(self) -> Path:
        """SQLite (WAL, synchronous=FULL) decision log: the evidence for audits and monitoring."""
        return self.data_dir / "decisions.sqlite"

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
