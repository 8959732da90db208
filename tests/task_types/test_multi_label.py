import json

import numpy as np
import pandas as pd
import pytest

from schemas.config import DataConfig
from schemas.errors import DataError
from task_types import get_task_type
from task_types.multi_label import indicator_set, multi_label_metrics, parse_label_set, tune_thresholds
from tasks.clean import clean_frame

ML = get_task_type("multi_label")


def test_label_sets_are_json_lists_or_delimited_strings_and_nothing_else():
    assert parse_label_set('["b", "a"]', None) == ["b", "a"]
    assert parse_label_set("[]", None) == []
    assert parse_label_set("food; water ;", ";") == ["food", "water"]
    assert parse_label_set("food", ";") == ["food"]  # one label, delimited
    assert parse_label_set('["b", 1]', None) == ["b", "1"]  # names may be numbers
    # without a separator a cell must be a JSON list of names (the third audit: these became label names)
    for malformed in ("food", "not a list", '["neg"', '[1, {"a": 2}]', '["a", ["nested"]]', "[not json", '["a", null]', "[true]"):
        assert parse_label_set(malformed, None) is None, malformed


def test_indicator_values_strict_and_positive():
    assert indicator_set(json.dumps({"a": "1", "b": "0"}), False) == (["a"], None)
    assert indicator_set(json.dumps({"a": "2", "b": "0"}), False) == (None, "a")
    assert indicator_set(json.dumps({"a": "2", "b": "0.5"}), True) == (["a", "b"], None)
    assert indicator_set(json.dumps({"a": "-1"}), True) == (None, "a")
    assert indicator_set(json.dumps({"a": None}), True) == (None, "a")


def test_every_quarantine_reason_and_the_rows_add_up():
    raw = pd.DataFrame(
        {
            "row_id": range(6),
            "text": ["t0", "t1", "t2", "t3", "t4", "t5"],
            "label": [
                '{"a": "1", "b": "0"}',
                '{"a": "2", "b": "0"}',
                '{"a": "x", "b": "1"}',
                '{"a": "0", "b": "0"}',
                None,
                '{"a": "1", "b": "1"}',
            ],
        }
    )
    kept, quarantine = clean_frame(raw, DataConfig(label_columns=["a", "b"]), "multi_label")
    assert dict(zip(quarantine["row_id"], quarantine["reason"])) == {1: "bad_indicator_value", 2: "bad_indicator_value", 4: "null_label"}
    assert kept["label"].tolist() == ['["a"]', "[]", '["a", "b"]']  # an empty set is a valid target
    assert len(kept) + len(quarantine) == len(raw)
    lists = pd.DataFrame({"row_id": range(3), "text": ["x", "y", "z"], "label": ['["a"]', '["zz"]', "[oops"]})
    kept, quarantine = clean_frame(lists, DataConfig(labels=["a", "b"]), "multi_label")
    assert dict(zip(quarantine["row_id"], quarantine["reason"])) == {1: "label_not_in_labels", 2: "malformed_label_list"}


def test_positive_option_reads_any_positive_number_as_on():
    raw = pd.DataFrame({"row_id": [0], "text": ["t"], "label": ['{"a": "2", "b": "0"}']})
    kept, _ = clean_frame(raw, DataConfig(label_columns=["a", "b"], indicator_values="positive"), "multi_label")
    assert kept["label"].tolist() == ['["a"]']


def test_encoding_spec_strata_and_labels_never_positive_in_training():
    labels = pd.Series(['["a", "b"]', '["a"]', "[]", '["b", "c"]'])
    spec = ML.target_spec(labels, labels.iloc[:3], DataConfig())
    assert spec == {"labels": ["a", "b", "c"], "no_train_positives": ["c"]}
    assert ML.encode(labels, spec) == [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    # each row keyed by its rarest label (a: 2, b: 2, c: 1), empty sets together
    assert ML.strata(labels).tolist() == ["a", "a", "", "c"]
    assert ML.target_summary(labels, spec) == {"per_class": {"a": 2, "b": 2, "c": 1}, "empty_label_sets": 1}
    with pytest.raises(DataError, match="no clean row has any label"):
        ML.check_usable(pd.Series(["[]", "[]"]), DataConfig())


def test_metrics_against_hand_computed_values():
    truth = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    proba = np.array([[0.9, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.8]])
    m = multi_label_metrics(truth, proba, [0.5, 0.5], ["a", "b"])
    # predicted: [1,0] [1,0] [0,1] [0,1]: TP=3, FP=1, FN=1 -> micro F1 = 6/8
    assert m["f1_micro"] == pytest.approx(0.75)
    assert m["subset_accuracy"] == pytest.approx(0.5)
    assert m["hamming_loss"] == pytest.approx(2 / 8)
    assert m["per_label"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2, "threshold": 0.5}
    assert m["per_label"]["b"]["precision"] == pytest.approx(0.5)


def test_thresholds_tuned_per_label_with_a_global_fallback_for_rare_labels():
    rng = np.random.default_rng(0)
    n = 200
    truth = np.zeros((n, 2), dtype=int)
    truth[:100, 0] = 1
    truth[:3, 1] = 1  # label 1 has 3 validation positives: too few for its own threshold
    proba = np.zeros((n, 2))
    proba[:, 0] = np.where(truth[:, 0] == 1, rng.uniform(0.25, 0.35, n), rng.uniform(0.0, 0.2, n))  # separable at ~0.2
    proba[:, 1] = rng.uniform(0, 0.1, n)
    decision = tune_thresholds(truth, proba)
    assert decision["own_threshold"] == [True, False]
    assert 0.2 <= decision["thresholds"][0] <= 0.25
    assert decision["thresholds"][1] == decision["global_threshold"]
    tuned = multi_label_metrics(truth[:, :1], proba[:, :1], decision["thresholds"][:1], ["a"])
    fixed = multi_label_metrics(truth[:, :1], proba[:, :1], [0.5], ["a"])
    assert tuned["f1_micro"] == 1.0 and fixed["f1_micro"] == 0.0


def test_predict_columns_apply_each_labels_threshold():
    spec = {"labels": ["a", "b"]}
    columns = ML.predict_columns(np.array([[0.3, 0.3], [0.1, 0.9]]), spec, {"thresholds": [0.25, 0.5]})
    assert columns["predicted_labels"] == ['["a"]', '["b"]']
    assert columns["proba_b"] == pytest.approx([0.3, 0.9])
