"""Clean and validate: normalise text, quarantine what cannot be trained on, with the reason."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from schemas.config import CacheConfig, DataConfig
from schemas.data import SCHEMA_VERSION, SPLIT_NAMES, CleanFrame, QuarantineFrame, RawFrame
from schemas.errors import DataError
from schemas.results import CleanResult, IngestResult
from task_types import get_task_type
from tasks.runtime.cache import build_step, fingerprint
from tasks.runtime.logs import step_logger, timed

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


def _reasons(frame: pd.DataFrame, task_type, data: DataConfig) -> tuple[pd.Series, pd.Series]:
    """(the first reason each row cannot be trained on, or None for rows to keep; the canonical target)."""
    reason = pd.Series([None] * len(frame), index=frame.index, dtype=object)

    def mark(mask: pd.Series, why: str) -> None:
        reason[mask & reason.isna()] = why

    problem = frame["problem"].notna()
    reason[problem] = frame.loc[problem, "problem"]
    mark(frame["raw_text"].isna(), "null_text")
    mark(no_content(frame["text"]), "empty_text")
    if "text_pair" in frame:
        mark(frame["raw_text_pair"].isna(), "null_text_pair")
        mark(no_content(frame["text_pair"]), "empty_text_pair")
    mark(frame["label"].fillna("") == "", "null_label")
    if "split" in frame:
        mark(~frame["split"].isin(list(SPLIT_NAMES.values())), "bad_split_value")
    target = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    alive = reason.isna()
    if alive.any() and hasattr(task_type, "validate_rows"):
        # Word-level types judge words and tags together, on the raw JSON word lists (whitespace normalisation
        # would change them), and hand back the canonical word list as the text.
        texts, canonical, why = task_type.validate_rows(
            frame.loc[alive, "raw_text"].astype(object), frame.loc[alive, "label"].astype(object), data
        )
        frame.loc[alive, "text"] = texts.where(texts.notna(), frame.loc[alive, "text"])
        target[alive] = canonical
        reason[alive] = why
    elif alive.any():
        canonical, why = task_type.validate_targets(frame.loc[alive, "label"].astype(object), data)
        target[alive] = canonical
        reason[alive] = why
    key = frame["text"] if "text_pair" not in frame else frame["text"].astype(object) + "\x1f" + frame["text_pair"].astype(object)
    conflicting, duplicate = conflicts_and_duplicates(key, target, reason.isna().to_numpy())
    mark(pd.Series(conflicting, index=frame.index), "conflicting_labels")
    mark(pd.Series(duplicate, index=frame.index), "duplicate")
    return reason, target


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


def clean_frame(raw: pd.DataFrame, data: DataConfig | None = None, task: str = "classification") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the raw frame into rows to keep (the target in its canonical form) and quarantined rows with a reason."""
    data = data or DataConfig()
    RawFrame.validate(raw)
    pair = "text_pair" in raw
    frame = pd.DataFrame({"row_id": raw["row_id"].astype("int64"), "raw_text": raw["text"], "text": normalise_texts(raw["text"])})
    if pair:
        frame["raw_text_pair"] = raw["text_pair"]
        frame["text_pair"] = normalise_texts(raw["text_pair"])
    frame["raw_label"] = raw["label"]
    frame["label"] = raw["label"].astype("string[pyarrow]").str.strip()
    if "split" in raw:
        frame["split"] = raw["split"].astype(object).map(lambda v: SPLIT_NAMES.get(str(v).strip().lower()) if v is not None else None)
    frame["problem"] = raw["problem"] if "problem" in raw else None
    reason, target = _reasons(frame, get_task_type(task), data)
    keep = reason.isna()
    inputs = ["text", "text_pair"] if pair else ["text"]
    kept = frame.loc[keep, ["row_id", *inputs]].assign(label=target[keep].astype(str))
    if "split" in frame:
        kept["split"] = frame.loc[keep, "split"].astype(str)
    kept = kept.reset_index(drop=True)
    originals = {"raw_text": "text", **({"raw_text_pair": "text_pair"} if pair else {}), "raw_label": "label"}
    quarantine = frame.loc[~keep, ["row_id", *originals]].rename(columns=originals)
    quarantine["reason"] = reason[~keep].astype(str)
    quarantine = quarantine.reset_index(drop=True)
    if len(kept) + len(quarantine) != len(raw):
        raise AssertionError(f"row accounting broke: {len(raw)} in != {len(kept)} kept + {len(quarantine)} quarantined")
    return CleanFrame.validate(kept), QuarantineFrame.validate(quarantine)


def check_usable(kept: pd.DataFrame, quarantine: pd.DataFrame, data: DataConfig, task: str = "classification") -> None:
    """Fail with what to change when the clean data cannot train the task type."""
    if kept.empty:
        reasons = quarantine["reason"].value_counts().to_dict()
        raise DataError(f"no usable rows: all {len(quarantine)} rows were quarantined ({reasons})")
    get_task_type(task).check_usable(kept["label"], data)


@task(name="clean")
@timed
def clean_data(raw: IngestResult, data: DataConfig, cache: CacheConfig, task: str = "classification") -> CleanResult:
    """Normalise and validate the raw rows; write kept rows and the quarantine.

    Args:
        raw: ingest's result (path and key of the raw frame).
        data: the data section of the config (label set, multi-label target options).
        cache: where step outputs live and whether to recompute them.
        task: the task type, which validates the targets.
    Returns:
        paths of `clean.parquet` and `quarantine.csv`, the key, and counts by reason.
    """
    logger = step_logger()
    options = {"task": task, "separator": data.label_separator, "indicators": data.indicator_values} if task != "classification" else {}
    if task == "token_classification":
        options["tag_repair"] = data.tag_repair
    key = fingerprint("clean", raw.key, SCHEMA_VERSION, data.labels, *([options] if options else []))

    def make(folder: Path) -> dict:
        raw_frame = pd.read_parquet(raw.path)
        kept, quarantine = clean_frame(raw_frame, data, task)
        check_usable(kept, quarantine, data, task)
        task_type = get_task_type(task)
        extra = task_type.clean_summary(raw_frame, kept) if hasattr(task_type, "clean_summary") else {}
        kept.to_parquet(folder / "clean.parquet", index=False)
        quarantine.to_csv(folder / "quarantine.csv", index=False)
        return {
            "rows_in": len(kept) + len(quarantine),
            "rows_kept": len(kept),
            "rows_quarantined": len(quarantine),
            "quarantine_reasons": {str(k): int(v) for k, v in quarantine["reason"].value_counts().items()},
            **extra,
        }

    entry = build_step(cache, "clean", key, make)
    result = CleanResult.from_manifest(
        entry.meta, path=str(entry.path / "clean.parquet"), quarantine=str(entry.path / "quarantine.csv"), key=key, reused=entry.reused
    )
    logger.info(
        "clean: %d in = %d kept + %d quarantined %s%s",
        result.rows_in,
        result.rows_kept,
        result.rows_quarantined,
        result.quarantine_reasons or "",
        " (cached)" if entry.reused else "",
    )
    if result.rows_quarantined:
        logger.info("quarantined rows with reasons: %s", result.quarantine)
    return result
