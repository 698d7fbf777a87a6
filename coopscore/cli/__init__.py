"""The `coopscore` command line: one module per command group, mounted on `app` in `main`.

Modules: `simulate`, `ingest` (and `events`), `serve`, `keys`, `features`, `train` (train, retrain,
promote, `models`), `monitor`, `audit`; `output` holds the console, the `--json` option, `emit`
and `fail` they share. Each command parses its options, calls the library, and prints.
"""

from coopscore.cli.main import app, main

__all__ = ["app", "main"]
