"""The model's artifact set on disk: pickle-free files, each with its SHA-256.

booster.txt (LightGBM text), calibration.json, scale.json, policy.json, feature_spec.json and
reference_sample.parquet (feature rows with their PD and score, the baseline for drift monitoring).
Loading refuses any pickle (by name or by content) and any file whose SHA-256 differs from the one
recorded when the model was registered.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from models.credit_model import MODEL_FILES, CreditModel, ModelIdentity

if TYPE_CHECKING:
    import pandas as pd

REFERENCE_SAMPLE_FILE: Final = "reference_sample.parquet"
# Reference-sample columns besides the features (a leading "_" cannot clash with a feature name).
REFERENCE_PD: Final = "_pd"
REFERENCE_SCORE: Final = "_score"
REFERENCE_APPLIED_AT: Final = "_applied_at"
ARTIFACT_FILES: Final = (*MODEL_FILES, REFERENCE_SAMPLE_FILE)
PICKLE_SUFFIXES: Final = frozenset({".pkl", ".pickle", ".joblib", ".cloudpickle", ".dill", ".pt"})
# Pickle protocols 2-5 start with PROTO (0x80) then the protocol number.
_PICKLE_MAGIC: Final = tuple(bytes([0x80, p]) for p in (2, 3, 4, 5))


class ArtifactIntegrityError(RuntimeError):
    """A model artifact is missing, altered, or of a forbidden (pickle) kind."""


@dataclass(frozen=True)
class ArtifactSet:
    """Files of one model, by artifact name, with their SHA-256."""

    directory: Path
    files: dict[str, Path]
    sha256: dict[str, str]


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_artifacts(
    model: CreditModel, directory: Path, reference_sample: pd.DataFrame | None
) -> ArtifactSet:
    """Write the model files and (if given) the reference sample; hash each one."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {p.name: p for p in model.save(directory)}
    if reference_sample is not None:
        path = directory / REFERENCE_SAMPLE_FILE
        reference_sample.to_parquet(path, index=False)
        files[REFERENCE_SAMPLE_FILE] = path
    return ArtifactSet(directory, files, {name: sha256_file(p) for name, p in files.items()})


def is_pickle(path: Path) -> bool:
    """True for a pickle by name (suffix, 'pickle' in the name) or by its first bytes."""
    name = path.name.lower()
    if path.suffix.lower() in PICKLE_SUFFIXES or "pickle" in name:
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(2)
    except OSError:
        return False
    return head in _PICKLE_MAGIC


def refuse_pickles(root: Path) -> None:
    """Raise if any file under `root` is a pickle."""
    found = [p for p in _walk(root) if is_pickle(p)]
    if found:
        names = ", ".join(str(p.relative_to(root)) for p in found)
        raise ArtifactIntegrityError(f"refusing to load a model with pickle artifacts: {names}")


def _walk(root: Path) -> Iterable[Path]:
    for folder, _, names in os.walk(root):
        for name in names:
            yield Path(folder) / name


def verify_checksums(files: Mapping[str, Path], expected: Mapping[str, str]) -> None:
    """Raise unless every expected artifact exists and has the recorded SHA-256."""
    if not expected:
        raise ArtifactIntegrityError("no artifact checksums recorded for this model version")
    for name, digest in sorted(expected.items()):
        path = files.get(name)
        if path is None or not path.is_file():
            raise ArtifactIntegrityError(f"artifact {name!r} is missing")
        actual = sha256_file(path)
        if actual != digest:
            raise ArtifactIntegrityError(
                f"artifact {name!r} has SHA-256 {actual[:12]}..., recorded {digest[:12]}...: refusing it"
            )


def load_verified(
    model_root: Path,
    artifacts_dir: Path,
    expected: Mapping[str, str],
    identity: ModelIdentity | None = None,
    code_files: Mapping[str, Path] | None = None,
) -> CreditModel:
    """Refuse pickles anywhere under `model_root`, verify every recorded checksum, then load.

    `expected` maps artifact names (files in `artifacts_dir`, or names in `code_files`) to SHA-256.
    Every model file must be among them.
    """
    refuse_pickles(model_root)
    unguarded = [name for name in MODEL_FILES if name not in expected]
    if unguarded:
        raise ArtifactIntegrityError(f"no checksum recorded for {unguarded}")
    files = {p.name: p for p in artifacts_dir.iterdir() if p.is_file()} if artifacts_dir.is_dir() else {}
    files.update(code_files or {})
    verify_checksums(files, expected)
    return CreditModel.load(artifacts_dir, identity=identity)


def read_reference_sample(artifacts_dir: Path) -> pd.DataFrame:
    """The reference sample stored with a model (feature rows, PD, score)."""
    import pandas as pd

    return pd.read_parquet(artifacts_dir / REFERENCE_SAMPLE_FILE)
