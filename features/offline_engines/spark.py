"""The Spark offline engine: the same compiled feature SQL as DuckDB, run by Spark SQL.

Only the adapter differs from DuckDB: the event log and the applications / outcomes tables are read
with Spark (a local folder or any URI Hadoop can open, e.g. `s3a://bucket/coopscore/events` when the
cluster has the S3A connector), registered under the relation names `compile_feature_sql` reads, and
the session time zone is pinned to UTC so `YEAR`/`HOUR`/... see the stored UTC instants. Training sets
come back to the driver as Arrow; materialization keeps the vectors in Spark and writes them from the
executors, each partition opening its own client to the online store (a store every process can
reach, such as Redis). A SQLite store is one file on the driver's disk, so there the driver writes.

pyspark is imported only inside methods: importing this module costs nothing without Spark.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from features.contracts import APPLICATION_CONTRACT, EVENT_CONTRACTS, EVENT_TYPES, OUTCOME_CONTRACT
from features.event_log import PART_GLOB
from features.offline import (
    APPLICATIONS_RELATION,
    OUTCOMES_RELATION,
    SPINE_RELATION,
    compile_feature_sql,
    raw_event_relation,
)
from features.offline_engines.base import Location, OfflineEngine, OfflineEngineError, VectorsWritten

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from features.catalog import FeatureRegistry
    from features.online.base import OnlineStore, Refresh

# Online-store URL schemes whose stores accept writes from any process (so from executors).
EXECUTOR_WRITABLE_SCHEMES: Final = ("redis", "rediss")
# Settings every session gets: UTC wall clock for the SQL's calendar functions, Arrow transfers.
_FIXED_CONF: Final = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
# Defaults for a session this engine starts (the operator's conf wins): no progress bar on the
# console (it would interleave with --json output), no web UI port.
_DEFAULT_CONF: Final = {"spark.ui.showConsoleProgress": "false", "spark.ui.enabled": "false"}


class SparkConfig(BaseModel):
    """How to reach Spark; the defaults suit local mode on a small machine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    master: str = Field(
        "",
        description="Spark master, e.g. local[2] or spark://host:7077 (empty: spark-submit's, else local[*])",
    )
    app_name: str = Field("coopscore-offline", description="Spark application name")
    shuffle_partitions: int | None = Field(
        None, ge=1, description="spark.sql.shuffle.partitions (default: Spark's, 200)"
    )
    conf: dict[str, str] = Field(default_factory=dict, description="further Spark settings, key -> value")
    log_level: str = Field("ERROR", description="Spark's log level for a session this engine starts")


