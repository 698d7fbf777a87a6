"""Every option of every command shows an example in its --help (issue 13: a new user learns the CLI
from `--help`, so `--band` is shown as `--band age:25,40,60`, not just described)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

from coopscore.cli.main import app


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


def test_every_valued_option_has_an_example() -> None:
    missing = [
        f"coopscore {' '.join(path)} {'/'.join(option.opts)}"
        for path, command in _commands(typer.main.get_command(app))
        for option in command.params
        if getattr(option, "param_type_name", "") == "option"
        and not option.is_flag
        and "e.g." not in (option.help or "").lower()
    ]
    assert not missing, "options without an example (write 'e.g. --opt VALUE'): " + ", ".join(missing)


def test_the_table_options_show_their_examples_in_help() -> None:
    shown = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert shown.exit_code == 0
    text = " ".join(shown.output.replace("│", " ").split())  # rich boxes and wraps the help
    for example in ("--band age:25,40,60", "--time-format %d/%m/%Y", "--target-bad-rate", "--label-desc"):
        assert example in text, example
