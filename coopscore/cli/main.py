"""The `coopscore` command: the root Typer app with every command group mounted on it.

Each group lives in its own module of `coopscore.cli` and exposes a Typer app; this is the one place
they are mounted, all the same way (`add_typer`). Apps mounted without a name add their commands at
the top level (`coopscore ingest`), the others form a group (`coopscore features get`). Every group
imports its implementation inside the commands, so `coopscore --help` stays fast.
"""

from __future__ import annotations

import typer

from coopscore.cli import audit, features, ingest, keys, monitor, serve, simulate, train

app = typer.Typer(
    name="coopscore",
    help="Credit scoring for thin-file rural borrowers from cooperative activity feeds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Top-level commands, in the order `coopscore --help` lists them.
app.add_typer(simulate.app)
app.add_typer(ingest.app)
app.add_typer(serve.app)
app.add_typer(train.app)
# Command groups.
app.add_typer(ingest.events_app, name="events")
app.add_typer(keys.app, name="keys")
app.add_typer(features.app, name="features")
app.add_typer(train.models_app, name="models")
app.add_typer(monitor.app, name="monitor")
app.add_typer(audit.app, name="audit")


def main() -> None:
    """Entry point for `coopscore` and `python -m coopscore`."""
    app()