def check_spark_available() -> None:
    """Raise a one-line `OfflineEngineError` when pyspark or a Java runtime is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError as error:
        raise OfflineEngineError(
            "COOPSCORE_OFFLINE_ENGINE=spark needs pyspark: run `make install` (pyspark is in uv.lock)"
        ) from error
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if java_home and not Path(java_home, "bin", "java").exists():
        raise OfflineEngineError(
            f"COOPSCORE_OFFLINE_ENGINE=spark needs Java 17, but JAVA_HOME={java_home} has no bin/java: "
            "point JAVA_HOME at a Java 17 or unset it"
        )
    if not java or not Path(java).exists():
        raise OfflineEngineError(
            "COOPSCORE_OFFLINE_ENGINE=spark needs Java 17: install it "
            "(apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
        )
    try:
        subprocess.run([java, "-version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        raise OfflineEngineError(
            f"Java at {java} does not run ({error}); set JAVA_HOME to a Java 17"
        ) from error


def _local_python_workers(master: str) -> bool:
    """Whether executors run on this machine with no Python chosen for them: local mode, not under
    spark-submit (which passes its own) and no PYSPARK_PYTHON."""
    if "PYSPARK_PYTHON" in os.environ or "PYSPARK_GATEWAY_PORT" in os.environ:
        return False
    return master == "" or master.startswith("local")


def _uri(location: Location) -> str:
    """A Hadoop path: a local folder as an absolute `file:` URI, any URI unchanged."""
    if isinstance(location, Path) or "://" not in location:
        return Path(location).resolve().as_uri()
    return location.rstrip("/")


def _spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


class SparkEngine(OfflineEngine):
    """Runs the compiled feature SQL on Spark (a session it starts, or one it is given)."""

    name = "spark"

    def __init__(self, config: SparkConfig | None = None, *, session: SparkSession | None = None) -> None:
        self.config = config or SparkConfig()
        self._session = session
        self._owns_session = False

    # ---- session ----

    def session(self) -> SparkSession:
        """The Spark session: the given one, or one started on first use (UTC, Arrow on)."""
        if self._session is None:
            check_spark_available()
            from pyspark.sql import SparkSession

            builder = SparkSession.builder.appName(self.config.app_name)
            if self.config.master:
                builder = builder.master(self.config.master)
            settings = {**_DEFAULT_CONF, **self.config.conf}
            if _local_python_workers(self.config.master):
                # Python workers (mapInPandas) run this interpreter, which has the project installed;
                # pyspark reads the worker interpreter from the environment, not from the conf.
                os.environ["PYSPARK_PYTHON"] = sys.executable
            if self.config.shuffle_partitions is not None:
                settings["spark.sql.shuffle.partitions"] = str(self.config.shuffle_partitions)
            settings.update(_FIXED_CONF)
            for key, value in settings.items():
                builder = builder.config(key, value)
            try:
                self._session = builder.getOrCreate()
            except Exception as error:  # the JVM failed to start: say so in one line
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise OfflineEngineError(
                    f"Spark did not start ({first}); check JAVA_HOME and the master"
                ) from error
            self._owns_session = True
            self._session.sparkContext.setLogLevel(self.config.log_level)
        for key, value in _FIXED_CONF.items():
            self._session.conf.set(key, value)
        return self._session

    def close(self) -> None:
        """Stop the session if this engine started it (a given session is left running)."""
        if self._session is not None and self._owns_session:
            self._session.stop()
        self._session = None
        self._owns_session = False

    # ---- sources ----

    def _has_parts(self, spark: SparkSession, pattern: str) -> bool:
        """Whether any file matches `pattern`, on whatever file system the URI names."""
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        path = jvm.org.apache.hadoop.fs.Path(pattern)
        try:
            matches = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).globStatus(path)
        except Exception as error:
            raise OfflineEngineError(f"cannot list {pattern} ({str(error).splitlines()[0]})") from error
        return matches is not None and len(matches) > 0

    def _register_parquet(self, spark: SparkSession, relation: str, folder: str, schema: pa.Schema) -> None:
        """Temp view `relation` over `folder/part-*.parquet` in the contract's columns (or empty)."""
        spark_schema = _spark_schema(schema)
        if self._has_parts(spark, f"{folder}/{PART_GLOB}"):
            # The folder (one root path, listed in the driver) filtered to part files; a writer's
            # temp files start with a dot, which Spark skips anyway.
            reader = spark.read.schema(spark_schema).option("pathGlobFilter", PART_GLOB)
            frame = reader.parquet(folder).select(*schema.names)
        else:
            frame = spark.createDataFrame([], spark_schema)
        frame.createOrReplaceTempView(relation)

    def register_sources(self, spark: SparkSession, *, events_dir: Location, tables_dir: Location) -> None:
        """Each event type's partition and the applications / outcomes tables, as temp views.

        Member profiles are never registered: feature code cannot reach protected attributes.
        """
        events, tables = _uri(events_dir), _uri(tables_dir)
        for event_type in EVENT_TYPES:
            self._register_parquet(
                spark,
                raw_event_relation(event_type),
                f"{events}/event_type={event_type}",
                EVENT_CONTRACTS[event_type].arrow_schema(),
            )
        self._register_parquet(
            spark, APPLICATIONS_RELATION, f"{tables}/applications", APPLICATION_CONTRACT.arrow_schema()
        )
        self._register_parquet(
            spark, OUTCOMES_RELATION, f"{tables}/outcomes", OUTCOME_CONTRACT.arrow_schema()
        )

    @staticmethod
    def event_types_with_duplicates(spark: SparkSession) -> set[str]:
        """Event types in which some event_id is stored more than once (one scan of the ids).

        Only those types pay the query's dedupe step; the result is the same either way.
        """
        ids = " UNION ALL ".join(
            f"SELECT '{t}' AS event_type, event_id FROM {raw_event_relation(t)}" for t in EVENT_TYPES
        )
        rows = spark.sql(
            "SELECT event_type, COUNT(*) - COUNT(DISTINCT event_id) AS extra "
            f"FROM ({ids}) ids GROUP BY event_type"
        ).collect()
        return {str(row["event_type"]) for row in rows if int(row["extra"]) > 0}

    @staticmethod
    def register_spine(spark: SparkSession, spine: pd.DataFrame) -> None:
        """The spine as `spine_input`: `spine_row` = position, `as_of` a UTC TIMESTAMP."""
        from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

        application_id = [
            None if pd.isna(value) else str(value)
            for value in (spine["application_id"] if "application_id" in spine else [None] * len(spine))
        ]
        frame = pd.DataFrame(
            {
                "spine_row": np.arange(len(spine), dtype=np.int64),
                "member_id": spine["member_id"].astype(str).to_numpy(dtype=object),
                "application_id": pd.Series(application_id, dtype=object),
                "as_of": pd.to_datetime(spine["as_of"], utc=True).to_numpy(),
            }
        )
        frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True)
        schema = StructType(
            [
                StructField("spine_row", LongType(), False),
                StructField("member_id", StringType(), False),
                StructField("application_id", StringType(), True),
                StructField("as_of", TimestampType(), False),
            ]
        )
        spark.createDataFrame(frame, schema).createOrReplaceTempView(SPINE_RELATION)

    # ---- the interface ----

    def member_features(
        self, spine: pd.DataFrame, *, events_dir: Location, tables_dir: Location, registry: FeatureRegistry
    ) -> pa.Table:
        """Every member feature for each spine row (by `spine_row`), computed by Spark, collected as Arrow."""
        spark = self.session()
        self.register_sources(spark, events_dir=events_dir, tables_dir=tables_dir)
        self.register_spine(spark, spine)
        duplicated = self.event_types_with_duplicates(spark)
        sql = compile_feature_sql(registry, deduplicate=duplicated, ordered=False)
        table: pa.Table = spark.sql(sql).toArrow()
        return _conform(table, ["spine_row", *(f.name for f in registry.member_features)]).sort_by(
            "spine_row"
        )

    def _visible_members_sql(self, as_of: datetime) -> str:
        stamp = _timestamp_literal(as_of)
        union = " UNION ALL ".join(
            f"SELECT member_id FROM {raw_event_relation(t)} "
            f"WHERE event_time < {stamp} AND recorded_at <= {stamp}"
            for t in EVENT_TYPES
        )
        return f"SELECT DISTINCT member_id FROM ({union}) m"

    def list_members(self, *, events_dir: Location, tables_dir: Location, as_of: datetime) -> list[str]:
        """Every member with at least one event visible as of `as_of`, sorted (collected to the driver)."""
        spark = self.session()
        self.register_sources(spark, events_dir=events_dir, tables_dir=tables_dir)
        rows = spark.sql(self._visible_members_sql(as_of) + " ORDER BY member_id").collect()
        return [str(r["member_id"]) for r in rows]

    def _member_spine(
        self, spark: SparkSession, member_ids: Sequence[str] | None, as_of: datetime
    ) -> DataFrame:
        """Materialization spine kept in Spark: one row per member, numbered once (checkpointed, so
        the numbers cannot change when the query reads the spine more than once)."""
        stamp = _timestamp_literal(as_of)
        if member_ids is None:
            members = spark.sql(self._visible_members_sql(as_of))
        else:
            members = spark.createDataFrame(pd.DataFrame({"member_id": list(member_ids)}), "member_id string")
        members.createOrReplaceTempView("spine_members")
        spine = spark.sql(
            "SELECT monotonically_increasing_id() AS spine_row, member_id, "
            f"CAST(NULL AS STRING) AS application_id, {stamp} AS as_of FROM spine_members"
        ).localCheckpoint(eager=True)
        spine.createOrReplaceTempView(SPINE_RELATION)
        return spine

    def write_vectors(
        self,
        *,
        events_dir: Location,
        tables_dir: Location,
        as_of: datetime,
        member_ids: Sequence[str] | None,
        registry: FeatureRegistry,
        store: OnlineStore,
        store_url: str | None,
        refresh: Refresh,
        batch_size: int,
    ) -> VectorsWritten:
        """Build the vectors in Spark; write them from the executors (per partition) when the store
        is reachable from any process, else stream them to the driver and write from there."""
        import time

        started = time.perf_counter()
        spark = self.session()
        self.register_sources(spark, events_dir=events_dir, tables_dir=tables_dir)
        spine = self._member_spine(spark, member_ids, as_of)
        expected = spine.count()
        duplicated = self.event_types_with_duplicates(spark)
        sql = compile_feature_sql(registry, deduplicate=duplicated, ordered=False)
        names = list(refresh.feature_names)
        vectors = (
            spark.sql(sql)
            .join(spine.select("spine_row", "member_id"), "spine_row")
            .selectExpr("member_id", *[f"CAST({n} AS DOUBLE) AS {n}" for n in names])
        )
        scheme = (store_url or "").split("://", 1)[0].lower()
        if scheme in EXECUTOR_WRITABLE_SCHEMES:
            assert store_url is not None
            writer = _PartitionWriter(store_url, refresh, batch_size)
            written = vectors.mapInPandas(writer, "written long").groupBy().sum("written").collect()[0][0]
            written = int(written or 0)
            built = time.perf_counter()
            if written != expected:
                raise RuntimeError(f"executors wrote {written} vectors for {expected} members")
            return VectorsWritten(written, "executors", build_seconds=built - started, write_seconds=0.0)
        table: pa.Table = vectors.toArrow()
        built = time.perf_counter()
        written = _write_from_driver(table, store, refresh, batch_size)
        if written != expected:
            raise RuntimeError(f"wrote {written} vectors for {expected} members")
        return VectorsWritten(
            written, "driver", build_seconds=built - started, write_seconds=time.perf_counter() - built
        )


