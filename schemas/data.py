"""Data contracts checked where frames enter and leave a step (pandera models)."""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

# Bump when the cleaning rules change: it is part of the clean step's cache key.
SCHEMA_VERSION = "3"

# Reasons ingest can already give for a row (the rest are the clean step's).
INGEST_REASONS = ("undecodable_bytes", "nul_byte")

# Reasons the clean step itself gives, whatever the task type; each type adds its own (task_types: quarantine_reasons()).
CLEAN_REASONS = (
    "null_text",
    "empty_text",
    "null_text_pair",
    "empty_text_pair",
    "null_label",
    "bad_split_value",
    "conflicting_labels",
    "duplicate",
    "unknown_tokens_only",
)

SPLITS = ("train", "validation", "test")

# data.split_column values and the split each means.
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


class RawFrame(pa.DataFrameModel):
    """What ingest hands on: original row number, text (and the pair's second text), the target as a string
    (a label, a number, a JSON label list or a JSON object of indicator values; nulls allowed), the data's own
    split when data.split_column is set, and the reason ingest already found a row unusable, else null."""

    row_id: Series[int] = pa.Field(unique=True, ge=0)
    text: Series[str] = pa.Field(nullable=True)
    text_pair: Series[str] | None = pa.Field(nullable=True)
    label: Series[str] = pa.Field(nullable=True)
    split: Series[str] | None = pa.Field(nullable=True)
    group: Series[str] | None = pa.Field(nullable=True)
    problem: Series[str] | None = pa.Field(nullable=True, isin=list(INGEST_REASONS))

    class Config:
        strict = True
        coerce = True


class CleanFrame(pa.DataFrameModel):
    """Rows fit to train on: normalised, non-empty text (and pair text), the canonical target, no duplicates."""

    row_id: Series[int] = pa.Field(unique=True, ge=0)
    text: Series[str] = pa.Field(str_length={"min_value": 1})
    text_pair: Series[str] | None = pa.Field(str_length={"min_value": 1})
    label: Series[str] = pa.Field(str_length={"min_value": 1})
    split: Series[str] | None = pa.Field(isin=["train", "validation", "test"])
    group: Series[str] | None = pa.Field(nullable=True)

    @pa.dataframe_check
    def one_row_per_input(cls, frame) -> bool:
        """A text (or text pair) appears once: repeats are quarantined as duplicates or conflicts."""
        return not frame.duplicated([c for c in ("text", "text_pair") if c in frame]).any()

    class Config:
        strict = True
        coerce = False


class QuarantineFrame(pa.DataFrameModel):
    """Rows set aside, each with the reason."""

    row_id: Series[int] = pa.Field(ge=0)
    text: Series[str] = pa.Field(nullable=True)
    text_pair: Series[str] | None = pa.Field(nullable=True)
    label: Series[str] = pa.Field(nullable=True)
    reason: Series[str] = pa.Field(str_length={"min_value": 1})  # one of task_types.quarantine_reasons(): checked by clean

    class Config:
        strict = True
        coerce = False


class SplitFrame(pa.DataFrameModel):
    """One split of the data: the clean rows it holds (the task type encodes the target at tokenization)."""

    row_id: Series[int] = pa.Field(unique=True, ge=0)
    text: Series[str] = pa.Field(str_length={"min_value": 1})
    text_pair: Series[str] | None = pa.Field(str_length={"min_value": 1})
    label: Series[str]
    group: Series[str] | None = pa.Field(nullable=True)

    class Config:
        strict = True
        coerce = False


class TaggedFrame(CleanFrame):
    """Clean rows of task=token_classification: `text` and `label` are JSON lists of words and their tags, as
    many tags as words, no empty word or tag (the clean step quarantined every other sentence)."""

    @pa.dataframe_check
    def one_tag_per_word(cls, frame) -> bool:
        import json

        def aligned(text: str, label: str) -> bool:
            words, tags = json.loads(text), json.loads(label)
            return isinstance(words, list) and isinstance(tags, list) and 0 < len(words) == len(tags) and all(words) and all(tags)

        return all(aligned(words, tags) for words, tags in zip(frame["text"], frame["label"]))
