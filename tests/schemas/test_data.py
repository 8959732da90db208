import pandas as pd
import pandera.pandas as pa
import pytest

from schemas.data import CleanFrame, QuarantineFrame, RawFrame, SplitFrame

SCHEMA_ERRORS = (pa.errors.SchemaError, pa.errors.SchemaErrors)


def test_raw_frame_accepts_nulls_and_rejects_extra_columns():
    RawFrame.validate(pd.DataFrame({"row_id": [0, 1], "text": ["a", None], "label": [None, "x"]}))
    with pytest.raises(SCHEMA_ERRORS):
        RawFrame.validate(pd.DataFrame({"row_id": [0], "text": ["a"], "label": ["x"], "extra": [1]}))


def test_raw_frame_rejects_repeated_row_ids():
    with pytest.raises(SCHEMA_ERRORS):
        RawFrame.validate(pd.DataFrame({"row_id": [0, 0], "text": ["a", "b"], "label": ["x", "y"]}))


def test_clean_frame_valid():
    CleanFrame.validate(pd.DataFrame({"row_id": [0, 1], "text": ["a", "b"], "label": ["x", "y"]}))


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"row_id": [0, 1], "text": ["a", ""], "label": ["x", "y"]}),
        pd.DataFrame({"row_id": [0, 1], "text": ["a", "a"], "label": ["x", "y"]}),
        pd.DataFrame({"row_id": [0, 1], "text": ["a", None], "label": ["x", "y"]}),
        pd.DataFrame({"row_id": [0, 1], "text": ["a", "b"], "label": ["x", ""]}),
    ],
    ids=["empty-text", "duplicate-text", "null-text", "empty-label"],
)
def test_clean_frame_rejects_untrainable_rows(frame):
    with pytest.raises(SCHEMA_ERRORS):
        CleanFrame.validate(frame)


def test_a_quarantined_row_always_has_a_reason():
    QuarantineFrame.validate(pd.DataFrame({"row_id": [3], "text": [None], "label": ["x"], "reason": ["null_text"]}))
    with pytest.raises(SCHEMA_ERRORS):
        QuarantineFrame.validate(pd.DataFrame({"row_id": [3], "text": ["t"], "label": ["x"], "reason": [""]}))


def test_the_known_reasons_are_the_generic_ones_and_every_types_own():
    from task_types import GENERIC_REASONS, TASK_TYPES, quarantine_reasons

    known = set(quarantine_reasons())
    missing = {name: sorted(set(t.reasons) - known) for name, t in TASK_TYPES.items() if set(t.reasons) - known}
    assert not missing and set(GENERIC_REASONS) <= known and {"null_text", "duplicate", "undecodable_bytes"} <= known


def test_split_frame_holds_the_canonical_target_only():
    SplitFrame.validate(pd.DataFrame({"row_id": [0], "text": ["a"], "label": ["x"]}))
    with pytest.raises(SCHEMA_ERRORS):
        SplitFrame.validate(pd.DataFrame({"row_id": [0], "text": ["a"], "label": ["x"], "label_id": [0]}))


def test_clean_pairs_may_repeat_a_text_but_not_a_pair():
    CleanFrame.validate(pd.DataFrame({"row_id": [0, 1], "text": ["a", "a"], "text_pair": ["b", "c"], "label": ["x", "y"]}))
    with pytest.raises(SCHEMA_ERRORS):
        CleanFrame.validate(pd.DataFrame({"row_id": [0, 1], "text": ["a", "a"], "text_pair": ["b", "b"], "label": ["x", "y"]}))