def _timestamp_literal(moment: datetime) -> str:
    """A Spark SQL TIMESTAMP literal of a UTC instant (the session time zone is UTC)."""
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    utc = stamp.tz_convert("UTC").tz_localize(None)
    return f"TIMESTAMP '{utc.isoformat(sep=' ', timespec='microseconds')}'"


def _conform(table: pa.Table, names: list[str]) -> pa.Table:
    """Check Spark returned the compiled columns, in order."""
    if table.column_names != names:
        missing = sorted(set(names) - set(table.column_names))
        raise RuntimeError(
            f"Spark returned other columns than the feature SQL names (missing: {missing[:5]})"
        )
    return table


def _vector_batch(
    member_ids: Sequence[str], values: np.ndarray, refresh: Refresh
) -> Any:  # FeatureBatch, imported lazily so executors import the store only when writing
    from features.online.base import FeatureBatch

    return FeatureBatch(
        member_ids=list(member_ids),
        as_of=refresh.as_of,
        feature_names=refresh.feature_names,
        values=np.ascontiguousarray(values, dtype=np.float64),
    )


def _write_from_driver(table: pa.Table, store: OnlineStore, refresh: Refresh, batch_size: int) -> int:
    names = list(refresh.feature_names)
    written = 0
    for batch in table.to_batches(max_chunksize=batch_size):
        frame = batch.to_pandas()
        values = frame[names].to_numpy(dtype=np.float64)
        store.online_write_batch(refresh, _vector_batch(frame["member_id"].tolist(), values, refresh))
        written += len(frame)
    return written


class _PartitionWriter:
    """Runs in an executor: opens the online store by URL and writes its partition's vectors.

    Holds only the URL, the refresh (plain values) and the batch size, so shipping it to executors
    sends no connection or credentials object, only the URL the operator configured.
    """

    def __init__(self, store_url: str, refresh: Refresh, batch_size: int) -> None:
        self.store_url = store_url
        self.refresh = refresh
        self.batch_size = batch_size

    def __call__(self, frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from coopscore.settings import Settings
        from features.online.factory import online_store

        names = list(self.refresh.feature_names)
        written = 0
        with online_store(Settings(online_store=self.store_url)) as store:
            for frame in frames:
                for start in range(0, len(frame), self.batch_size):
                    part = frame.iloc[start : start + self.batch_size]
                    values = part[names].to_numpy(dtype=np.float64)
                    store.online_write_batch(
                        self.refresh, _vector_batch(part["member_id"].tolist(), values, self.refresh)
                    )
                    written += len(part)
        yield pd.DataFrame({"written": [written]}, dtype=np.int64)
