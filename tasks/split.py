"""Split: a seeded, stratified train/validation/test split (optionally of a sample)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from schemas.config import CacheConfig, DataConfig
from schemas.data import CleanFrame, SplitFrame
from schemas.errors import DataError
from tasks.logs import step_logger, timed
from tasks.cache import StepCache, fingerprint

SPLITS = ("train", "validation", "test")
MIN_PER_CLASS = 3  # one row each for train, validation and test


def label_order(frame: pd.DataFrame, labels: list[str] | None) -> list[str]:
    """The configured label order, else the sorted labels found (deterministic ids)."""
    return list(labels) if labels else sorted(frame["label"].unique())


def _check_class_sizes(frame: pd.DataFrame) -> None:
    counts = frame["label"].value_counts()
    small = counts[counts < MIN_PER_CLASS]
    if len(small):
        listed = ", ".join(f"{label!r} has {n}" for label, n in small.items())
        raise DataError(
            f"class too small to split: {listed}; each class needs at least {MIN_PER_CLASS} clean rows "
            "(one each for train, validation and test): add rows or drop the class"
        )


def sample_sizes(class_sizes: np.ndarray, max_rows: int) -> np.ndarray:
    """Rows to keep per class: proportional, at least MIN_PER_CLASS each, and never more than max_rows in all
    (rounding and the per-class minimum are taken back from the largest classes)."""
    floor = np.minimum(class_sizes, MIN_PER_CLASS)
    if floor.sum() > max_rows:
        raise DataError(f"data.max_rows={max_rows} is too small for {len(class_sizes)} classes: each class keeps at least "
                        f"{MIN_PER_CLASS} rows (one each for train, validation and test), so set data.max_rows >= {int(floor.sum())}")
    takes = np.minimum(class_sizes, np.maximum(floor, np.round(class_sizes * max_rows / class_sizes.sum()).astype(int)))
    for _ in range(int(takes.sum()) - max_rows):
        takes[np.argmax(takes - floor)] -= 1
    return takes


def stratified_sample(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """At most max_rows rows with the class balance kept; every class keeps enough rows to split."""
    if max_rows is None or max_rows >= len(frame):
        return frame
    rng = np.random.default_rng(seed)
    groups = [group for _, group in frame.groupby("label", sort=True)]
    takes = sample_sizes(np.array([len(g) for g in groups]), max_rows)
    parts = []
    for group, take in zip(groups, takes):
        parts.append(group.iloc[rng.permutation(len(group))[:take]])
    return pd.concat(parts).sort_values("row_id").reset_index(drop=True)


def split_frame(frame: pd.DataFrame, val_ratio: float, test_ratio: float, seed: int) -> dict[str, pd.DataFrame]:
    """Per class: shuffle with the seed, then cut validation and test off; every class lands in every split."""
    _check_class_sizes(frame)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in SPLITS}
    for _, group in frame.groupby("label", sort=True):
        group = group.iloc[rng.permutation(len(group))]
        n_val = max(1, int(round(len(group) * val_ratio)))
        n_test = max(1, int(round(len(group) * test_ratio)))
        n_val, n_test = min(n_val, len(group) - 2), min(n_test, len(group) - 2)
        parts["validation"].append(group.iloc[:n_val])
        parts["test"].append(group.iloc[n_val : n_val + n_test])
        parts["train"].append(group.iloc[n_val + n_test :])
    return {name: pd.concat(chunks).sort_values("row_id").reset_index(drop=True) for name, chunks in parts.items()}


@task(name="split")
@timed
def split_data(clean: dict, data: DataConfig, cache: CacheConfig, seed: int) -> dict:
    """Sample (data.max_rows) and split the clean rows; fix the label ids.

    Args:
        clean: the clean step's result.
        data: ratios, sample size and label order.
        cache: where step outputs live and whether to recompute them.
        seed: the run's seed.
    Returns:
        paths of the split Parquet files, the label list, the key and row counts.
    """
    logger = step_logger()
    key = fingerprint("split", clean["key"], data.val_ratio, data.test_ratio, data.max_rows, data.labels, seed)

    def make(folder: Path) -> dict:
        frame = CleanFrame.validate(pd.read_parquet(clean["path"]))
        sampled = stratified_sample(frame, data.max_rows, seed)
        labels = label_order(sampled, data.labels)
        label2id = {label: i for i, label in enumerate(labels)}
        counts = {}
        for name, part in split_frame(sampled, data.val_ratio, data.test_ratio, seed).items():
            part = part.assign(label_id=part["label"].map(label2id).astype("int64"))
            SplitFrame.validate(part).to_parquet(folder / f"{name}.parquet", index=False)
            counts[name] = {"rows": len(part), "per_class": {k: int(v) for k, v in part["label"].value_counts().sort_index().items()}}
        (folder / "labels.json").write_text(json.dumps(labels))
        used = sum(c["rows"] for c in counts.values())
        if used + (len(frame) - len(sampled)) != len(frame):
            raise AssertionError("split row accounting broke")
        return {"rows_in": len(frame), "rows_not_sampled": len(frame) - len(sampled), "labels": labels, "splits": counts}

    entry = StepCache(cache.resolved_dir(), "split", key).build(make, refresh=cache.refresh)
    sizes = {name: entry.meta["splits"][name]["rows"] for name in SPLITS}
    logger.info(
        "split: %d rows -> %s%s, labels %s%s", entry.meta["rows_in"], sizes,
        f" ({entry.meta['rows_not_sampled']} left out by data.max_rows)" if entry.meta["rows_not_sampled"] else "",
        entry.meta["labels"], " (cached)" if entry.reused else "",
    )
    paths = {name: str(entry.path / f"{name}.parquet") for name in SPLITS}
    return {"paths": paths, "key": key, "reused": entry.reused, **entry.meta}
