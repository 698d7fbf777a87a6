"""The console's texts: one catalogue (catalogue.yaml), zh by default, en on request."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
CATALOGUE = Path(__file__).with_name("catalogue.yaml")


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict[str, str]]:
    """key -> {zh, en}, read once (a missing language is caught by the unit test, not at run time)."""
    loaded = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    return {str(k): {str(lang): str(t) for lang, t in v.items()} for k, v in loaded.items()}


def language(value: str | None) -> Lang:
    """The language asked for, zh unless it is en."""
    return "en" if value == "en" else "zh"


class Texts:
    """`t("key")` in templates: the key's text in one language; an unknown key raises (no silent gaps)."""

    def __init__(self, lang: Lang) -> None:
        self.lang: Lang = lang
        self._texts = catalogue()

    def __call__(self, key: str) -> str:
        return self._texts[key][self.lang]
