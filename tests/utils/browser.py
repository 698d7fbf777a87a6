"""Debian's Chromium for Playwright (launched by path: `playwright install` cannot download here).

Absent, browser tests skip with the reason; `COOPSCORE_REQUIRE_BROWSER=1` (set by .ci/run) makes that a
failure, so CI always runs them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("COOPSCORE_CHROMIUM", "/usr/bin/chromium"))


def chromium_or_skip() -> Path:
    """The Chromium binary, or skip (fail under COOPSCORE_REQUIRE_BROWSER=1) saying why."""
    if CHROMIUM.is_file():
        return CHROMIUM
    why = f"no Chromium at {CHROMIUM}: `make browser` installs it (apt package chromium, as root)"
    if os.environ.get("COOPSCORE_REQUIRE_BROWSER") == "1":
        pytest.fail(why)
    pytest.skip(why)


def launch_options() -> dict[str, Any]:
    """Playwright launch options: the system Chromium, without its sandbox when running as root."""
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    return {"executable_path": str(chromium_or_skip()), "args": args, "headless": True}
