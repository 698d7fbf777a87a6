"""The console's catalogue: every key in both languages, every template key in the catalogue."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from decisions.base import QUEUE_REASONS
from features.ledger import FILE_STATUSES
from serving.console.routes import PURPOSES
from serving.console.text import LANGS, Texts, catalogue
from serving.console.views import ACTIVITY

TEMPLATES = Path(__file__).resolve().parents[3] / "serving" / "console" / "templates"
LITERAL_KEY = re.compile(r"""\bt\(\s*['"]([a-z_]+)['"]\s*\)""")
PREFIXED_KEY = re.compile(r"""\bt\(\s*['"]([a-z_]+_)['"]\s*~""")
DYNAMIC = {
    "d_": ("approve", "review", "decline"),
    "a_": ("confirm", "override"),
    "p_": PURPOSES,
    "f_": ("approval_ratio", "approval_if_repaid"),
    "m_": ("champion", "challenger"),
    "m_st_": ("promoted", "forced", "kept", "unjudged"),
    "g_": ("pass", "fail", "skipped"),
    "b_": ("started", "complete", "aborted"),
    "q_": QUEUE_REASONS,
    "st_": tuple(s.replace(" ", "_") for s in FILE_STATUSES),
}


def test_every_key_has_both_languages() -> None:
    missing = [(k, lang) for k, v in catalogue().items() for lang in LANGS if not v.get(lang, "").strip()]
    assert not missing, missing


def test_every_template_key_is_in_the_catalogue() -> None:
    known = set(catalogue())
    used: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        used |= set(LITERAL_KEY.findall(text))
        for prefix in PREFIXED_KEY.findall(text):
            used |= {prefix + value for value in DYNAMIC[prefix]}
    assert used, "no keys found: the pattern no longer matches the templates"
    assert not used - known, sorted(used - known)


def test_traffic_light_keys_exist() -> None:
    from serving.console.routes import _TRAFFIC

    assert set(_TRAFFIC.values()) <= set(catalogue())


def test_unknown_key_raises_rather_than_showing_nothing() -> None:
    with pytest.raises(KeyError):
        Texts("en")("no_such_key")
    assert Texts("zh")("sign_in") != Texts("en")("sign_in")


def test_activity_keys_exist() -> None:
    """The member view's chart titles come from the catalogue (built in code, not in a template)."""
    known = set(catalogue())
    needed = {f"act_{key}" for key, _, _ in ACTIVITY} | {f"per_month_{m}" for _, _, m in ACTIVITY}
    assert needed <= known, sorted(needed - known)
