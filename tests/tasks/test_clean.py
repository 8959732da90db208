import numpy as np
import pandas as pd
import pytest

from schemas.config import CacheConfig, DataConfig
from schemas.errors import DataError
from schemas.results import IngestResult
from tasks.clean import check_usable, clean_data, clean_frame


def _raw(texts, labels):
    return pd.DataFrame({"row_id": range(len(texts)), "text": texts, "label": labels})


def test_each_bad_row_gets_its_reason_and_rows_add_up():
    raw = _raw(
        ["good  film", None, "   ", "fine", "same text", "same text", "dup", "dup", "  good film "],
        ["pos", "pos", "neg", None, "pos", "neg", "neg", "neg", "pos"],
    )
    kept, quarantine = clean_frame(raw, DataConfig(), "classification")
    reasons = dict(zip(quarantine["row_id"], quarantine["reason"]))
    assert reasons == {
        1: "null_text",
        2: "empty_text",
        3: "null_label",
        4: "conflicting_labels",
        5: "conflicting_labels",
        7: "duplicate",
        8: "duplicate",
    }
    assert kept["text"].tolist() == ["good film", "dup"]
    assert len(kept) + len(quarantine) == len(raw)


def test_quarantine_keeps_the_original_row():
    kept, quarantine = clean_frame(_raw(["a", "  "], ["x", "y"]), DataConfig(), "classification")
    assert quarantine.iloc[0].to_dict() == {"row_id": 1, "text": "  ", "label": "y", "reason": "empty_text"}


def test_fixed_label_set_quarantines_others():
    kept, quarantine = clean_frame(_raw(["a", "b", "c"], ["x", "y", "z"]), DataConfig(labels=["x", "y"]), "classification")
    assert kept["label"].tolist() == ["x", "y"]
    assert quarantine["reason"].tolist() == ["label_not_in_labels"]


def test_single_class_is_an_error():
    kept, quarantine = clean_frame(_raw(["a", "b"], ["x", "x"]), DataConfig(), "classification")
    with pytest.raises(DataError, match="only one class"):
        check_usable(kept, quarantine, DataConfig(), "classification")


def test_no_usable_rows_is_an_error():
    kept, quarantine = clean_frame(_raw([None, " "], ["x", "y"]), DataConfig(), "classification")
    with pytest.raises(DataError, match="no usable rows"):
        check_usable(kept, quarantine, DataConfig(), "classification")


def test_label_set_absent_from_data_is_an_error():
    kept, quarantine = clean_frame(_raw(["a", "b"], ["x", "y"]), DataConfig(labels=["x", "y", "w"]), "classification")
    with pytest.raises(DataError, match=r"\['w'\]"):
        check_usable(kept, quarantine, DataConfig(labels=["x", "y", "w"]), "classification")


def test_clean_task_writes_quarantine_file(tmp_path):
    raw = _raw(["a", "b", None, "c", "d"], ["x", "y", "x", "x", "y"])
    path = tmp_path / "raw.parquet"
    raw.to_parquet(path)
    raw_result = IngestResult(path=str(path), key="k", reused=False, rows_read=5, rows_out=5)
    result = clean_data.fn(raw_result, DataConfig(), CacheConfig(dir=str(tmp_path / "c")), "classification")
    assert (result.rows_in, result.rows_kept, result.rows_quarantined) == (5, 4, 1)
    assert result.quarantine_reasons == {"null_text": 1} and result.task_facts == {}
    assert pd.read_csv(result.quarantine)["reason"].tolist() == ["null_text"]


