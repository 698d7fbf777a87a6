"""Model signing on a real registered version: the signature covers the bytes of every artifact and
the model card, so rewriting a file together with its checksum tag (what the tags alone let pass) is
refused; rotation keeps old signatures verifiable; unsigned models load only in development."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
from pydantic import ValidationError

from coopscore.settings import Settings
from models import mlflow_io
from models.artifacts import ArtifactIntegrityError, sha256_file
from models.registry import CHAMPION, MODEL_NAME, load_version, sign_version
from models.signing import (
    KEY_ID_TAG,
    SIGNATURE_TAG,
    Keyring,
    SignatureError,
    SigningKey,
    build_manifest,
    hmac_hex,
    key_id,
    verify,
)
from tests.utils.model_fixtures import SMALL_PROMOTABLE_SOURCE, fast_config
from training.job import ExitCode, retrain

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

OLD = SigningKey(b"o" * 40)
NEW = SigningKey(b"n" * 40)
DIGESTS = {"artifacts/booster.txt": "a" * 64, "run/model_card.md": "b" * 64}


def test_the_signature_names_its_key_and_covers_name_version_and_every_digest() -> None:
    manifest = build_manifest(MODEL_NAME, "3", DIGESTS)
    tags = {SIGNATURE_TAG: hmac_hex(manifest, NEW), KEY_ID_TAG: NEW.key_id}
    check = verify(manifest, tags, Keyring(NEW, required=True))
    assert check.signed and check.key_id == key_id(b"n" * 40) == NEW.key_id and len(NEW.key_id) == 8
    for changed in (
        build_manifest(MODEL_NAME, "4", DIGESTS),
        build_manifest("other", "3", DIGESTS),
        build_manifest(MODEL_NAME, "3", {**DIGESTS, "artifacts/booster.txt": "c" * 64}),
        build_manifest(MODEL_NAME, "3", {**DIGESTS, "artifacts/extra.json": "d" * 64}),
    ):
        with pytest.raises(SignatureError, match="does not match"):
            verify(changed, tags, Keyring(NEW, required=True))


def test_a_key_not_configured_is_refused_by_id_and_old_keys_still_verify() -> None:
    manifest = build_manifest(MODEL_NAME, "3", DIGESTS)
    signed_old = {SIGNATURE_TAG: hmac_hex(manifest, OLD), KEY_ID_TAG: OLD.key_id}
    with pytest.raises(SignatureError, match=f"signed with key {OLD.key_id}, which is not configured"):
        verify(manifest, signed_old, Keyring(NEW, required=True))
    rotated = Keyring(NEW, old=(OLD,), required=True)
    assert verify(manifest, signed_old, rotated).key_id == OLD.key_id
    forged = {SIGNATURE_TAG: hmac_hex(manifest, NEW), KEY_ID_TAG: OLD.key_id}  # id claimed, key differs
    with pytest.raises(SignatureError, match="does not match"):
        verify(manifest, forged, rotated)


def test_unsigned_loads_with_a_warning_only_when_no_key_is_configured() -> None:
    manifest = build_manifest(MODEL_NAME, "3", DIGESTS)
    check = verify(manifest, {}, Keyring())
    assert not check.signed and check.note and "can swap the model" in check.note
    with pytest.raises(SignatureError, match=r"not signed.*coopscore models sign --version 3"):
        verify(manifest, {}, Keyring(NEW, required=True))
    with pytest.raises(SignatureError, match="not signed"):
        verify(manifest, {}, Keyring(required=True))  # production without a key to hand


def test_settings_production_needs_a_key_and_keys_come_from_env_or_file(tmp_path: Path) -> None:
    api = {"api_keys": [{"name": "a", "sha256": "0" * 64, "scopes": ["read"]}]}
    with pytest.raises(ValidationError, match="COOPSCORE_MODEL_SIGNING_KEY"):
        Settings(_env_file=None, environment="production", **api)  # type: ignore[call-arg, arg-type]
    key_file = tmp_path / "signing.key"
    key_file.write_text("k" * 40 + "\n", encoding="utf-8")
    production = Settings(  # type: ignore[call-arg]
        _env_file=None, environment="production", model_signing_key_file=key_file, **api
    )
    keyring = Keyring.from_settings(production)
    assert keyring.required and keyring.current == SigningKey(b"k" * 40)
    development = Settings(_env_file=None)  # type: ignore[call-arg]
    assert Keyring.from_settings(development) == Keyring()
    rotated = Settings(  # type: ignore[call-arg]
        _env_file=None, model_signing_key="n" * 40, model_signing_old_keys=["o" * 40]
    )
    assert Keyring.from_settings(rotated) == Keyring(NEW, (OLD,), True)
    with pytest.raises(ValueError, match="at least 32 characters"):
        Keyring.from_settings(Settings(_env_file=None, model_signing_key="short"))  # type: ignore[call-arg]
    missing = Settings(_env_file=None, model_signing_key_file=tmp_path / "nope")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"KEY_FILE=.*nope"):
        Keyring.from_settings(missing)


@dataclass(frozen=True)
class Registered:
    uri: str
    model_dir: Path  # the logged model's folder in the artifact store


@pytest.fixture
def registered(tmp_path: Path) -> Registered:
    """A champion (trained without a key: unsigned) in its own store, free to tamper with."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = retrain(
        SMALL_PROMOTABLE_SOURCE,
        config=fast_config(),
        tracking_uri=uri,
        artifact_root=tmp_path / "artifacts",
        model_name=MODEL_NAME,
    )
    assert summary.exit_code == ExitCode.PROMOTED, summary.to_dict()
    location = mlflow_io.version_artifact_location(uri, MODEL_NAME, "1")
    return Registered(uri, Path(urlparse(location).path))


