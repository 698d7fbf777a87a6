"""The offline engine named by configuration (`Settings.offline_engine`): callers ask for "the offline
engine" and never name a backend class, so adding an engine touches this file only."""

from __future__ import annotations

from coopscore.settings import Settings
from features.offline_engines.base import OfflineEngine


def offline_engine(
    settings: Settings, *, threads: int | None = None, memory_limit: str = "3GB"
) -> OfflineEngine:
    """The configured engine. `threads` / `memory_limit` size DuckDB; Spark takes its resources from
    `COOPSCORE_SPARK_*` (or spark-submit), and is checked here so a missing Java or pyspark fails
    before any work with a one-line `OfflineEngineError`."""
    if settings.offline_engine == "spark":
        from features.offline_engines.spark import SparkConfig, SparkEngine, check_spark_available

        check_spark_available()
        return SparkEngine(
            SparkConfig(
                master=settings.spark_master,
                shuffle_partitions=settings.spark_shuffle_partitions,
                conf=settings.spark_conf,
            )
        )
    from features.offline import DuckDBEngine, EngineConfig

    return DuckDBEngine(EngineConfig(threads=threads, memory_limit=memory_limit))
