"""Split: a seeded, stratified train/validation/test split (optionally of a sample), keeping groups together.

Rows that share a group (data.group_column, or the task type's own key such as a question's context) always land in
the same split, so nothing of a group leaks from training into validation or test."""

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
SPLIT_VERSION = 2  # bump when how rows are split changes: cached splits are rebuilt


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
    frame: pd.DataFrame, val_ratio: float, test_ratio: float, seed: int, keys: pd.Series | None = None, groups: pd.Series | None = None
) -> dict[str, pd.DataFrame]:
    """Per stratum (the class by default): shuffle with the seed, then cut validation and test off; every stratum
    lands in every split. With groups, whole groups are dealt out instead of rows (split_groups)."""
    keys = frame["label"] if keys is None else keys
    if groups is not None:
        return split_groups(frame, val_ratio, test_ratio, seed, keys, groups)
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


def split_groups(
    frame: pd.DataFrame, val_ratio: float, test_ratio: float, seed: int, keys: pd.Series, groups: pd.Series
) -> dict[str, pd.DataFrame]:
    """Whole groups dealt to validation and test until each holds its share of the rows, the rest to training, per
    stratum of groups (a group's stratum is its first row's; strata of fewer than 3 groups are merged)."""
    codes, names = pd.factorize(groups.astype(str), sort=True)
    if len(names) < len(SPLITS):
        raise DataError(
            f"the rows form {len(names)} group(s) (data.group_column or the task's grouping): train, validation and test "
            "each need a group of their own; add data or leave data.group_column unset"
        )
    first = pd.Series(np.arange(len(frame))).groupby(codes).first().to_numpy()
    group_keys = merge_small_strata(pd.Series(np.asarray(keys)[first]).astype(str), MIN_PER_CLASS)
    sizes = np.bincount(codes, minlength=len(names))
    rng = np.random.default_rng(seed)
    where = np.full(len(names), 0)  # 0 train, 1 validation, 2 test
    for _, members in pd.Series(np.arange(len(names))).groupby(group_keys.to_numpy(), sort=True):
        members = members.to_numpy()[rng.permutation(len(members))]
        cum, n = np.cumsum(sizes[members]), len(members)
        n_val = min(max(1, int(np.searchsorted(cum, cum[-1] * val_ratio)) + 1), max(n - 2, 0))
        rest = cum[n_val:] - (cum[n_val - 1] if n_val else 0)
        n_test = min(max(1, int(np.searchsorted(rest, cum[-1] * test_ratio)) + 1), max(n - 1 - n_val, 0))
        where[members[:n_val]] = 1
        where[members[n_val : n_val + n_test]] = 2
    for code in (1, 2):
        if not (where == code).any():  # tiny strata gave it nothing: one group from the largest training stratum
            candidates = np.flatnonzero(where == 0)
            where[candidates[np.argmin(sizes[candidates])]] = code
    row_split = where[codes]
    return {name: frame[row_split == code].sort_values("row_id").reset_index(drop=True) for code, name in enumerate(SPLITS)}


def given_split(frame: pd.DataFrame, column: str, carve: dict | None = None) -> dict[str, pd.DataFrame]:
    """The data's own split (data.split_column, or one file per split); every split must hold rows, except that with
    carve ({val_ratio, test_ratio, seed, keys, groups}) a split without rows is carved from training."""
    parts = {name: frame[frame["split"] == name].drop(columns="split") for name in SPLITS}
    empty = [name for name, part in parts.items() if part.empty]
    if empty and carve is not None and not parts["train"].empty:
        train = parts["train"]
        ratios = {
            name: carve[f"{'val' if name == 'validation' else 'test'}_ratio"] if name in empty else 0.0 for name in ("validation", "test")
        }
        cut = _carve(
            train,
            ratios,
            carve["seed"],
            carve["keys"].loc[train.index],
            None if carve["groups"] is None else carve["groups"].loc[train.index],
        )
        parts = {"train": cut["train"], **{name: cut[name] if name in empty else parts[name] for name in ("validation", "test")}}
        empty = []
    if empty:
        found = {name: len(part) for name, part in parts.items()}
        raise DataError(
            f"data.split_column '{column}' gives no {' or '.join(empty)} rows ({found}): each of train, "
            "validation and test needs rows; fix the column or leave data.split_column unset for a random split"
        )
    return {name: part.sort_values("row_id").reset_index(drop=True) for name, part in parts.items()}


def _carve(train: pd.DataFrame, ratios: dict[str, float], seed: int, keys: pd.Series, groups: pd.Series | None) -> dict[str, pd.DataFrame]:
    """Validation and/or test cut from the training rows (a ratio of 0 leaves that split empty)."""
    val, test = ratios["validation"], ratios["test"]
    cut = split_frame(train, val or 0.5 * (test or 0.1), test or 0.5 * (val or 0.1), seed, keys, groups)
    out = {"train": cut["train"]}
    for name, ratio in (("validation", val), ("test", test)):
        if ratio:
            out[name] = cut[name]
        else:  # not asked for: its rows go back to training
            out["train"] = pd.concat([out["train"], cut[name]])
            out[name] = cut[name].iloc[0:0]
    return out


def group_keys(frame: pd.DataFrame, task_type, data: DataConfig) -> pd.Series | None:
    """What keeps rows together: data.group_column, else the task type's own key, else nothing."""
    if data.group_column is not None:
        return frame["group"].fillna("\x00missing")
    return task_type.group_key(frame)


@task(name="split")
@timed
def split_data(clean: CleanResult, data: DataConfig, cache: CacheConfig, seed: int, task: str) -> SplitResult:
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
    key = fingerprint(
        "split",
        SPLIT_VERSION,
        clean.key,
        task,
        data.val_ratio,
        data.test_ratio,
        data.max_rows,
        data.labels,
        seed,
        data.split_column,
        data.group_column,
    )

    def make(folder: Path) -> dict:
        frame = pd.read_parquet(clean.path)
        CleanFrame.validate(frame)
        keys = strata_of(frame, task_type)
        sampled = stratified_sample(frame, data.max_rows, seed, keys)
        sampled_keys = keys if sampled is frame else strata_of(sampled, task_type)
        groups = group_keys(sampled, task_type, data)
        if groups is not None:
            sampled = sampled.assign(_group=groups.astype(str).to_numpy())
            groups = sampled["_group"]
        if "split" in sampled:  # data.split_column, or one file per split (a missing validation or test is carved from train)
            carve = {"val_ratio": data.val_ratio, "test_ratio": data.test_ratio, "seed": seed, "keys": sampled_keys, "groups": groups}
            parts = given_split(sampled, str(data.split_column or "data.path"), carve if isinstance(data.path, dict) else None)
        else:
            parts = split_frame(sampled, data.val_ratio, data.test_ratio, seed, sampled_keys, groups)
        spec = task_type.target_spec(sampled["label"], parts["train"]["label"], data)
        counts = {}
        for name, part in parts.items():
            counts[name] = {"rows": len(part), **task_type.target_summary(part["label"], spec)}
            if groups is not None:
                counts[name]["groups"] = int(part["_group"].nunique())
            part = part.drop(columns=[c for c in ("_group", "group") if c in part])
            SplitFrame.validate(part).to_parquet(folder / f"{name}.parquet", index=False)
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
            "grouped_by": (f"data.group_column '{data.group_column}'" if data.group_column is not None else task_type.group_name)
            if groups is not None
            else None,
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
