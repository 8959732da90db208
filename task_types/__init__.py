"""Task types: what differs between classification, multi-label, regression and token classification, behind one protocol.

The flow and its steps are generic; each step asks the run's task type for the part that depends
on the target (validation, stratification, encoding, the head, metrics, plots, gates, predict
columns, the model card). Adding a task type is one module and one line in TASK_TYPES.
"""

from __future__ import annotations

from task_types.base import TaskType
from task_types.classification import Classification
from task_types.multi_label import MultiLabel
from task_types.regression import Regression
from task_types.token_classification import TokenClassification

TASK_TYPES: dict[str, TaskType] = {t.name: t for t in (Classification(), MultiLabel(), Regression(), TokenClassification())}


def get_task_type(name: str) -> TaskType:
    """The task type registered under name (the config's `task`)."""
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown task '{name}': choose one of {sorted(TASK_TYPES)}") from None


__all__ = ["TASK_TYPES", "TaskType", "get_task_type"]
