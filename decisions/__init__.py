"""The decision log: every scored request, kept as evidence for audits and as the source for drift
and fairness monitoring, with human reviews and observed outcomes beside it.

- `base.py`: `DecisionRecord`, and the two roles: `DecisionLogWriter` (the server's, one per process)
  and `DecisionLogReader` (monitoring, audits, CLI: queries only, no thread, no lock).
- `sqlite.py`: the SQLite backend (WAL, synchronous=FULL, group commit).
- `postgres.py` (+ `postgres_programmes.py`): the PostgreSQL backend shared by workers and replicas
  (`COOPSCORE_DECISION_LOG=postgresql://...?schema=NAME`; group commit, conditional-UPDATE budgets).
- `export.py`: the auditors' export (`coopscore decisions export`): one row per decision as CSV or
  Parquet, with its caller, model digest, inputs hash, latest review and outcome.
- `factory.py`: `decision_log_writer(settings)` / `decision_log_reader(settings)` pick the backend
  from `Settings.decision_log`; nothing else names a backend class.
"""
