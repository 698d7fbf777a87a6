"""How to read the simulator's awkward lender table (`simulator.lender_table`): the options a lender
passes to `coopscore train --table` for it, in one place for the tests that train on it."""

from __future__ import annotations

from typing import Any

# `--label outcome --bad-value default --good-value repaid --time applied_on --time-format %d/%m/%Y`
LENDER_TABLE_OPTIONS: dict[str, Any] = {
    "label": "outcome",
    "time": "applied_on",
    "time_format": "%d/%m/%Y",
    "bad_value": "default",
    "good_values": ("repaid",),
}