def rewrite_booster_and_its_tag(registered: Registered) -> None:
    """What the checksum tags alone cannot stop: change the booster and record its new SHA-256."""
    booster = registered.model_dir / "artifacts" / "booster.txt"
    text = booster.read_text(encoding="utf-8")
    booster.write_text(text.replace("learning_rate", "learning_rate ", 1) + "\n", encoding="utf-8")
    mlflow_io.set_version_tags(registered.uri, MODEL_NAME, "1", {"sha256.booster.txt": sha256_file(booster)})


def test_a_signed_version_verifies_from_its_bytes_and_a_rewritten_booster_and_tag_is_refused(
    registered: Registered,
) -> None:
    unsigned = load_version(CHAMPION, registered.uri, keyring=Keyring()).signature
    assert unsigned is not None and not unsigned.signed and unsigned.note
    signed = sign_version(registered.uri, MODEL_NAME, "1", NEW, signed_at="2026-12-03T00:00:00+00:00")
    loaded = load_version(CHAMPION, registered.uri, keyring=Keyring(NEW, required=True), with_card=True)
    assert loaded.signature is not None and loaded.signature.signed
    assert loaded.signature.manifest_sha256 == signed.manifest_sha256
    assert loaded.model_card and "v1" in loaded.model_card
    tags = mlflow_io.get_version(registered.uri, MODEL_NAME, "1").tags
    signed_paths = set(json.loads(tags["signature.manifest"]))
    assert {
        "artifacts/booster.txt",
        "artifacts/reference_sample.parquet",
        "run/model_card.md",
    } <= signed_paths

    rewrite_booster_and_its_tag(registered)
    load_version(CHAMPION, registered.uri)  # the checksum tags alone let it through
    with pytest.raises(SignatureError, match=r"does not match.*artifacts/booster.txt"):
        load_version(CHAMPION, registered.uri, keyring=Keyring(NEW, required=True))


def test_a_rewritten_model_card_is_refused_and_an_altered_version_is_never_signed(
    registered: Registered,
) -> None:
    sign_version(registered.uri, MODEL_NAME, "1", NEW, signed_at="2026-12-03T00:00:00+00:00")
    run_id = mlflow_io.get_version(registered.uri, MODEL_NAME, "1").run_id
    card = Path(urlparse(mlflow_io.client(registered.uri).get_run(run_id).info.artifact_uri).path)
    (card / "model_card.md").write_text("# A card someone else wrote\n", encoding="utf-8")
    with pytest.raises(SignatureError, match=r"run/model_card\.md"):
        load_version(CHAMPION, registered.uri, keyring=Keyring(NEW, required=True))

    booster = registered.model_dir / "artifacts" / "booster.txt"
    booster.write_text(booster.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    with pytest.raises(ArtifactIntegrityError, match=r"booster\.txt"):
        sign_version(registered.uri, MODEL_NAME, "1", NEW, signed_at="2026-12-03T00:00:00+00:00")


def test_the_meta_file_mlflow_writes_when_loading_models_uri_does_not_break_the_signature(
    registered: Registered,
) -> None:
    sign_version(registered.uri, MODEL_NAME, "1", NEW, signed_at="2026-12-03T00:00:00+00:00")
    # What `mlflow models serve -m models:/NAME/1` leaves in a local artifact store.
    (registered.model_dir / "registered_model_meta").write_text(
        "model_name: coopscore-pd\nmodel_version: '1'\n", encoding="utf-8"
    )
    loaded = load_version(CHAMPION, registered.uri, keyring=Keyring(NEW, required=True))
    assert loaded.signature is not None and loaded.signature.signed
    (registered.model_dir / "extra.json").write_text("{}", encoding="utf-8")  # any other file counts
    with pytest.raises(SignatureError, match=r"extra\.json"):
        load_version(CHAMPION, registered.uri, keyring=Keyring(NEW, required=True))
