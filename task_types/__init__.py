"""Task types: what differs between classification, multi-label, regression, token classification and the rest, behind
one protocol (base.py).

The flow and its steps are generic; each step asks the run's task type for the part that depends on the shape of
its inputs and outputs. Adding a task type is one module (or package) and one entry in TASK_TYPES: its name, its
options, its quarantine reasons and its formats reach the config, --help and the data contracts from here.
"""

from __future__ import annotations

from schemas.data import CLEAN_REASONS, INGEST_REASONS
from task_types.base import TaskType
from task_types.classification import Classification
from task_types.multi_label import MultiLabel
from task_types.question_answering import QuestionAnswering
from task_types.regression import Regression
from task_types.token_classification import TokenClassification

TASK_TYPES: dict[str, TaskType] = {
    t.name: t for t in (Classification(), MultiLabel(), Regression(), TokenClassification(), QuestionAnswering())
}

# Quarantine reasons any row can get, whatever its type: ingest's and the clean step's own checks.
GENERIC_REASONS = INGEST_REASONS + CLEAN_REASONS


def get_task_type(name: str) -> TaskType:
    """The task type registered under name (the config's `task`)."""
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown task '{name}': choose one of {sorted(TASK_TYPES)}") from None


def best_epoch_metric(task: str, compare_on: str | None, spec: dict | None = None) -> str:
    """The metric that picks the best epoch: registry.compare_on when training evaluation computes it, else the type's default."""
    task_type = get_task_type(task).for_target(spec or {})
    return compare_on if compare_on in task_type.training_metric_names else task_type.compare_on


def register(task_type: TaskType) -> TaskType:
    """Add a task type to the registry (a plug-in's, or a test's): the config takes `task=<its name>` from then on."""
    TASK_TYPES[task_type.name] = task_type
    return task_type


def quarantine_reasons() -> tuple[str, ...]:
    """Every reason a row can be quarantined with: the generic ones and each registered type's own."""
    found = list(GENERIC_REASONS)
    for task_type in TASK_TYPES.values():
        found += [r for r in task_type.reasons if r not in found]
    return tuple(found)


def task_options(section: str) -> list[type]:
    """The option mixins the registered task types add to one config section, each once."""
    found: list[type] = []
    for task_type in TASK_TYPES.values():
        mixin = task_type.options.get(section)
        if mixin is not None and mixin not in found:
            found.append(mixin)
    return found


def reader_formats() -> tuple[str, ...]:
    """data.format values some task type reads itself (CoNLL, SQuAD, ...)."""
    return tuple(dict.fromkeys(f for t in TASK_TYPES.values() for f in t.formats))


__all__ = ["TASK_TYPES", "TaskType", "get_task_type", "quarantine_reasons", "register", "task_options"]
