"""Alias moves in the MLflow registry, shared by the flow's gate and the manual promote/rollback command.

Every move happens under one lock per registered model, so two flows (or a flow and
a person) cannot both read the same champion and both move the alias. Each move
records who, why and when as tags on the version it lands on, and which version it
replaced, which is what a rollback follows.
"""

from __future__ import annotations

import contextlib
import getpass
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from schemas.config import CacheConfig
from schemas.errors import ConfigError
from tasks.runtime.cache import file_lock
from tasks.runtime.tracking import tracking_client


def promotion_lock_path(tracking_uri: str, model_name: str) -> Path:
    """The lock file: beside a sqlite store, else under the project's cache (one host)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name)
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).parent / f".promote-{safe}.lock"
    return CacheConfig().resolved_dir() / "locks" / f"promote-{safe}.lock"


@contextlib.contextmanager
def promotion_lock(tracking_uri: str, model_name: str) -> Iterator[None]:
    """Held from reading the champion to moving the alias."""
    with file_lock(promotion_lock_path(tracking_uri, model_name)):
        yield


def current_version(client: MlflowClient, name: str, alias: str):
    """The version the alias points at, or None."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def whoami() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def move_alias(client: MlflowClient, name: str, alias: str, version: int | str, who: str, why: str, replaces: bool = True) -> str | None:
    """Point alias at version, tagging it with who/why/when; returns the version it pointed at before.

    Call under promotion_lock. With replaces=False (a rollback) the version keeps the
    `replaced_version` it had, so a second rollback goes further back.
    """
    before = current_version(client, name, alias)
    previous = str(before.version) if before is not None else None
    tags = {f"{alias}_promoted_by": who, f"{alias}_promoted_why": why, f"{alias}_promoted_at": _now()}
    if replaces:
        tags[f"{alias}_replaced_version"] = previous or ""
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    # The alias moves last: a failure above leaves the old version in place.
    try:
        client.set_registered_model_alias(name, alias, str(version))
    except Exception:
        # No version tagged as promoted without its alias: take the tags back (a retry sets them again).
        for key in tags:
            with contextlib.suppress(MlflowException):
                client.delete_model_version_tag(name, str(version), key)
        raise
    return previous


def promote(tracking_uri: str, name: str, alias: str, version: int | str, who: str, why: str) -> str | None:
    """Move alias to an existing version by hand; returns the version it replaced."""
    if not why.strip():
        raise ConfigError("say why: --why 'reason' is recorded on the version")
    client = tracking_client(tracking_uri)
    try:
        client.get_model_version(name, str(version))
    except MlflowException:
        raise ConfigError(f"model '{name}' has no version {version} in {tracking_uri}") from None
    with promotion_lock(tracking_uri, name):
        return move_alias(client, name, alias, version, who, f"manual: {why}")


def rollback(tracking_uri: str, name: str, alias: str, who: str, why: str) -> tuple[str, str]:
    """Move alias back to the version the current one replaced; returns (from, to)."""
    if not why.strip():
        raise ConfigError("say why: --why 'reason' is recorded on both versions")
    client = tracking_client(tracking_uri)
    with promotion_lock(tracking_uri, name):
        current = current_version(client, name, alias)
        if current is None:
            raise ConfigError(f"model '{name}' has no @{alias} to roll back")
        target = current.tags.get(f"{alias}_replaced_version", "")
        if not target:
            raise ConfigError(f"@{alias} (v{current.version}) replaced no earlier version; use promote --version N instead")
        for key, value in {f"{alias}_rolled_back_by": who, f"{alias}_rolled_back_why": why, f"{alias}_rolled_back_at": _now()}.items():
            client.set_model_version_tag(name, str(current.version), key, value)
        move_alias(client, name, alias, target, who, f"rollback from v{current.version}: {why}", replaces=False)
    return str(current.version), target
