import numpy as np
import pandas as pd
import pytest

from schemas.config import DataConfig
from schemas.errors import DataError
from task_types import get_task_type
from task_types.regression import regression_metrics
from tasks.clean import clean_frame

REG = get_task_type("regression")


def test_every_quarantine_reason_and_the_rows_add_up():
    raw = pd.DataFrame({"row_id": range(6), "text": list("abcdef"), "label": ["1.5", "-2", "great", "nan", "inf", None]})
    kept, quarantine = clean_frame(raw, DataConfig(), "regression")
    assert dict(zip(quarantine["row_id"], quarantine["reason"])) == {
        2: "non_numeric_target",
        3: "non_finite_target",
        4: "non_finite_target",
        5: "null_label",
    }
    assert kept["label"].astype(float).tolist() == [1.5, -2.0]
    assert len(kept) + len(quarantine) == len(raw)


def test_scaling_round_trip_and_outputs_in_the_data_units():
    labels = pd.Series(["1.0", "3.0", "5.0"])
    spec = REG.target_spec(labels, labels, DataConfig())
    assert spec["mean"] == pytest.approx(3.0) and spec["std"] == pytest.approx(np.std([1, 3, 5]))
    encoded = REG.encode(labels, spec)
    assert np.mean(encoded) == pytest.approx(0.0) and np.std(encoded) == pytest.approx(1.0)
    assert REG.decode_truth(encoded, spec) == pytest.approx([1.0, 3.0, 5.0])
    logits = np.array(encoded, dtype=np.float32)[:, None]
    assert REG.outputs(logits, spec) == pytest.approx([1.0, 3.0, 5.0], abs=1e-5)
    assert REG.predict_columns(REG.outputs(logits, spec), spec, {})["predicted_value"] == pytest.approx([1.0, 3.0, 5.0], abs=1e-5)


def test_metrics_against_hand_computed_values():
    m = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 6.0])
    assert m["rmse"] == pytest.approx(1.0)  # sqrt(4/4)
    assert m["mae"] == pytest.approx(0.5)
    assert m["r2"] == pytest.approx(1 - 4 / 5)
    assert m["spearman"] == pytest.approx(1.0)  # same order
    assert m["pearson"] < 1.0
    assert np.isnan(regression_metrics([1.0, 2.0], [3.0, 3.0])["spearman"])


def test_quantile_bins_stratify_and_small_bins_merge():
    labels = pd.Series([str(v) for v in range(100)])
    keys = REG.strata(labels)
    assert keys.nunique() == 10 and keys.value_counts().min() == 10
    assert REG.strata(pd.Series(["1", "2", "3", "4"])).nunique() == 1


def test_a_constant_target_is_refused():
    with pytest.raises(DataError, match="the target is constant"):
        REG.check_usable(pd.Series(["2.0", "2.0", "2.0"]), DataConfig())


def test_each_task_types_baseline_scores_validation_and_test():
    from tasks.baseline import baseline_metrics

    words = ["awful", "dull", "fine", "good", "superb"]
    frame = pd.DataFrame({"text": [f"{words[i % 5]} film {i}" for i in range(100)], "label": [repr(float(i % 5)) for i in range(100)]})
    parts = {"train": frame.iloc[:60], "validation": frame.iloc[60:80], "test": frame.iloc[80:]}
    spec = REG.target_spec(frame["label"], parts["train"]["label"], DataConfig())
    metrics = baseline_metrics("regression", parts, spec)
    assert set(metrics) == {"validation", "test"} and metrics["test"]["spearman"] > 0.9  # the word gives the score away
    classes = frame.assign(label=[words[i % 5] for i in range(100)])
    parts = {"train": classes.iloc[:60], "validation": classes.iloc[60:80], "test": classes.iloc[80:]}
    result = baseline_metrics("classification", parts, {"labels": sorted(words)})
    assert result["test"]["accuracy"] == 1.0
