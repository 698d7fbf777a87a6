"""`coopscore serve`: run the score API under uvicorn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from coopscore.cli.output import EXIT_BAD_INPUT, EXIT_UNAVAILABLE, console, fail

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
    pricing_policy: Annotated[
        Path | None,
        typer.Option(
            help="Pricing policy for offers, YAML or JSON, e.g. --pricing-policy pricing.yaml "
            "(default: COOPSCORE_PRICING_POLICY, else models/pricing_policy.yaml).",
        ),
    ] = None,
) -> None:
    """Serve the score API (uvicorn): loads and verifies the champion at start-up.

    Exit codes: 2 when the pricing policy or a backend URL is not valid (one line naming the field),
    7 when a configured backend (COOPSCORE_ONLINE_STORE=redis://..., COOPSCORE_DECISION_LOG=
    postgresql://...) does not answer (one line naming the URL, password hidden)."""
    import os

    import uvicorn

    from coopscore.settings import get_settings
    from models.pricing import PricingPolicyError, load_pricing_policy

    if pricing_policy is not None:
        # Settings are read from the environment by the app factory (also in worker processes).
        os.environ["COOPSCORE_PRICING_POLICY"] = str(pricing_policy.resolve())
        get_settings.cache_clear()
    try:  # checked here, so a bad file is one line before the server starts
        pricing = load_pricing_policy(get_settings().pricing_policy)
    except PricingPolicyError as error:
        fail(str(error), EXIT_BAD_INPUT, label="bad_input", soft_wrap=True)
    from features.online.factory import check_online_store

    check_online_store(get_settings())  # Redis down or a bad URL: one line, exit 7 or 2, before binding
    _check_decision_log()
    console.print(
        f"pricing policy {pricing.version} (sha256 {pricing.digest[:12]}) from {pricing.source}",
        soft_wrap=True,
        highlight=False,
    )

    if demo_key:
        from serving.auth import hash_key, new_key

        key = new_key()
        entries = [e.model_dump(mode="json") for e in get_settings().api_keys]
        entries.append(
            {
                "name": "demo",
                "sha256": hash_key(key),
                "scopes": ["score", "ingest", "read", "review", "admin"],
            }
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

    if workers > 1 and get_settings().console_secret is None:
        # Console sessions must verify in every worker: one secret for this run (sessions end with it).
        import secrets

        os.environ["COOPSCORE_CONSOLE_SECRET"] = secrets.token_hex(32)
        get_settings.cache_clear()
    console.print(f"API:     http://{host}:{port}/v1  (docs: http://{host}:{port}/docs)", highlight=False)
    console.print(f"console: http://{host}:{port}/console  (sign in with an API key)", highlight=False)

    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


def _check_decision_log() -> None:
    """Stop before uvicorn starts when the decision log cannot be used: one line, not a traceback
    from every worker process."""
    from coopscore.settings import UnsupportedBackendError, get_settings
    from decisions.base import DecisionLogUnavailableError
    from decisions.factory import check_decision_log

    try:
        check_decision_log(get_settings())
    except DecisionLogUnavailableError as error:
        fail(str(error), EXIT_UNAVAILABLE, label="unavailable", soft_wrap=True)
    except (UnsupportedBackendError, ValueError) as error:
        fail(str(error), EXIT_BAD_INPUT, label="bad_input", soft_wrap=True)
    console.print(
        f"decision log: {get_settings().decision_log_url.display()}", soft_wrap=True, highlight=False
    )


def _some_member_id() -> str:
    """A member with an online vector, for the demo curl (any id works in the example otherwise)."""
    from coopscore.settings import get_settings
    from features.online.factory import online_store, online_store_exists

    settings = get_settings()
    ids: list[str] = []
    try:
        if online_store_exists(settings):
            with online_store(settings) as store:
                ids = store.member_ids(limit=1)
    except Exception:  # only the demo curl's example id depends on it: fall back, never fail
        ids = []
    return ids[0] if ids else "M0000001"
