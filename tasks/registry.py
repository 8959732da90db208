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

from schemas.config import PROJECT_ROOT
from schemas.errors import ConfigError
from tasks.cache import file_lock


def promotion_lock_path(tracking_uri: str, model_name: str) -> Path:
    """The lock file: beside a sqlite store, else under the project's cache (one host)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name)
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).parent / f".promote-{safe}.lock"
    return PROJECT_ROOT / ".cache" / "locks" / f"promote-{safe}.lock"


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
    client = MlflowClient(tracking_uri, tracking_uri)
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
    client = MlflowClient(tracking_uri, tracking_uri)
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


def model_card(facts: dict) -> str:
    """The version's model card (markdown): what it is, what it was trained on, how it scored, and its limits."""
    from task_types import get_task_type
    from task_types.base import scalar_metrics

    task_type = get_task_type(facts.get("task", "classification")).for_target(facts.get("target") or {})
    headline = task_type.headline
    rows = [(split, m) for split, m in facts["metrics"].items()]
    rows += [(f"{split} ({task_type.baseline_name})", m) for split, m in (facts.get("baseline") or {}).items()]
    metrics = "\n".join(
        f"| {split} | " + " | ".join(f"{scalar_metrics(m).get(k, float('nan')):.4f}" for k in headline) + " |" for split, m in rows
    )
    sizes = ", ".join(f"{name} {n}" for name, n in facts["sizes"].items())
    reasons = "\n".join(f"- {r}" for r in facts["reasons"])
    limits = "\n".join(
        f"- {line}"
        for line in [
            "Only as good as its labels: it learns the training data's biases and label noise.",
            *(
                []
                if task_type.word_level
                else [
                    f"Texts longer than {facts['max_length']} tokens are read in overlapping windows whose outputs are joined (mean of "
                    "logits; max for multi-label): a verdict spread thinly over a long text can be diluted."
                    if facts.get("long_text") == "chunk"
                    else f"Texts longer than {facts['max_length']} tokens are truncated; only their start is read."
                ]
            ),
            "Texts unlike the training data (other domains, languages or slang) may get confident but wrong outputs; "
            "the validation figures above hold for data like the training data only.",
            *task_type.card_limits(),
        ]
    )
    return f"""# {facts["model_name"]} v{facts["version"]}

**Gate:** {"passed" if facts["gate_passed"] else "failed"}{" (promoted to @" + facts["alias"] + ")" if facts["promoted"] else ""}
{reasons}

## Model
- Base model: `{facts["base_model"]}`
- Task type: `{task_type.name}` ({task_type.title})
{task_type.card_section(facts["target"], facts["decision"])}
- Training: {facts["training"]}

## Data
- Source: `{facts["data_source"]}`
- Data fingerprint: `{facts["data_fingerprint"]}`; config fingerprint: `{facts["config_fingerprint"]}`
- Rows: {sizes}
- Code: git `{facts["git_revision"]}`; MLflow run `{facts["run_id"]}`

## Metrics
| split | {" | ".join(headline)} |
|---|{"---|" * len(headline)}
{metrics}
{task_type.card_metrics(facts["metrics"]) if hasattr(task_type, "card_metrics") else ""}
## Intended use
{task_type.title.capitalize()} of texts like those in the training data, with a person or a threshold on the
returned scores deciding what to do with uncertain cases.

## Known limits
{limits}
"""
