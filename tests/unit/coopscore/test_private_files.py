"""What the real `coopscore` command writes is private: folders 0700, files 0600, whatever the shell's
umask; a data folder left readable by an older release is tightened, and the command says so once."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from coopscore.files import private_dir, private_file


def _coopscore() -> list[str]:
    script = Path(sys.executable).with_name("coopscore")
    return [str(script)] if script.exists() else [sys.executable, "-m", "coopscore"]


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COOPSCORE_")}
    env.update(
        {
            "COOPSCORE_DATA_DIR": str(root / "data"),
            "COOPSCORE_TRACKING_URI": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
            "COOPSCORE_ARTIFACT_ROOT": str(root / "mlruns" / "artifacts"),
        }
    )
    # The shell's umask is the permissive default: the command itself must narrow it.
    done = subprocess.run(
        [*_coopscore(), *args],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert done.returncode == 0, f"coopscore {' '.join(args)}: {done.returncode}\n{done.stderr[-2000:]}"
    return done


def _modes(folder: Path) -> dict[str, int]:
    found = {str(folder): stat.S_IMODE(folder.stat().st_mode)}
    for path in folder.rglob("*"):
        found[str(path)] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_the_cli_writes_a_private_data_folder_and_mlflow_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)  # a data folder from before this release, readable by every local account
    _run(tmp_path, "simulate", "--members", "300", "--months", "6", "--seed", "1", "--out", "world", "--json")
    ingest = _run(tmp_path, "ingest", "world", "--json")
    assert f"folder {data} was readable by other users (mode 755); tightened to 700" in ingest.stderr
    _run(tmp_path, "features", "materialize", "--as-of", "2024-07-01T00:00:00Z", "--json")
    again = _run(tmp_path, "ingest", "world", "--json")
    assert "tightened" not in again.stderr  # nothing loose left to say
    _run(tmp_path, "models", "list", "--json")

    modes = {**_modes(data), **_modes(tmp_path / "mlruns")}
    for name in ("ledger.sqlite", "online/features.sqlite", "events", "quarantine", "index"):
        assert str(data / name) in modes, name
    assert str(tmp_path / "mlruns" / "mlflow.db") in modes
    assert sum(name.endswith(".parquet") for name in modes) > 10
    loose = {
        name: oct(mode) for name, mode in modes.items() if mode != (0o700 if Path(name).is_dir() else 0o600)
    }
    assert loose == {}


def test_private_helpers_create_and_tighten(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        folder = private_dir(tmp_path / "a" / "b")
        database = private_file(folder / "x.sqlite")
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    database.write_bytes(b"kept")
    database.chmod(0o644)
    wal = folder / "x.sqlite-wal"
    wal.write_bytes(b"")
    wal.chmod(0o644)
    private_file(database)
    assert database.read_bytes() == b"kept"  # an existing store is never truncated
    assert stat.S_IMODE(database.stat().st_mode) == 0o600 and stat.S_IMODE(wal.stat().st_mode) == 0o600
