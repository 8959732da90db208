"""Checks made before any work starts: can the run write where it will write at the end?

A summary or output path that cannot be written, or a tracking store that cannot be created,
would otherwise fail after training (the summary after the model was registered).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from schemas.errors import ConfigError


def _existing_ancestor(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        if candidate.exists():
            return candidate
    return Path(".")


def check_writable_file(path: str | Path, option: str) -> None:
    """The file can be written (its missing folders created); else a ConfigError naming the option."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise ConfigError(f"{option} '{path}' is a folder: give the path of a file")
    folder = _existing_ancestor(target.parent)
    if not folder.is_dir():
        raise ConfigError(f"cannot write {option} '{path}': '{folder}' is a file, not a folder")
    try:
        # A real probe, not os.access: root passes os.access on read-only mounts.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ff-write-check-"):
            pass
        if target.exists():
            with open(target, "ab"):
                pass
    except OSError as err:
        raise ConfigError(f"cannot write {option} '{path}': {err.strerror or err}; choose another path") from None


def check_tracking_store(uri: str) -> None:
    """A sqlite tracking store can be created or written (sqlite also writes its journal beside the file).
    Other stores are judged by their server when the run starts."""
    if not uri.startswith("sqlite:///"):
        return
    database = Path(uri.removeprefix("sqlite:///"))
    check_writable_file(database, "the tracking store (tracking.uri)")
    if database.exists() and not os.access(database, os.R_OK):
        raise ConfigError(f"cannot read the tracking store '{database}': set tracking.uri")
