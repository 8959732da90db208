"""Content-addressed step outputs: fingerprints, atomic publish, verified re-use.

A step's output lives in `<cache>/<step>/<key>/` where key fingerprints
everything that determines the output. A folder is published by renaming a
finished temporary folder, so readers never see half an entry, and its
manifest records a sha256 per file so a damaged entry is rebuilt, never loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
log = logging.getLogger(__name__)


def fingerprint(*parts: Any) -> str:
    """Stable short hash of JSON-able parts."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(root: Path, names: list[str] | None = None) -> str:
    """Hash of the files under root (or only those named), by relative path and content."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if names is None else [root / n for n in names if (root / n).is_file()]
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def model_fingerprint(path: str, files: list[str] | None = None) -> str:
    """Hash of a local model folder's files (or of the hub name when it is not local)."""
    folder = Path(path)
    return tree_sha256(folder, files) if folder.is_dir() else fingerprint("hub", path)


def _file_table(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


@dataclass(frozen=True)
class Entry:
    """A published cache entry: its folder, key and the step's own metadata."""

    path: Path
    key: str
    meta: dict
    reused: bool


class StepCache:
    """One step's entry in the cache for one key."""

    def __init__(self, root: Path, step: str, key: str):
        self.root = Path(root)
        self.step = step
        self.key = key
        self.path = self.root / step / key

    def load(self) -> Entry | None:
        """The entry if it is complete and every file matches its checksum, else None."""
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            return None
        try:
            recorded = json.loads(manifest.read_text())
            ok = recorded["files"] == _file_table(self.path)
        except (OSError, ValueError, KeyError) as err:
            ok, recorded = False, {"error": str(err)}
        if not ok:
            log.warning("cache entry %s is damaged (checksum mismatch); rebuilding it", self.path)
            self.discard()
            return None
        return Entry(self.path, self.key, recorded.get("meta", {}), reused=True)

    def discard(self) -> None:
        if self.path.exists():
            trash = self.path.with_name(f".trash-{self.key}-{uuid.uuid4().hex[:8]}")
            os.replace(self.path, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def build(self, make: Callable[[Path], dict], refresh: bool = False) -> Entry:
        """Re-use a valid entry, or run `make(tmp_dir) -> meta` and publish its folder atomically.

        A lock per key makes concurrent runs of the same step wait for one build and re-use it.
        """
        with file_lock(self.root / self.step / f".{self.key}.lock"):
            if refresh:
                self.discard()
            elif (entry := self.load()) is not None:
                return entry
            # Holding the lock, any temporary folder of this key is a leftover of a killed build.
            for stale in self.path.parent.glob(f".tmp-{self.key}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = self.path.with_name(f".tmp-{self.key}-{uuid.uuid4().hex[:8]}")
            tmp.mkdir()
            try:
                meta = make(tmp)
                manifest = {"step": self.step, "key": self.key, "meta": meta, "files": _file_table(tmp)}
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
                os.rename(tmp, self.path)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return Entry(self.path, self.key, meta, reused=False)


def build_step(cache, step: str, key: str, make: Callable[[Path], dict]) -> Entry:
    """A step's output under the cache config: re-used when complete and intact, else built by make(folder) and published."""
    return StepCache(cache.resolved_dir(), step, key).build(make, refresh=cache.refresh)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock held for the block (released by the OS if the process dies)."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


def cache_report(root: Path) -> list[tuple[str, int, int]]:
    """(step, entries, bytes) for each step folder under the cache root."""
    rows = []
    for step in sorted(p for p in Path(root).iterdir() if p.is_dir()) if Path(root).exists() else []:
        entries = [e for e in step.iterdir() if e.is_dir() and not e.name.startswith(".")]
        size = sum(f.stat().st_size for f in step.rglob("*") if f.is_file())
        rows.append((step.name, len(entries), size))
    return rows


def main() -> None:
    """`python -m tasks.runtime.cache`: print the size of each step's cache."""
    from schemas.config import CacheConfig

    root = CacheConfig().resolved_dir()
    rows = cache_report(root)
    print(f"cache at {root}")
    for step, entries, size in rows:
        print(f"  {step:<12} {entries:>4} entries  {size / 1e6:10.1f} MB")
    print(f"  {'total':<12} {sum(r[1] for r in rows):>4} entries  {sum(r[2] for r in rows) / 1e6:10.1f} MB")


if __name__ == "__main__":
    main()
