"""Model signing: an HMAC-SHA256 over the digests of every file a served model is built from.

The `sha256.*` tags in the registry guard against accidents, not against someone who can write the
artifact store and mlflow.db: they can rewrite a file and its tag together. The signature closes
that gap. At promotion (or `coopscore models sign`) the manifest - the SHA-256 of every file of the
logged model (booster, calibration, scale, spec, policy, reference sample, code, MLmodel) and of the
model card, plus the model name and version - is signed with a key that is never stored with the
model (`COOPSCORE_MODEL_SIGNING_KEY` or `..._KEY_FILE`). Whoever loads the model recomputes every
digest from the bytes it downloaded, rebuilds the manifest and checks the HMAC; the digest tags are
never trusted. The signature and its key id sit in version tags: rewriting them needs the key.

Key rotation: a signature names its key id (first 8 hex of SHA-256(key)), so keys listed in
`COOPSCORE_MODEL_SIGNING_OLD_KEYS` still verify old signatures while the new key signs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from models.artifacts import ArtifactIntegrityError, sha256_file

if TYPE_CHECKING:
    from coopscore.settings import Settings

SIGNATURE_TAG: Final = "signature.hmac_sha256"
KEY_ID_TAG: Final = "signature.key_id"
SIGNED_AT_TAG: Final = "signature.signed_at"
# The manifest as signed, kept for diagnostics only (which file changed); verification never reads
# digests from it.
MANIFEST_TAG: Final = "signature.manifest"
MANIFEST_DIGEST_TAG: Final = "signature.manifest_sha256"
MANIFEST_FORMAT: Final = "coopscore-model-manifest/1"
# The model card is a run artifact beside the logged model; in the manifest it is this path.
MODEL_CARD_FILE: Final = "model_card.md"
CARD_MANIFEST_PATH: Final = f"run/{MODEL_CARD_FILE}"
# MLflow itself writes this (model name and version) into a local artifact store whenever something
# loads `models:/NAME/VERSION` (e.g. `mlflow models serve`); nothing that scores or monitors reads it.
UNSIGNED_FILES: Final = frozenset({"registered_model_meta"})
MIN_KEY_LENGTH: Final = 32
UNSIGNED_RISK: Final = (
    "anyone who can write the artifact store and mlflow.db can swap the model and its checksum tags"
)

log = logging.getLogger("coopscore.models.signing")


class SignatureError(ArtifactIntegrityError):
    """A model's signature is missing where one is required, made with an unknown key, or does not
    match the bytes of its artifacts."""


def key_id(secret: bytes) -> str:
    """The public name of a key: the first 8 hex digits of its SHA-256 (safe to log and tag)."""
    return hashlib.sha256(secret).hexdigest()[:8]


@dataclass(frozen=True)
class SigningKey:
    """One HMAC key and its id; the secret never appears in repr or logs."""

    secret: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        """First 8 hex of SHA-256(secret)."""
        return key_id(self.secret)

    @classmethod
    def from_text(cls, text: str, *, source: str) -> SigningKey:
        """A key from its text form (surrounding whitespace dropped); refuses short keys."""
        secret = text.strip()
        if len(secret) < MIN_KEY_LENGTH:
            raise ValueError(f"{source}: a model signing key needs at least {MIN_KEY_LENGTH} characters")
        return cls(secret.encode("utf-8"))


@dataclass(frozen=True)
class Keyring:
    """The key that signs (the current one) and every key that may verify (current + old ones).

    `required`: refuse unsigned models (a key is configured, or the environment is production).
    """

    current: SigningKey | None = None
    old: tuple[SigningKey, ...] = ()
    required: bool = False

    @property
    def verifying(self) -> tuple[SigningKey, ...]:
        """Every key a signature may have been made with."""
        return ((self.current,) if self.current else ()) + self.old

    def find(self, wanted: str) -> SigningKey | None:
        """The configured key with this id, or None."""
        return next((k for k in self.verifying if k.key_id == wanted), None)

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        """The keys from `COOPSCORE_MODEL_SIGNING_KEY` (or `..._KEY_FILE`) and `..._OLD_KEYS`.

        Raises:
            ValueError: a key file that cannot be read, or a key shorter than 32 characters.
        """
        current: SigningKey | None = None
        if settings.model_signing_key is not None:
            current = SigningKey.from_text(
                settings.model_signing_key.get_secret_value(), source="COOPSCORE_MODEL_SIGNING_KEY"
            )
        elif settings.model_signing_key_file is not None:
            path = settings.model_signing_key_file
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as error:
                raise ValueError(f"COOPSCORE_MODEL_SIGNING_KEY_FILE={path}: {error.strerror}") from error
            current = SigningKey.from_text(text, source=f"COOPSCORE_MODEL_SIGNING_KEY_FILE={path}")
        old = tuple(
            SigningKey.from_text(k.get_secret_value(), source="COOPSCORE_MODEL_SIGNING_OLD_KEYS")
            for k in settings.model_signing_old_keys
        )
        required = current is not None or bool(old) or settings.environment == "production"
        return cls(current, old, required)


def build_manifest(model_name: str, version: str, digests: Mapping[str, str]) -> dict[str, Any]:
    """The signed statement: model name, version and {artifact path: SHA-256}, sorted."""
    return {
        "format": MANIFEST_FORMAT,
        "model_name": model_name,
        "version": str(version),
        "artifacts": {path: digests[path] for path in sorted(digests)},
    }


def canonical(manifest: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical manifest: one digest naming exactly these model bytes."""
    return hashlib.sha256(canonical(manifest)).hexdigest()


