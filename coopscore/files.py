"""Private by default: coopscore's data folder is 0700 and the files it writes there 0600.

The data holds members' records and credit decisions, so no other local account may read it. The CLI
sets a process umask of 0o077 (`restrict_new_files`) so every file and folder it, its server and its
workers create is private; the SQLite stores also create their file 0600 themselves (`private_file`),
so a library caller without that umask gets the same, and SQLite gives the -wal/-shm files the mode
of the database file.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Final

PRIVATE_UMASK: Final = 0o077
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600

log = logging.getLogger("coopscore.files")
_told: set[Path] = set()  # paths already tightened in this process: say so once


def restrict_new_files() -> None:
    """Make files this process (and its children) creates readable by its own user only."""
    os.umask(PRIVATE_UMASK)


def _tighten(path: Path, mode: int, kind: str) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & 0o077:
        path.chmod(mode)
        if path not in _told:
            _told.add(path)
            log.warning(
                "%s %s was readable by other users (mode %o); tightened to %o", kind, path, current, mode
            )


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) as a 0700 folder; a looser existing folder is tightened, once with
    a warning (the parents are left as they are)."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _tighten(path, DIR_MODE, "folder")
    return path


def private_file(path: Path) -> Path:
    """Make sure `path` exists as a 0600 file before a store opens it; an existing looser file (and its
    SQLite -wal/-shm companions) is tightened, once with a warning."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
    except FileExistsError:
        for companion in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if companion.exists():
                _tighten(companion, FILE_MODE, "file")
    return path
