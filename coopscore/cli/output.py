"""Output helpers shared by every `coopscore` command, defined once.

Commands print people-facing text (tables, progress, errors) on stderr through `console`, and with
`--json` exactly one JSON object on stdout through `emit`, so a script can pipe stdout into a parser.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
# A service the configuration names cannot be reached (Redis online store, PostgreSQL decision log):
# start it or fix the URL. The same code for every command, so a scheduler can tell "retry later" from a bug.
EXIT_UNAVAILABLE = 7

console = Console(stderr=True)


class _Debug:
    """Whether `coopscore --debug` asked for tracebacks (set once, by the root callback)."""

    enabled = False


def set_debug(enabled: bool) -> None:
    """Record the root `--debug` flag for every command of this process."""
    _Debug.enabled = enabled


def debug_enabled() -> bool:
    """True under `coopscore --debug ...`: internal errors show their traceback."""
    return _Debug.enabled


def internal_error(error: BaseException, command: str = "COMMAND") -> str:
    """The one line shown for an unexpected error without --debug."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text} (run `coopscore --debug {command} ...` for the traceback)"


# One `--json` flag; the help texts differ by command group and are kept as they were shown before.
JsonOption = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON object.")]
JsonOnStdoutOption = Annotated[
    bool, typer.Option("--json", help="Print one machine-readable JSON object on stdout.")
]
JsonInsteadOfTablesOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object instead of tables.")
]
AuditJsonOption = Annotated[bool, typer.Option("--json", help="print the audit as JSON on stdout")]


def _finite(value: Any) -> Any:
    """NaN and infinities become null: the object on stdout stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def emit(payload: Mapping[str, Any]) -> None:
    """Print one JSON object on stdout (the only thing printed there with --json)."""
    sys.stdout.write(json.dumps(_finite(payload), ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def fail(
    message: str,
    code: int = EXIT_BAD_INPUT,
    *,
    label: str | None = None,
    payload: Mapping[str, Any] | None = None,
    soft_wrap: bool = False,
) -> NoReturn:
    """Print the error in red on stderr (after `label:` when given), the JSON `payload` on stdout
    when given (the caller passes one with --json), and exit with `code`."""
    if payload is not None:
        emit(payload)
    line = f"[red]{label}[/red]: {message}" if label is not None else f"[red]{message}[/red]"
    console.print(line, soft_wrap=soft_wrap)
    raise typer.Exit(code)


def progress_bar(enabled: bool) -> Progress:
    """A transient progress bar on stderr (disabled with --json so stdout stays one object)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=True,
    )


class _Stages:
    """A rich status spinner whose text follows a job's stages (each stage also logged)."""

    def __enter__(self) -> Callable[[str], None]:
        self.status = console.status("starting", spinner="dots")
        self.status.__enter__()
        return self.update

    def update(self, stage: str) -> None:
        # A timestamped line per stage, without rich's "file.py:line" column (noise to a user).
        console.print(f"[dim]{datetime.now():%H:%M:%S}[/dim] {stage}", highlight=False)
        self.status.update(f"[bold]{stage}")

    def __exit__(self, *exc: object) -> None:
        self.status.__exit__(None, None, None)


def stages(enabled: bool) -> AbstractContextManager[Callable[[str], None]]:
    """Enter to get a `progress(stage)` callback: a spinner on stderr, or a no-op when disabled."""
    if not enabled:
        return nullcontext(lambda _stage: None)
    return _Stages()


@contextmanager
def stdout_kept_for_json(enabled: bool) -> Iterator[None]:
    """With --json, send everything written to file descriptor 1 to stderr while the job runs.

    Native libraries print to fd 1 behind Python's back (DuckDB's progress bar on long queries,
    solver logs); the one JSON object must be the only thing on stdout.
    """
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
