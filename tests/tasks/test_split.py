import pandas as pd
import pytest

from schemas.config import DataConfig
from schemas.errors import DataError
from task_types import get_task_type
from tasks.split import split_frame, stratified_sample


def _frame(counts: dict) -> pd.DataFrame:
    rows = [(label, i) for label, n in counts.items() for i in range(n)]
    return pd.DataFrame({"row_id": range(len(rows)), "text": [f"{label} {i}" for label, i in rows], "label": [label for label, _ in rows]})


def test_split_is_stratified_complete_and_seeded():
    frame = _frame({"a": 100, "b": 50, "c": 10})
    parts = split_frame(frame, 0.1, 0.2, seed=1)
    assert sum(len(p) for p in parts.values()) == len(frame)
    assert set().union(*(set(p["row_id"]) for p in parts.values())) == set(frame["row_id"])
    assert parts["validation"]["label"].value_counts().to_dict() == {"a": 10, "b": 5, "c": 1}
    assert parts["test"]["label"].value_counts().to_dict() == {"a": 20, "b": 10, "c": 2}
    again = split_frame(frame, 0.1, 0.2, seed=1)
    other = split_frame(frame, 0.1, 0.2, seed=2)
    assert again["test"]["row_id"].tolist() == parts["test"]["row_id"].tolist()
    assert other["test"]["row_id"].tolist() != parts["test"]["row_id"].tolist()


def test_class_too_small_says_how_many_it_needs():
    with pytest.raises(DataError, match=r"'b' has 2; each class needs at least 3"):
        split_frame(_frame({"a": 30, "b": 2}), 0.1, 0.1, seed=0)


def test_sample_keeps_balance_and_every_class():
    frame = _frame({"a": 900, "b": 100, "c": 4})
    sample = stratified_sample(frame, 100, seed=0)
    counts = sample["label"].value_counts().to_dict()
    # c keeps its minimum of 3; the 3 rows that costs come off the largest class, so the sample is exactly max_rows
    assert counts["a"] == 87 and counts["b"] == 10 and counts["c"] == 3 and len(sample) == 100
    assert stratified_sample(frame, None, 0) is frame


def test_label_order_is_sorted_unless_fixed():
    frame = _frame({"z": 3, "a": 3})
    classification = get_task_type("classification")
    assert classification.target_spec(frame["label"], frame["label"], DataConfig())["labels"] == ["a", "z"]
    assert classification.target_spec(frame["label"], frame["label"], DataConfig(labels=["z", "a"]))["labels"] == ["z", "a"]


def test_the_datas_own_split_is_used_and_a_missing_part_is_refused():
    from tasks.split import given_split

    frame = _frame({"a": 6, "b": 6}).assign(split=["train", "validation", "test"] * 4)
    parts = given_split(frame, "part")
    assert {name: len(p) for name, p in parts.items()} == {"train": 4, "validation": 4, "test": 4}
    assert "split" not in parts["train"].columns
    with pytest.raises(DataError, match="gives no validation or test rows"):
        given_split(frame.assign(split="train"), "part")


def test_regression_splits_are_stratified_by_quantile_bins():
    from tasks.split import strata_of

    frame = pd.DataFrame({"row_id": range(200), "text": [f"t{i}" for i in range(200)], "label": [str(float(i)) for i in range(200)]})
    parts = split_frame(frame, 0.1, 0.1, seed=0, keys=strata_of(frame, get_task_type("regression")))
    # every tenth of the range lands in validation: its values spread over the whole range
    values = sorted(parts["validation"]["label"].astype(float))
    assert len(values) == 20 and values[0] < 20 and values[-1] >= 180


def test_sample_never_exceeds_max_rows_with_many_classes():
    frame = _frame({f"c{i:02d}": 7 + i % 5 for i in range(40)})
    sample = stratified_sample(frame, 130, seed=0)
    assert len(sample) == 130
    assert sample["label"].value_counts().min() >= 3 and sample["label"].nunique() == 40


def test_max_rows_too_small_for_the_classes_says_the_number_needed():
    with pytest.raises(DataError, match=r"data.max_rows=20 is too small for 10 classes: .* set data.max_rows >= 30"):
        stratified_sample(_frame({f"c{i}": 6 for i in range(10)}), 20, seed=0)