def hmac_hex(manifest: Mapping[str, Any], key: SigningKey) -> str:
    """HMAC-SHA256(key, canonical manifest), hex."""
    return hmac.new(key.secret, canonical(manifest), hashlib.sha256).hexdigest()


def digest_files(model_root: Path, card: Path | None) -> dict[str, str]:
    """{path relative to the logged model folder: SHA-256} for every file under `model_root` (but
    MLflow's own `registered_model_meta`), plus the model card (as `run/model_card.md`) when there
    is one. Digests come from the bytes."""
    digests = {
        path.relative_to(model_root).as_posix(): sha256_file(path)
        for path in sorted(model_root.rglob("*"))
        if path.is_file() and path.relative_to(model_root).as_posix() not in UNSIGNED_FILES
    }
    if card is not None:
        digests[CARD_MANIFEST_PATH] = sha256_file(card)
    return digests


def signature_tags(manifest: Mapping[str, Any], key: SigningKey, signed_at: str) -> dict[str, str]:
    """The version tags that carry a signature."""
    return {
        SIGNATURE_TAG: hmac_hex(manifest, key),
        KEY_ID_TAG: key.key_id,
        SIGNED_AT_TAG: signed_at,
        MANIFEST_DIGEST_TAG: manifest_digest(manifest),
        MANIFEST_TAG: json.dumps(manifest["artifacts"], sort_keys=True, separators=(",", ":"))[:5000],
    }


@dataclass(frozen=True)
class SignatureCheck:
    """What verification found: whether the model is signed and verified, with which key, and the
    digest of the manifest rebuilt from its bytes (what a decision can record as the model's id)."""

    signed: bool
    key_id: str | None
    manifest_sha256: str
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "signed": self.signed,
            "key_id": self.key_id,
            "manifest_sha256": self.manifest_sha256,
            "note": self.note,
        }


def _changed(manifest: Mapping[str, Any], tags: Mapping[str, str]) -> str:
    """Which paths differ from the manifest recorded at signing (a hint: that record is unsigned)."""
    try:
        recorded = json.loads(tags.get(MANIFEST_TAG, ""))
    except ValueError:
        return ""
    if not isinstance(recorded, dict):
        return ""
    actual: dict[str, str] = manifest["artifacts"]
    paths = sorted(p for p in set(recorded) | set(actual) if recorded.get(p) != actual.get(p))
    return f" (differs from the manifest recorded at signing: {', '.join(paths)})" if paths else ""


def verify(manifest: Mapping[str, Any], tags: Mapping[str, str], keyring: Keyring) -> SignatureCheck:
    """Check the version's signature against `manifest` (rebuilt from the artifacts' bytes).

    Raises:
        SignatureError: unsigned while a signature is required; signed with a key not configured
            (naming its id); or an HMAC that does not match the bytes.
    """
    digest = manifest_digest(manifest)
    label = f"{manifest['model_name']} v{manifest['version']}"
    signature, signer = tags.get(SIGNATURE_TAG), tags.get(KEY_ID_TAG)
    if not signature or not signer:
        if keyring.required:
            raise SignatureError(
                f"{label} is not signed and a signature is required: sign it with "
                f"`coopscore models sign --version {manifest['version']}`"
            )
        note = f"{label} is unsigned and no signing key is configured: {UNSIGNED_RISK}"
        log.warning("%s", note)
        return SignatureCheck(False, None, digest, note)
    key = keyring.find(signer)
    if key is None:
        if not keyring.verifying:
            note = (
                f"{label} is signed with key {signer}, but no key is configured to verify it: {UNSIGNED_RISK}"
            )
            log.warning("%s", note)
            return SignatureCheck(False, signer, digest, note)
        known = ", ".join(k.key_id for k in keyring.verifying)
        raise SignatureError(
            f"{label} is signed with key {signer}, which is not configured (configured: {known}): refusing it"
        )
    if not hmac.compare_digest(hmac_hex(manifest, key), signature):
        changed = _changed(manifest, tags)
        raise SignatureError(
            f"{label}: the signature (key {signer}) does not match the artifacts' bytes{changed}: refusing it"
        )
    return SignatureCheck(True, signer, digest)
