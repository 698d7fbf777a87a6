"""One validated configuration for every coopscore process, read from env (`COOPSCORE_*`) or `.env`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coopscore.names import MODEL_NAME

Scope = Literal["score", "ingest", "read", "review", "admin"]
"""`admin` implies `review` (serving.auth.admit): an administrator may always review a decision."""

_URL: Final = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<rest>.*)$")
_QUERY_PASSWORD: Final = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


class UnsupportedBackendError(ValueError):
    """A backend setting this build cannot use; the message is one line and names the setting."""


class BackendUnavailableError(RuntimeError):
    """A configured backend (a Redis online store, a PostgreSQL database) that does not answer or
    refuses the connection; the message is one line naming the setting and the redacted URL.

    The CLI exits with `EXIT_UNAVAILABLE` (7) on it; the API answers 503."""


@dataclass(frozen=True)
class BackendUrl:
    """A backend setting read as `scheme://location`, e.g. `sqlite:///data/decisions.sqlite`.

    Backend factories (`features.online.factory`, `decisions.factory`) dispatch on `scheme`;
    `setting` is the environment variable, so every error can say what to change.
    """

    setting: str
    url: str
    scheme: str
    location: str

    @classmethod
    def parse(cls, setting: str, url: str) -> BackendUrl:
        """Split `url`; a value that is not `scheme://...` is refused with a one-line error."""
        match = _URL.match(url.strip())
        if match is None:
            raise UnsupportedBackendError(
                f"{setting}={url!r} is not a backend URL; write scheme://..., e.g. sqlite:///PATH"
            )
        return cls(setting, url, match["scheme"], match["rest"])

    def sqlite_path(self) -> Path:
        """The file of a `sqlite:///PATH` URL (PATH relative to the working directory unless it
        starts with `/`, as in SQLAlchemy and MLflow URIs)."""
        if self.scheme != "sqlite" or not self.location.startswith("/") or len(self.location) < 2:
            raise UnsupportedBackendError(
                f"{self.setting}={self.url!r} is not a SQLite file; write sqlite:///PATH"
            )
        return Path(self.location[1:])

    @property
    def redacted(self) -> str:
        """The URL with any password replaced by `***`: the form logs and `--json` output show."""
        location = _QUERY_PASSWORD.sub(r"\1***", self.location)  # redis://host/0?password=...
        at = location.rfind("@", 0, location.find("/") if "/" in location else None)
        if at < 0:
            return f"{self.scheme}://{location}"
        userinfo = location[:at]
        if ":" not in userinfo:  # a user name alone (postgresql://postgres@host/db): no password
            return f"{self.scheme}://{location}"
        return f"{self.scheme}://{userinfo.split(':', 1)[0]}:***@{location[at + 1 :]}"

    def display(self) -> str:
        """What to show a person: a SQLite URL's file path, else the redacted URL."""
        return str(self.sqlite_path()) if self.scheme == "sqlite" else self.redacted

    def unsupported(self, supported: tuple[str, ...]) -> UnsupportedBackendError:
        """The error for a scheme no factory knows yet."""
        return UnsupportedBackendError(
            f"{self.setting}={self.redacted!r}: backend {self.scheme!r} is not supported yet "
            f"(supported: {', '.join(supported)})"
        )


