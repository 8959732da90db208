"""Split: a seeded, stratified train/validation/test split (optionally of a sample)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from schemas.config import CacheConfig, DataConfig
from schemas.data import SPLITS, CleanFrame, SplitFrame
from schemas.errors import DataError
from schemas.results import CleanResult, SplitResult
from task_types import get_task_type
from task_types.base import merge_small_strata
from tasks.runtime.cache import build_step, fingerprint
from tasks.runtime.logs import step_logger, timed

MIN_PER_CLASS = 3  # one row each for train, validation and test


def _check_class_sizes(keys: pd.Series) -> None:
    counts = keys.value_counts()
    small = counts[counts < MIN_PER_CLASS]
    if len(small):
        listed = ", ".join(f"{label!r} has {n}" for label, n in small.items())
        raise DataError(
            f"class too small to split: {listed}; each class needs at least {MIN_PER_CLASS} clean rows "
            "(one each for train, validation and test): add rows or drop the class"
        )


def strata_of(frame: pd.DataFrame, task_type) -> pd.Series:
    """The key each row is stratified by: its class, its rarest label or its quantile bin (small bins merged)."""
    keys = task_type.strata(frame["label"])
    return keys if task_type.strict_strata else merge_small_strata(keys, MIN_PER_CLASS)


def sample_sizes(class_sizes: np.ndarray, max_rows: int) -> np.ndarray:
    """Rows to keep per class: proportional, at least MIN_PER_CLASS each, and never more than max_rows in all
    (rounding and the per-class minimum are taken back from the largest classes)."""
    floor = np.minimum(class_sizes, MIN_PER_CLASS)
    if floor.sum() > max_rows:
        raise DataError(
            f"data.max_rows={max_rows} is too small for {len(class_sizes)} classes: each class keeps at least "
            f"{MIN_PER_CLASS} rows (one each for train, validation and test), so set data.max_rows >= {int(floor.sum())}"
        )
    takes = np.minimum(class_sizes, np.maximum(floor, np.round(class_sizes * max_rows / class_sizes.sum()).astype(int)))
    for _ in range(int(takes.sum()) - max_rows):
        takes[np.argmax(takes - floor)] -= 1
    return takes


def stratified_sample(frame: pd.DataFrame, max_rows: int | None, seed: int, keys: pd.Series | None = None) -> pd.DataFrame:
    """At most max_rows rows with the strata's balance kept (the class by default); every stratum keeps enough rows to split."""
    if max_rows is None or max_rows >= len(frame):
        return frame
    keys = frame["label"] if keys is None else keys
    rng = np.random.default_rng(seed)
    groups = [group for _, group in frame.groupby(keys, sort=True)]
    takes = sample_sizes(np.array([len(g) for g in groups]), max_rows)
    parts = []
    for group, take in zip(groups, takes):
        parts.append(group.iloc[rng.permutation(len(group))[:take]])
    return pd.concat(parts).sort_values("row_id").reset_index(drop=True)


def split_frame(
    frame: pd.DataFrame, val_ratio: float, test_ratio: float, seed: int, keys: pd.Series | None = None
) -> dict[str, pd.DataFrame]:
    """Per stratum (the class by default): shuffle with the seed, then cut validation and test off; every stratum
    lands in every split."""
    keys = frame["label"] if keys is None else keys
    _check_class_sizes(keys)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in SPLITS}
    for _, group in frame.groupby(keys, sort=True):
        group = group.iloc[rng.permutation(len(group))]
        n_val = max(1, int(round(len(group) * val_ratio)))
        n_test = max(1, int(round(len(group) * test_ratio)))
        n_val, n_test = min(n_val, len(group) - 2), min(n_test, len(group) - 2)
        parts["validation"].append(group.iloc[:n_val])
        parts["test"].append(group.iloc[n_val : n_val + n_test])
        parts["train"].append(group.iloc[n_val + n_test :])
    return {name: pd.concat(chunks).sort_values("row_id").reset_index(drop=True) for name, chunks in parts.items()}


def given_split(frame: pd.DataFrame, column: str) -> dict[str, pd.DataFrame]:
    """The data's own split (data.split_column); every split must hold rows."""
    parts = {name: frame[frame["split"] == name].drop(columns="split").reset_index(drop=True) for name in SPLITS}
    empty = [name for name, part in parts.items() if part.empty]
    if empty:
        found = {name: len(part) for name, part in parts.items()}
        raise DataError(
            f"data.split_column '{column}' gives no {' or '.join(empty)} rows ({found}): each of train, "
            "validation and test needs rows; fix the column or leave data.split_column unset for a random split"
        )
    return parts


@task(name="split")
@timed
def split_data(clean: CleanResult, data: DataConfig, cache: CacheConfig, seed: int, task: str = "classification") -> SplitResult:
    """Sample (data.max_rows) and split the clean rows; fix the target encoding (label order, scaling).

    Args:
        clean: the clean step's result.
        data: ratios, sample size, label order and the data's own split column.
        cache: where step outputs live and whether to recompute them.
        seed: the run's seed.
        task: the task type (stratification key and target encoding).
    Returns:
        paths of the split Parquet files, the target spec, the label list, the key and row counts.
    """
    logger = step_logger()
    task_type = get_task_type(task)
    given = {"task": task, "split_column": data.split_column} if task != "classification" or data.split_column is not None else {}
    key = fingerprint("split", clean.key, data.val_ratio, data.test_ratio, data.max_rows, data.labels, seed, *([given] if given else []))

    def make(folder: Path) -> dict:
        frame = pd.read_parquet(clean.path)
        CleanFrame.validate(frame)
        keys = strata_of(frame, task_type)
        sampled = stratified_sample(frame, data.max_rows, seed, keys)
        if data.split_column is not None:
            parts = given_split(sampled, str(data.split_column))
        else:
            parts = split_frame(sampled, data.val_ratio, data.test_ratio, seed, keys if sampled is frame else strata_of(sampled, task_type))
        spec = task_type.target_spec(sampled["label"], parts["train"]["label"], data)
        counts = {}
        for name, part in parts.items():
            SplitFrame.validate(part).to_parquet(folder / f"{name}.parquet", index=False)
            counts[name] = {"rows": len(part), **task_type.target_summary(part["label"], spec)}
        (folder / "target.json").write_text(json.dumps(spec))
        used = sum(c["rows"] for c in counts.values())
        if used + (len(frame) - len(sampled)) != len(frame):
            raise AssertionError("split row accounting broke")
        return {
            "rows_in": len(frame),
            "rows_not_sampled": len(frame) - len(sampled),
            "target": spec,
            "labels": spec.get("labels", []),
            "splits": counts,
        }

    entry = build_step(cache, "split", key, make)
    paths = {name: str(entry.path / f"{name}.parquet") for name in SPLITS}
    result = SplitResult.from_manifest(entry.meta, paths=paths, key=key, reused=entry.reused)
    logger.info(
        "split: %d rows -> %s%s, labels %s%s",
        result.rows_in,
        {name: result.sizes[name] for name in SPLITS},
        f" ({result.rows_not_sampled} left out by data.max_rows)" if result.rows_not_sampled else "",
        result.labels,
        " (cached)" if entry.reused else "",
    )
    return result