def test_mixed_label_types_quarantine_the_minority_kind():
    kept, quarantine = clean_frame(_raw(["a", "b", "c", "d", "e"], ["pos", "neg", "pos", "1", None]), DataConfig(), "classification")
    assert dict(zip(quarantine["row_id"], quarantine["reason"])) == {3: "mixed_label_type", 4: "null_label"}
    kept, quarantine = clean_frame(_raw(["a", "b", "c"], ["1", "2", "two"]), DataConfig(), "classification")
    assert dict(zip(quarantine["row_id"], quarantine["reason"])) == {2: "mixed_label_type"}
    # only numbers, or only words: nothing is mixed
    assert (
        clean_frame(_raw(["a", "b"], ["1", "-2.5"]), DataConfig(), "classification")[1].empty
        and clean_frame(_raw(["a", "b"], ["x", "y"]), DataConfig(), "classification")[1].empty
    )


def test_ingest_problems_are_quarantined_with_their_reason():
    raw = _raw(["caf\\xe9", "fine"], ["pos", "neg"]).assign(problem=["undecodable_bytes", None])
    kept, quarantine = clean_frame(raw, DataConfig(), "classification")
    assert quarantine.iloc[0].to_dict() == {"row_id": 0, "text": "caf\\xe9", "label": "pos", "reason": "undecodable_bytes"}
    assert kept["text"].tolist() == ["fine"]


@pytest.mark.parametrize("text", ["  a\tb\n c ", "caf\u0065\u0301 x", "a\u00a0\u2003b\u3000", "", "   ", "x\u200by", "\u2028a\u2029"])
def test_vectorised_normalise_matches_the_rule(text):
    from task_types.text import normalise as _normalise
    from task_types.text import normalise_texts

    out = normalise_texts(pd.Series([text, None]))
    assert out.iloc[0] == _normalise(text) and pd.isna(out.iloc[1])


def test_fast_normalise_matches_python_on_every_ascii_whitespace_case():
    from task_types.text import normalise as _normalise
    from task_types.text import normalise_texts

    cases = [
        "plain text",
        " lead",
        "trail ",
        "two  spaces",
        "tab\there",
        "nl\nx",
        "cr\rx",
        "vt\x0bx",
        "ff\x0cx",
        "fs\x1cx",
        "us\x1fx",
        "",
        " ",
        "x",
    ]
    out = normalise_texts(pd.Series(cases))
    assert out.tolist() == [_normalise(c) for c in cases]


def test_conflicts_and_duplicates_on_chunked_arrow_strings():
    import pyarrow as pa

    from tasks.clean import conflicts_and_duplicates

    chunked = pa.chunked_array([["a", "b", None], ["a", "a", "c"]])
    text = pd.Series(pd.arrays.ArrowStringArray(chunked))
    label = pd.Series(["x", "x", "x", "y", "x", "x"])
    alive = np.array([True, True, False, True, True, True])
    conflicting, duplicate = conflicts_and_duplicates(text, label, alive)
    assert conflicting.tolist() == [True, False, False, True, True, False]
    assert duplicate.tolist() == [False, False, False, False, True, False]


def test_texts_of_only_invisible_characters_are_empty_text():
    raw = pd.DataFrame(
        {
            "row_id": range(5),
            "text": ["\u200b\u200b", "\ufeff", "\u200d \u2060", "fine text", "other text"],
            "label": ["a", "b", "a", "a", "b"],
            "problem": [None] * 5,
        }
    )
    kept, quarantine = clean_frame(raw, DataConfig(), "classification")
    assert kept["text"].tolist() == ["fine text", "other text"]
    assert quarantine["reason"].tolist() == ["empty_text"] * 3


def test_more_classes_than_supported_is_an_error():
    from task_types.classification import MAX_CLASSES

    kept = pd.DataFrame(
        {
            "row_id": range(MAX_CLASSES + 1),
            "text": [f"t{i}" for i in range(MAX_CLASSES + 1)],
            "label": [f"l{i}" for i in range(MAX_CLASSES + 1)],
        }
    )
    with pytest.raises(
        DataError, match=f"{MAX_CLASSES + 1} classes in the data; at most {MAX_CLASSES} are supported: check data.label_column"
    ):
        check_usable(kept, kept.iloc[:0].assign(reason=[]), DataConfig(), "classification")