class ApiKeyEntry(BaseModel):
    """One API key as stored in settings: only its SHA-256 is kept, never the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[Scope, ...]


class Settings(BaseSettings):
    """Settings shared by the CLI, the jobs and the API; nothing else hard-codes a path."""

    model_config = SettingsConfigDict(env_prefix="COOPSCORE_", env_file=".env", extra="ignore", frozen=True)

    environment: Literal["development", "production"] = Field(
        "development", description="production: no /docs or /openapi.json, a bare /readyz, keys required"
    )
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
    model_name: str = Field(default=MODEL_NAME, description="registered model name")
    pricing_policy: Path | None = Field(
        default=None,
        description="pricing policy file for offers, YAML or JSON (unset: models/pricing_policy.yaml)",
    )

    # Access log and rate limits (per worker process: with N workers a client gets up to N times these).
    access_log: bool = Field(default=True, description="one JSON line per request on stderr")
    rate_limit_per_second: float = Field(
        default=1_000.0, ge=0, description="requests per second per API key (0: no limit)"
    )
    rate_limit_burst: int = Field(
        default=2_000, ge=0, description="requests a key may send at once (0: no limit)"
    )
    auth_failure_per_second: float = Field(
        default=0.2, ge=0, description="failed authentications per second per client address (0: no limit)"
    )
    auth_failure_burst: int = Field(
        default=20, ge=0, description="failed authentications a client address may make at once (0: no limit)"
    )

    # Backends, chosen here and built by one factory each (features.online.factory, decisions.factory).
    online_store: str = Field(
        default="", description="online store URL, e.g. sqlite:///PATH (empty: SQLite under data_dir)"
    )
    decision_log: str = Field(
        default="",
        description="decision log URL, e.g. sqlite:///PATH or postgresql://HOST/DB?schema=NAME "
        "(empty: SQLite under data_dir)",
    )

    # The offline feature engine (features.offline_engines.factory): DuckDB in process, or Spark over
    # the same compiled SQL. Spark settings apply only with offline_engine=spark.
    offline_engine: Literal["duckdb", "spark"] = Field(
        default="duckdb", description="offline feature engine: duckdb (in process) or spark"
    )
    offline_data_uri: str = Field(
        default="",
        description="where `features materialize` reads events/ and tables/: a folder or, with Spark, "
        "an object-store URI such as s3a://bucket/coopscore (empty: data_dir)",
    )
    spark_master: str = Field(
        default="",
        description="Spark master, e.g. local[2] or spark://host:7077 (empty: spark-submit's, else local[*])",
    )
    spark_shuffle_partitions: int | None = Field(
        default=None, ge=1, description="spark.sql.shuffle.partitions (unset: Spark's default, 200)"
    )
    spark_conf: dict[str, str] = Field(
        default_factory=dict,
        description='further Spark settings as JSON, e.g. {"spark.executor.memory": "8g"}',
    )

    # The web console (serving.console): sessions are signed with this secret. Unset, each process draws
    # a random one, so sessions do not survive a restart and several workers need it set.
    console_secret: SecretStr | None = Field(
        default=None, description="secret signing console sessions (>= 32 characters; unset: per process)"
    )
    console_session_minutes: int = Field(
        default=30, ge=1, le=24 * 60, description="a console session expires this long after sign-in"
    )

    # Interest-subsidy programmes (models.programmes): the server attaches subsidies from these files.
    programmes: tuple[Path, ...] = Field(
        default=(), description='JSON list of programme files (YAML or JSON), e.g. ["programmes/green.yaml"]'
    )

    # Model signing (models.signing): the key is never stored with the model.
    model_signing_key: SecretStr | None = Field(
        default=None, description="HMAC key that signs promoted models (>= 32 characters)"
    )
    model_signing_key_file: Path | None = Field(
        default=None, description="file holding the signing key (used when model_signing_key is unset)"
    )
    model_signing_old_keys: tuple[SecretStr, ...] = Field(
        default=(), description='JSON list of retired keys that still verify, e.g. ["old key"]'
    )

    @field_validator("pricing_policy", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _production_is_locked_down(self) -> Settings:
        if self.environment == "production" and not self.api_keys:
            raise ValueError("COOPSCORE_API_KEYS must be set in production")
        if self.environment == "production" and not (self.model_signing_key or self.model_signing_key_file):
            raise ValueError(
                "COOPSCORE_MODEL_SIGNING_KEY or COOPSCORE_MODEL_SIGNING_KEY_FILE must be set in production"
            )
        return self

    @property
    def production(self) -> bool:
        """`COOPSCORE_ENVIRONMENT=production`: API docs off, /readyz says only ready or not."""
        return self.environment == "production"

    @property
    def decision_log_url(self) -> BackendUrl:
        """The decision log backend (`COOPSCORE_DECISION_LOG`, default SQLite under data_dir)."""
        default = f"sqlite:///{self.data_dir / 'decisions.sqlite'}"
        return BackendUrl.parse("COOPSCORE_DECISION_LOG", self.decision_log or default)

    @property
    def decision_log_path(self) -> Path:
        """SQLite (WAL, synchronous=FULL) decision log: the evidence for audits and monitoring."""
        return self.decision_log_url.sqlite_path()

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
    def offline_events(self) -> Path | str:
        """The event log the offline engine reads for materialization (`offline_data_uri`/events)."""
        return f"{self.offline_data_uri.rstrip('/')}/events" if self.offline_data_uri else self.events_dir

    @property
    def offline_tables(self) -> Path | str:
        """The reference tables the offline engine reads for materialization (`offline_data_uri`/tables)."""
        return f"{self.offline_data_uri.rstrip('/')}/tables" if self.offline_data_uri else self.tables_dir

    @property
    def online_store_url(self) -> BackendUrl:
        """The online store backend (`COOPSCORE_ONLINE_STORE`, default SQLite under data_dir)."""
        default = f"sqlite:///{self.data_dir / 'online' / 'features.sqlite'}"
        return BackendUrl.parse("COOPSCORE_ONLINE_STORE", self.online_store or default)

    @property
    def online_store_path(self) -> Path:
        """SQLite (WAL) online feature store."""
        return self.online_store_url.sqlite_path()

    @property
    def ledger_path(self) -> Path:
        """SQLite ingest ledger: one row per batch with source, checksum and counts."""
        return self.data_dir / "ledger.sqlite"


@lru_cache
def get_settings() -> Settings:
    """Settings for this process, validated once."""
    return Settings()
