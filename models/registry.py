"""Registry I/O for the credit model: load a version by alias or number, checksums verified.

Serving and monitoring call `load_version("champion", tracking_uri, keyring=...)`. Each registered
version carries `sha256.<artifact>` tags written at registration and, once promoted, a signature
(`models.signing`); loading downloads the version, refuses pickles, checks the signature over
digests recomputed from the bytes, checks every recorded SHA-256, and only then builds the
`CreditModel` from text and JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from coopscore.names import CHALLENGER, CHAMPION, MODEL_NAME
from models import mlflow_io
from models.artifacts import ArtifactIntegrityError, load_verified, read_reference_sample, refuse_pickles
from models.credit_model import CreditModel, ModelIdentity
from models.signing import (
    MODEL_CARD_FILE,
    Keyring,
    SignatureCheck,
    SignatureError,
    SigningKey,
    build_manifest,
    digest_files,
    manifest_digest,
    signature_tags,
    verify,
)

if TYPE_CHECKING:
    import pandas as pd

CHECKSUM_TAG_PREFIX: Final = "sha256."
CODE_FILE: Final = "pyfunc_entry.py"

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "MODEL_NAME",
    "ArtifactIntegrityError",
    "Keyring",
    "LoadedVersion",
    "SignatureError",
    "UnknownModelError",
    "check_model_name",
    "checksum_tags",
    "load_model",
    "load_model_with_reference",
    "load_version",
    "sign_version",
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
            f"no registered model named {model_name!r} in {mlflow_io.shown_uri(tracking_uri)} "
            f"(registered: {known})"
        )


def checksum_tags(sha256: dict[str, str]) -> dict[str, str]:
    """Model-version tags recording each artifact's SHA-256."""
    return {f"{CHECKSUM_TAG_PREFIX}{name}": digest for name, digest in sha256.items()}


def _expected(tags: dict[str, str]) -> dict[str, str]:
    return {
        k.removeprefix(CHECKSUM_TAG_PREFIX): v for k, v in tags.items() if k.startswith(CHECKSUM_TAG_PREFIX)
    }


@dataclass(frozen=True)
class LoadedVersion:
    """A verified model version: the model, and what was read with it from the same checked bytes."""

    model: CreditModel
    reference: pd.DataFrame | None
    model_card: str | None
    # None when no keyring was given (signature not checked, e.g. the promotion gates' own loads).
    signature: SignatureCheck | None


def _download_card(tracking_uri: str, run_id: str, dst: Path) -> Path | None:
    """The run's model card, or None when the run has none."""
    if not run_id:
        return None
    dst.mkdir(parents=True, exist_ok=True)
    try:
        return mlflow_io.download_run_artifact(tracking_uri, run_id, MODEL_CARD_FILE, dst)
    except Exception:  # MLflow raises its own (OSError, MlflowException) for a missing artifact
        return None


def load_version(
    alias_or_version: str | int,
    tracking_uri: str,
    *,
    model_name: str = MODEL_NAME,
    keyring: Keyring | None = None,
    with_reference: bool = False,
    with_card: bool = False,
) -> LoadedVersion:
    """Download a version, refuse pickles, check the checksum tags and (with `keyring`) the
    signature over digests recomputed from the downloaded bytes; then build the model.

    Raises:
        KeyError: no such alias or version.
        ArtifactIntegrityError: a pickle, a missing or altered artifact, or (`SignatureError`) a
            signature that is missing where required, made with an unknown key, or wrong.
    """
    record = mlflow_io.get_version(tracking_uri, model_name, alias_or_version)
    identity = ModelIdentity(
        name=record.name, version=record.version, run_id=record.run_id, aliases=record.aliases
    )
    with mlflow_io.temp_dir("coopscore-model-") as tmp:
        root = mlflow_io.download_version(tracking_uri, model_name, record.version, Path(tmp) / "model")
        card_path = None
        if keyring is not None or with_card:
            card_path = _download_card(tracking_uri, record.run_id, Path(tmp) / "run")
        check = None
        if keyring is not None:
            refuse_pickles(root)
            manifest = build_manifest(record.name, record.version, digest_files(root, card_path))
            check = verify(manifest, record.tags, keyring)
        artifacts = root / "artifacts"
        code = {CODE_FILE: root / CODE_FILE} if (root / CODE_FILE).exists() else {}
        model = load_verified(root, artifacts, _expected(record.tags), identity, code_files=code)
        reference = read_reference_sample(artifacts) if with_reference else None
        card = card_path.read_text(encoding="utf-8") if with_card and card_path is not None else None
    return LoadedVersion(model, reference, card, check)


def sign_version(
    tracking_uri: str, model_name: str, version: str, key: SigningKey, *, signed_at: str
) -> SignatureCheck:
    """Sign a version: verify its checksum tags against the downloaded bytes (never sign a file
    that already differs from what training recorded), then write the signature tags.

    Raises:
        KeyError: no such version.
        ArtifactIntegrityError: an artifact that does not match its checksum tag, or a pickle.
    """
    record = mlflow_io.get_version(tracking_uri, model_name, version)
    with mlflow_io.temp_dir("coopscore-sign-") as tmp:
        root = mlflow_io.download_version(tracking_uri, model_name, record.version, Path(tmp) / "model")
        card_path = _download_card(tracking_uri, record.run_id, Path(tmp) / "run")
        refuse_pickles(root)
        code = {CODE_FILE: root / CODE_FILE} if (root / CODE_FILE).exists() else {}
        load_verified(root, root / "artifacts", _expected(record.tags), code_files=code)
        manifest = build_manifest(record.name, record.version, digest_files(root, card_path))
    tags = signature_tags(manifest, key, signed_at)
    mlflow_io.set_version_tags(tracking_uri, model_name, record.version, tags)
    return SignatureCheck(True, key.key_id, manifest_digest(manifest))


def load_model(
    alias_or_version: str | int, tracking_uri: str, *, model_name: str = MODEL_NAME
) -> CreditModel:
    """The registered model by alias ('champion', 'challenger') or version number, verified.

    Raises:
        KeyError: no such alias or version.
        ArtifactIntegrityError: a pickle artifact, or an artifact whose SHA-256 does not match.
    """
    return load_version(alias_or_version, tracking_uri, model_name=model_name).model


def load_model_with_reference(
    alias_or_version: str | int,
    tracking_uri: str,
    *,
    model_name: str = MODEL_NAME,
    keyring: Keyring | None = None,
) -> tuple[CreditModel, pd.DataFrame]:
    """`load_model` plus the model's reference sample (a pandas DataFrame) for drift monitoring;
    with `keyring`, the sample is also checked against the signed manifest."""
    loaded = load_version(
        alias_or_version, tracking_uri, model_name=model_name, keyring=keyring, with_reference=True
    )
    assert loaded.reference is not None
    return loaded.model, loaded.reference
