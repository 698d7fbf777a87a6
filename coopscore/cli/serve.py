"""`coopscore serve`: run the score API under uvicorn."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from coopscore.cli.output import console

app = typer.Typer()


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Interface to bind, e.g. --host 0.0.0.0 for every interface.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port, e.g. --port 8080.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes, e.g. --workers 2 (one per core).")
    ] = 1,
    demo_key: Annotated[
        bool, typer.Option(help="Add a fresh all-scope key for this run only and print a curl example.")
    ] = False,
) -> None:
    """Serve the score API (uvicorn): loads and verifies the champion at start-up."""
    import os

    import uvicorn

    if demo_key:
        from coopscore.settings import get_settings
        from serving.auth import hash_key, new_key

        key = new_key()
        entries = [e.model_dump(mode="json") for e in get_settings().api_keys]
        entries.append(
            {"name": "demo", "sha256": hash_key(key), "scopes": ["score", "ingest", "read", "admin"]}
        )
        # Settings are read from the environment by the app factory (also in worker processes).
        os.environ["COOPSCORE_API_KEYS"] = json.dumps(entries)
        get_settings.cache_clear()
        member = _some_member_id()
        console.print(f"[bold]demo API key (this run only):[/bold] {key}")
        console.print(
            f"curl -s -X POST http://{host}:{port}/v1/score -H 'X-API-Key: {key}' "
            "-H 'Content-Type: application/json' "
            f"""-d '{{"member_id": "{member}", "amount_cny": 8000, "term_months": 12, """
            """"purpose": "livestock", "explain": "all"}'""",
            soft_wrap=True,
            highlight=False,
        )

    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


def _some_member_id() -> str:
    """A member with an online vector, for the demo curl (any id works in the example otherwise)."""
    from coopscore.settings import get_settings
    from features.online.factory import online_store

    settings = get_settings()
    if settings.online_store_path.exists():
        try:
            with online_store(settings) as store:
                ids = store.member_ids(limit=1)
        except Exception:  # only the demo curl's example id depends on it: fall back, never fail
            ids = []
        if ids:
            return ids[0]
    return "M0000001"
