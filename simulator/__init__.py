"""The world simulator: a reference world of cooperative members with a known truth.

It writes what a county service center would receive (cooperative feed exports with real-world
faults, reference tables) and, apart under `truth/`, what only evaluation may read. It depends on
`features.contracts` only, so the feeds it writes follow the same contracts ingest checks.

- `world.py`: `SimulationConfig` and `simulate_world`, which runs the months and writes the world.
- `scenarios.py`: named drifts (drought, a new cooperative, a unit change) and their targets.
- `population.py`: cooperatives, members and their latent traits.
- `activity.py`: each member's month-by-month activity, loans and applications.
- `events.py`: the columnar batch of one month's events.
- `feeds.py`: the feed writer: per-cooperative CSV / JSON Lines exports with duplicates, late and
  malformed rows.
"""
