"""Offline feature engines behind one small interface (`base.OfflineEngine`), one module per backend.

DuckDB (`features.offline.DuckDBEngine`, in process, the default) and Spark (`spark.SparkEngine`)
run the same SQL, compiled once from the feature catalogue by `features.offline.compile_feature_sql`;
`factory.offline_engine` picks one from `Settings.offline_engine` (`COOPSCORE_OFFLINE_ENGINE`).
"""
