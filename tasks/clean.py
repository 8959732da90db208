"""Clean and validate: normalise text, quarantine what cannot be trained on, with the reason."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pandas as pd
from prefect import task

from schemas.config import CacheConfig, DataConfig
from schemas.data import SCHEMA_VERSION, CleanFrame, QuarantineFrame, RawFrame
from schemas.errors import DataError
from tasks.logs import step_logger, timed
from tasks.cache import StepCache, fingerprint


def _normalise(text: str | None) -> str | None:
    """NFC unicode and single spaces; a missing value stays None."""
    if text is None or pd.isna(text):
        return None
    return " ".join(unicodedata.normalize("NFC", str(text)).split())


def _reasons(frame: pd.DataFrame, labels: list[str] | None) -> pd.Series:
    """The first reason each row cannot be trained on, or None for rows to keep."""
    reason = pd.Series([None] * len(frame), index=frame.index, dtype=object)

    def mark(mask: pd.Series, why: str) -> None:
        reason[mask & reason.isna()] = why

    problem = frame["problem"].notna()
    reason[problem] = frame.loc[problem, "problem"]
    mark(frame["raw_text"].isna(), "null_text")
    mark(frame["text"].fillna("") == "", "empty_text")
    mark(frame["label"].fillna("") == "", "null_label")
    if labels is not None:
        mark(~frame["label"].isin(labels), "label_not_in_labels")
    else:
        mark(mixed_label_types(frame["label"].where(reason.isna())), "mixed_label_type")
    alive = reason.isna()
    label_counts = frame[alive].groupby("text")["label"].nunique()
    conflicting = frame["text"].isin(label_counts[label_counts > 1].index)
    mark(conflicting & alive, "conflicting_labels")
    mark(frame.duplicated(subset=["text", "label"], keep="first") & reason.isna(), "duplicate")
    return reason


NUMERIC = r"[-+]?\d+(?:\.\d+)?"


def mixed_label_types(labels: pd.Series) -> pd.Series:
    """Rows whose label is of the minority kind when numbers and words are mixed (1, 2, 'pos'): a sign of a
    shifted column or a stray value. Ties mark the numeric ones. Null labels are never marked."""
    present = labels.notna()
    numeric = labels.astype("string").str.fullmatch(NUMERIC).fillna(False).astype(bool) & present
    words = present & ~numeric
    if not numeric.any() or not words.any():
        return pd.Series(False, index=labels.index)
    return numeric if numeric.sum() <= words.sum() else words


def clean_frame(raw: pd.DataFrame, labels: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the raw frame into rows to keep and quarantined rows with a reason."""
    RawFrame.validate(raw)
    frame = pd.DataFrame(
        {
            "row_id": raw["row_id"].astype("int64"),
            "raw_text": raw["text"],
            "raw_label": raw["label"],
            "text": raw["text"].map(_normalise),
            "label": raw["label"].map(lambda v: None if v is None or pd.isna(v) else str(v).strip()),
            "problem": raw["problem"] if "problem" in raw else None,
        }
    )
    reason = _reasons(frame, labels)
    kept = frame.loc[reason.isna(), ["row_id", "text", "label"]].reset_index(drop=True)
    quarantine = frame.loc[reason.notna(), ["row_id", "raw_text", "raw_label"]].rename(
        columns={"raw_text": "text", "raw_label": "label"}
    )
    quarantine["reason"] = reason[reason.notna()].astype(str)
    quarantine = quarantine.reset_index(drop=True)
    if len(kept) + len(quarantine) != len(raw):
        raise AssertionError(f"row accounting broke: {len(raw)} in != {len(kept)} kept + {len(quarantine)} quarantined")
    return CleanFrame.validate(kept), QuarantineFrame.validate(quarantine)


def check_usable(kept: pd.DataFrame, quarantine: pd.DataFrame, labels: list[str] | None) -> None:
    """Fail with what to change when the clean data cannot train a classifier."""
    if kept.empty:
        reasons = quarantine["reason"].value_counts().to_dict()
        raise DataError(f"no usable rows: all {len(quarantine)} rows were quarantined ({reasons})")
    found = sorted(kept["label"].unique())
    if labels is not None:
        missing = [label for label in labels if label not in found]
        if missing:
            raise DataError(f"data.labels names {missing} but no clean row has them; labels found: {found}")
    if len(found) < 2:
        raise DataError(f"only one class ({found[0]!r}) in the data: a classifier needs at least two labels")


@task(name="clean")
@timed
def clean_data(raw: dict, data: DataConfig, cache: CacheConfig) -> dict:
    """Normalise and validate the raw rows; write kept rows and the quarantine.

    Args:
        raw: ingest's result (path and key of the raw frame).
        data: the data section of the config (label set).
        cache: where step outputs live and whether to recompute them.
    Returns:
        paths of `clean.parquet` and `quarantine.csv`, the key, and counts by reason.
    """
    logger = step_logger()
    key = fingerprint("clean", raw["key"], SCHEMA_VERSION, data.labels)

    def make(folder: Path) -> dict:
        kept, quarantine = clean_frame(pd.read_parquet(raw["path"]), data.labels)
        check_usable(kept, quarantine, data.labels)
        kept.to_parquet(folder / "clean.parquet", index=False)
        quarantine.to_csv(folder / "quarantine.csv", index=False)
        return {
            "rows_in": len(kept) + len(quarantine),
            "rows_kept": len(kept),
            "rows_quarantined": len(quarantine),
            "quarantine_reasons": {str(k): int(v) for k, v in quarantine["reason"].value_counts().items()},
        }

    entry = StepCache(cache.resolved_dir(), "clean", key).build(make, refresh=cache.refresh)
    meta = entry.meta
    logger.info(
        "clean: %d in = %d kept + %d quarantined %s%s", meta["rows_in"], meta["rows_kept"],
        meta["rows_quarantined"], meta["quarantine_reasons"] or "", " (cached)" if entry.reused else "",
    )
    if meta["rows_quarantined"]:
        logger.info("quarantined rows with reasons: %s", entry.path / "quarantine.csv")
    return {"path": str(entry.path / "clean.parquet"), "quarantine": str(entry.path / "quarantine.csv"), "key": key, "reused": entry.reused, **meta}
