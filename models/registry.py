"""Registry I/O for the credit model: load a version by alias or number, checksums verified.

Serving and monitoring call `load_model("champion", tracking_uri)`. Each registered version carries
`sha256.<artifact>` tags written at registration; loading downloads the version, refuses pickles,
checks every recorded SHA-256, and only then builds the `CreditModel` from text and JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from coopscore.names import CHALLENGER, CHAMPION, MODEL_NAME
from models import mlflow_io
from models.artifacts import ArtifactIntegrityError, load_verified, read_reference_sample
from models.credit_model import CreditModel, ModelIdentity

if TYPE_CHECKING:
    import pandas as pd

CHECKSUM_TAG_PREFIX: Final = "sha256."
CODE_FILE: Final = "pyfunc_entry.py"

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "MODEL_NAME",
    "ArtifactIntegrityError",
    "UnknownModelError",
    "check_model_name",
    "checksum_tags",
    "load_model",
    "load_model_with_reference",
]


class UnknownModelError(LookupError):
    """No registered model has this name; the message names the ones that exist."""


def check_model_name(tracking_uri: str, model_name: str) -> None:
    """Raise `UnknownModelError` (one line, listing the registered names) unless `model_name` is
    registered: a mistyped --model-name should say so, not "no version 'champion'"."""
    names = mlflow_io.registered_model_names(tracking_uri)
    if model_name not in names:
        known = ", ".join(repr(n) for n in names) if names else "none yet"
        raise UnknownModelError(
            f"no registered model named {model_name!r} in {tracking_uri} (registered: {known})"
        )


def checksum_tags(sha256: dict[str, str]) -> dict[str, str]:
    """Model-version tags recording each artifact's SHA-256."""
    return {f"{CHECKSUM_TAG_PREFIX}{name}": digest for name, digest in sha256.items()}


def _expected(tags: dict[str, str]) -> dict[str, str]:
    return {
        k.removeprefix(CHECKSUM_TAG_PREFIX): v for k, v in tags.items() if k.startswith(CHECKSUM_TAG_PREFIX)
    }


def _load(
    alias_or_version: str | int, tracking_uri: str, model_name: str, *, with_reference: bool
) -> tuple[CreditModel, pd.DataFrame | None]:
    record = mlflow_io.get_version(tracking_uri, model_name, alias_or_version)
    identity = ModelIdentity(
        name=record.name, version=record.version, run_id=record.run_id, aliases=record.aliases
    )
    with mlflow_io.temp_dir("coopscore-model-") as tmp:
        root = mlflow_io.download_version(tracking_uri, model_name, record.version, Path(tmp))
        artifacts = root / "artifacts"
        code = {CODE_FILE: root / CODE_FILE} if (root / CODE_FILE).exists() else {}
        model = load_verified(root, artifacts, _expected(record.tags), identity, code_files=code)
        reference = read_reference_sample(artifacts) if with_reference else None
    return model, reference


def load_model(
    alias_or_version: str | int, tracking_uri: str, *, model_name: str = MODEL_NAME
) -> CreditModel:
    """The registered model by alias ('champion', 'challenger') or version number, verified.

    Raises:
        KeyError: no such alias or version.
        ArtifactIntegrityError: a pickle artifact, or an artifact whose SHA-256 does not match.
    """
    model, _ = _load(alias_or_version, tracking_uri, model_name, with_reference=False)
    return model


def load_model_with_reference(
    alias_or_version: str | int, tracking_uri: str, *, model_name: str = MODEL_NAME
) -> tuple[CreditModel, pd.DataFrame]:
    """`load_model` plus the model's reference sample (a pandas DataFrame) for drift monitoring."""
    model, reference = _load(alias_or_version, tracking_uri, model_name, with_reference=True)
    assert reference is not None
    return model, reference
