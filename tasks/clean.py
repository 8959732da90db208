"""Clean and validate: normalise text, quarantine what cannot be trained on, with the reason."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from schemas.config import CacheConfig, DataConfig
from schemas.data import SCHEMA_VERSION, CleanFrame, QuarantineFrame, RawFrame
from schemas.errors import DataError
from tasks.logs import step_logger, timed
from tasks.cache import StepCache, fingerprint


# An ASCII text _normalise would change: two whitespace characters in a row, whitespace other than a space
# (str.split() also splits on \x1c-\x1f), or a space at either end.
_ASCII_UNTIDY = "[\\t\\n\\r\\x0b\\x0c\\x1c-\\x1f]|  |^ | $"


def _normalise(text: str | None) -> str | None:
    """NFC unicode and single spaces; a missing value stays None."""
    if text is None or pd.isna(text):
        return None
    return " ".join(unicodedata.normalize("NFC", str(text)).split())


def normalise_texts(texts: pd.Series) -> pd.Series:
    """_normalise over a column, fast: only texts it would change go through Python (non-ASCII ones, and
    ASCII ones with runs of whitespace, whitespace other than a space, or spaces at either end)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    strings = _arrow_strings(texts)
    wide = ~np.asarray(pc.fill_null(pc.string_is_ascii(strings), True))
    untidy = np.asarray(pc.fill_null(pc.match_substring_regex(strings, _ASCII_UNTIDY), False))
    todo = np.flatnonzero(wide | untidy)
    if len(todo):
        values = strings.to_numpy(zero_copy_only=False).copy()
        values[todo] = [_normalise(v) for v in values[todo]]
        strings = pa.array(values, type=pa.string())
    return pd.Series(strings.to_pandas(), index=texts.index)


# Characters that show nothing: format characters (zero-width space and joiners, BOM), controls, separators,
# and the blank letters some scripts have (Hangul fillers, the Braille blank).
_NO_CONTENT = r"^[\p{Cf}\p{Cc}\p{Z}\s\x{115F}\x{1160}\x{3164}\x{FFA0}\x{2800}]*$"


def no_content(texts: pd.Series) -> pd.Series:
    """Texts that are missing, empty, or made only of characters that show nothing (zero-width, BOM)."""
    import pyarrow.compute as pc

    blank = np.asarray(pc.fill_null(pc.match_substring_regex(_arrow_strings(texts), _NO_CONTENT), True))
    return pd.Series(blank, index=texts.index)


def _reasons(frame: pd.DataFrame, labels: list[str] | None) -> pd.Series:
    """The first reason each row cannot be trained on, or None for rows to keep."""
    reason = pd.Series([None] * len(frame), index=frame.index, dtype=object)

    def mark(mask: pd.Series, why: str) -> None:
        reason[mask & reason.isna()] = why

    problem = frame["problem"].notna()
    reason[problem] = frame.loc[problem, "problem"]
    mark(frame["raw_text"].isna(), "null_text")
    mark(no_content(frame["text"]), "empty_text")
    mark(frame["label"].fillna("") == "", "null_label")
    if labels is not None:
        mark(~frame["label"].isin(labels), "label_not_in_labels")
    else:
        mark(mixed_label_types(frame["label"].where(reason.isna())), "mixed_label_type")
    conflicting, duplicate = conflicts_and_duplicates(frame["text"], frame["label"], reason.isna().to_numpy())
    mark(pd.Series(conflicting, index=frame.index), "conflicting_labels")
    mark(pd.Series(duplicate, index=frame.index), "duplicate")
    return reason


def _arrow_strings(values: pd.Series):
    import pyarrow as pa

    if isinstance(values.dtype, pd.StringDtype):
        strings = pa.array(values.array, type=pa.string())
        return strings.combine_chunks() if isinstance(strings, pa.ChunkedArray) else strings
    return pa.array(values.astype(object).where(values.notna(), None), type=pa.string())


def _codes(values: pd.Series) -> np.ndarray:
    """An integer per distinct string (Arrow's dictionary encoding, ~2.5x pandas.factorize); 0 = null."""
    import pyarrow.compute as pc

    indices = pc.dictionary_encode(_arrow_strings(values)).indices
    return np.asarray(pc.fill_null(indices, -1)).astype(np.int64) + 1


def conflicts_and_duplicates(text: pd.Series, label: pd.Series, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows whose text carries more than one label among the alive rows, rows repeating an earlier row's
    text and label), on integer codes so a million rows take well under a second."""
    text_codes, label_codes = _codes(text), _codes(label)
    base = int(label_codes.max(initial=0)) + 1
    pair = text_codes * base + label_codes
    labels_per_text = np.bincount(pd.unique(pair[alive]) // base, minlength=int(text_codes.max(initial=0)) + 1)
    conflicting = alive & (labels_per_text[text_codes] > 1)
    duplicate = pd.Series(pair).duplicated(keep="first").to_numpy()  # hashing, not sorting
    return conflicting, duplicate


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
            "text": normalise_texts(raw["text"]),
            "label": raw["label"].astype("string[pyarrow]").str.strip(),
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


# The evaluation's confusion matrices hold classes**2 cells (in metrics.json, the run and the step results).
MAX_CLASSES = 1000


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
    if len(found) > MAX_CLASSES:
        raise DataError(f"{len(found)} classes in the data; at most {MAX_CLASSES} are supported: check data.label_column "
                        "(is it an id or free text?) or group rare labels")


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
