"""coopscore: training — labels, out-of-time splits, fitting, baselines, evaluation, gates, jobs.

- `training.job.train` / `training.job.retrain`: the jobs behind `coopscore train` / `retrain`.
- `training.promotion.promote`: gates, then champion or keep (`coopscore promote`).
- `training.gates`: the gate list (`default_gates()`), extensible with more gate callables.
"""
