"""The `coopscore` command: the root Typer app with every command group mounted on it.

Each group lives in its own module of `coopscore.cli` and exposes a Typer app; this is the one place
they are mounted, all the same way (`add_typer`). Apps mounted without a name add their commands at
the top level (`coopscore ingest`), the others form a group (`coopscore features get`). Every group
imports its implementation inside the commands, so `coopscore --help` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from coopscore.cli import (
    audit,
    decisions,
    features,
    ingest,
    keys,
    monitor,
    pricing,
    programme,
    recourse,
    serve,
    simulate,
    train,
)
from coopscore.cli.output import (
    EXIT_BAD_INPUT,
    EXIT_UNAVAILABLE,
    console,
    debug_enabled,
    emit,
    internal_error,
    set_debug,
)
from coopscore.files import restrict_new_files
from coopscore.settings import BackendUnavailableError, UnsupportedBackendError

app = typer.Typer(
    name="coopscore",
    help="Credit scoring for thin-file rural borrowers from cooperative activity feeds.\n\n"
    "Exit codes shared by every command: 0 success, 1 internal error (one line; the traceback only "
    "with --debug), 2 bad usage or bad input (one line saying what to change), 7 a configured backend "
    "(COOPSCORE_ONLINE_STORE=redis://..., COOPSCORE_DECISION_LOG=postgresql://...) did not answer "
    "(one line naming the setting and the URL, without its password). "
    "Commands document their own codes in their --help.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Show the full traceback of an internal error (before the command: "
            "`coopscore --debug train ...`). Without it, errors are one line.",
        ),
    ] = False,
) -> None:
    """Options for every command."""
    set_debug(debug)


# Top-level commands, in the order `coopscore --help` lists them.
app.add_typer(simulate.app)
app.add_typer(ingest.app)
app.add_typer(serve.app)
app.add_typer(train.app)
app.add_typer(recourse.app)
# Command groups.
app.add_typer(ingest.events_app, name="events")
app.add_typer(keys.app, name="keys")
app.add_typer(features.app, name="features")
app.add_typer(train.models_app, name="models")
app.add_typer(monitor.app, name="monitor")
app.add_typer(audit.app, name="audit")
app.add_typer(decisions.app, name="decisions")
app.add_typer(programme.app, name="programme")
app.add_typer(pricing.app, name="pricing")


def main() -> None:
    """Entry point for `coopscore` and `python -m coopscore`: an unexpected error is one line and
    exit 1, a backend that does not answer one line and exit 7, a malformed backend URL one line and
    exit 2; the traceback only with `coopscore --debug`. Everything it writes (data folder, stores,
    reports, the MLflow database, the server's files) is private to the user: umask 0o077."""
    restrict_new_files()
    try:
        app()
    except (BackendUnavailableError, UnsupportedBackendError) as error:
        # Configuration and services, not bugs: one line naming the setting (URL without password).
        if debug_enabled():
            raise
        unavailable = isinstance(error, BackendUnavailableError)
        code = EXIT_UNAVAILABLE if unavailable else EXIT_BAD_INPUT
        message = " ".join(str(error).split())
        if "--json" in sys.argv[1:]:
            emit({"status": "error", "exit_code": code, "message": message})
        label = "unavailable" if unavailable else "bad_config"
        console.print(f"[red]{label}[/red]: {message}", soft_wrap=True, highlight=False)
        sys.exit(code)
    except Exception as error:
        if debug_enabled():
            raise
        from decisions.base import DecisionLogUnavailableError

        if isinstance(error, DecisionLogUnavailableError):  # any command that reads the log
            console.print(f"[red]unavailable[/red]: {error}", soft_wrap=True)
            sys.exit(EXIT_UNAVAILABLE)
        command = next((a for a in sys.argv[1:] if not a.startswith("-")), "COMMAND")
        console.print(f"[red]error[/red]: {internal_error(error, command)}", soft_wrap=True)
        sys.exit(1)
