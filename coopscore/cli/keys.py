"""`coopscore keys ...`: create API keys (the settings store only their SHA-256)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from coopscore.cli.output import JsonOption, console, emit

app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


@app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who the key is for, e.g. a lender's loan app.")],
    scopes: Annotated[
        list[str],
        typer.Option(
            "--scopes",
            help="Scopes: score, ingest, read, review, admin (admin implies review). Repeatable, "
            "e.g. --scopes score --scopes read.",
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Print a new API key once, and the settings entry (its SHA-256) to add to COOPSCORE_API_KEYS."""
    from coopscore.settings import ApiKeyEntry
    from serving.auth import hash_key, new_key

    wanted = [s for part in scopes for s in part.split(",") if s]
    try:
        entry = ApiKeyEntry(name=name, sha256="0" * 64, scopes=tuple(wanted))  # type: ignore[arg-type]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scopes") from exc
    key = new_key()
    entry = entry.model_copy(update={"sha256": hash_key(key)})
    if as_json:
        emit({"key": key, "entry": entry.model_dump(mode="json")})
        return
    console.print("[bold]API key (shown once, store it now):[/bold]")
    sys.stdout.write(key + "\n")
    console.print("Add this entry to the JSON list in COOPSCORE_API_KEYS:")
    console.print(json.dumps(entry.model_dump(mode="json")), soft_wrap=True, highlight=False)
