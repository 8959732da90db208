"""Data contracts checked where frames enter and leave a step (pandera models)."""

from __future__ import annotations

from typing import Optional

import pandera.pandas as pa
from pandera.typing import Series

# Bump when the cleaning rules change: it is part of the clean step's cache key.
SCHEMA_VERSION = "3"

# Reasons ingest can already give for a row (the rest are the clean step's).
INGEST_REASONS = ("undecodable_bytes", "nul_byte")

QUARANTINE_REASONS = (
    "undecodable_bytes",
    "nul_byte",
    "mixed_label_type",
    "null_text",
    "empty_text",
    "null_label",
    "label_not_in_labels",
    "conflicting_labels",
    "duplicate",
)


class RawFrame(pa.DataFrameModel):
    """What ingest hands on: original row number, text and label as strings (nulls allowed), and the
    reason ingest already found a row unusable (undecodable bytes), else null."""

    row_id: Series[int] = pa.Field(unique=True, ge=0)
    text: Series[str] = pa.Field(nullable=True)
    label: Series[str] = pa.Field(nullable=True)
    problem: Optional[Series[str]] = pa.Field(nullable=True, isin=list(INGEST_REASONS))

    class Config:
        strict = True
        coerce = True


class CleanFrame(pa.DataFrameModel):
    """Rows fit to train on: normalised, non-empty text and a label, no duplicates."""

    row_id: Series[int] = pa.Field(unique=True, ge=0)
    text: Series[str] = pa.Field(str_length={"min_value": 1}, unique=True)
    label: Series[str] = pa.Field(str_length={"min_value": 1})

    class Config:
        strict = True
        coerce = False


class QuarantineFrame(pa.DataFrameModel):
    """Rows set aside, each with the reason."""

    row_id: Series[int] = pa.Field(ge=0)
    text: Series[str] = pa.Field(nullable=True)
    label: Series[str] = pa.Field(nullable=True)
    reason: Series[str] = pa.Field(isin=list(QUARANTINE_REASONS))

    class Config:
        strict = True
        coerce = False


class SplitFrame(pa.DataFrameModel):
    """One split of the data with the integer class id the model trains on."""

    row_id: Series[int] = pa.Field(unique=True, ge=0)
    text: Series[str] = pa.Field(str_length={"min_value": 1})
    label: Series[str]
    label_id: Series[int] = pa.Field(ge=0)

    class Config:
        strict = True
        coerce = False
