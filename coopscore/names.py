"""Names every layer shares: the registered model and its registry aliases.

They live here, beside `settings.py` and importing nothing, so that settings (the bottom layer) can
default to them without importing `models`; `models.registry` re-exports them for model code.
"""

from __future__ import annotations

from typing import Final

MODEL_NAME: Final = "coopscore-pd"
CHAMPION: Final = "champion"  # the version serving and monitoring use
CHALLENGER: Final = "challenger"  # the latest candidate, until promotion gates move it to champion
