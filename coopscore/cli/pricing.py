"""`coopscore pricing check`: validate a pricing policy file before serving with it.

Exit codes: 0 valid (its version and digest printed), 2 not valid (one line naming the file and field).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coopscore.cli.output import EXIT_BAD_INPUT, JsonOption, console, emit, fail

app = typer.Typer(help="The pricing policy that offers are priced by.", no_args_is_help=True)


@app.command("check")
def check(
    policy: Annotated[
        Path | None,
        typer.Argument(
            help="Policy file, YAML or JSON, e.g. pricing.yaml (default: the one the server uses)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Validate a pricing policy and print its version and digest (what every decision records).

    Exit codes: 0 valid, 2 not valid (one line naming the file and field).
    """
    from coopscore.settings import get_settings
    from models.pricing import PricingPolicyError, load_pricing_policy

    try:
        loaded = load_pricing_policy(policy or get_settings().pricing_policy)
    except PricingPolicyError as error:
        payload = {"status": "error", "exit_code": EXIT_BAD_INPUT, "message": str(error)} if as_json else None
        fail(str(error), EXIT_BAD_INPUT, label="bad_input", payload=payload, soft_wrap=True)
    summary = {
        "status": "ok",
        "source": loaded.source,
        "version": loaded.version,
        "digest": loaded.digest,
        "policy": loaded.policy.model_dump(mode="json"),
    }
    if as_json:
        emit(summary)
        return
    console.print(
        f"pricing policy {loaded.source}: valid, version {loaded.version}, sha256 {loaded.digest}",
        soft_wrap=True,
        highlight=False,
    )
