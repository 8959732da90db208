import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from task_types.classification import (
    classification_metrics,
    expected_calibration_error,
    plot_confusion,
    ranking_metrics,
    write_split_report,
)


def test_metrics_against_hand_computed_values():
    metrics = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["neg", "pos"])
    assert metrics["accuracy"] == 0.75
    # neg: p=1, r=.5, f1=2/3; pos: p=2/3, r=1, f1=.8
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert metrics["per_class"]["neg"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert metrics["confusion_matrix"] == [[1, 1], [0, 2]]


def test_metrics_with_a_class_never_predicted():
    metrics = classification_metrics([0, 1, 2], [0, 0, 0], ["a", "b", "c"])
    assert metrics["per_class"]["b"]["recall"] == 0.0
    assert metrics["f1_macro"] < metrics["accuracy"] + 1e-9


def test_confusion_png(tmp_path):
    path = tmp_path / "cm.png"
    plot_confusion([[3, 1], [0, 4]], ["neg", "pos"], "validation", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    # 10 rows at confidence 0.8, 8 of them right: calibrated
    proba = np.array([[0.2, 0.8]] * 10)
    truth = np.array([1] * 8 + [0] * 2)
    assert expected_calibration_error(truth, proba) == pytest.approx(0.0)
    # confidence 0.99 but only half right: gap 0.49
    proba = np.array([[0.01, 0.99]] * 10)
    assert expected_calibration_error(np.array([1, 0] * 5), proba) == pytest.approx(0.49)


def test_ranking_metrics_binary_and_one_vs_rest():
    perfect = ranking_metrics([0, 0, 1, 1], np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]]))
    assert perfect == {"roc_auc": 1.0, "pr_auc": 1.0}
    inverted = ranking_metrics([0, 0, 1, 1], np.array([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.8, 0.2]]))
    assert inverted["roc_auc"] == 0.0
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8]])
    assert ranking_metrics([0, 1, 2, 2], proba)["roc_auc"] == 1.0
    # class 1 never occurs: no curve for it, the average is over the others
    assert ranking_metrics([0, 0, 2, 2], proba)["roc_auc"] == pytest.approx(
        np.mean([roc_auc_score([1, 1, 0, 0], proba[:, 0]), roc_auc_score([0, 0, 1, 1], proba[:, 2])])
    )


def test_split_report_writes_every_plot_and_metric(tmp_path):
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1, 2], 10)
    proba = rng.dirichlet([1, 1, 1], size=30)
    proba[np.arange(30), truth] += 1.0
    proba /= proba.sum(axis=1, keepdims=True)
    metrics = write_split_report(truth, proba, ["a", "b", "c"], "validation", tmp_path)
    assert {"accuracy", "f1_macro", "f1_weighted", "roc_auc", "pr_auc", "ece", "per_class", "confusion_matrix"} <= set(metrics)
    assert metrics["per_class"]["a"]["support"] == 10
    names = {p.name for p in tmp_path.glob("*.png")}
    assert names == {"confusion_validation.png", "confusion_validation_normalized.png", "roc_validation.png", "pr_validation.png"}
    assert all((tmp_path / n).read_bytes()[:4] == b"\x89PNG" for n in names)


def _png_size(path):
    import struct

    return struct.unpack(">II", path.read_bytes()[16:24])


def test_plots_stay_the_same_size_however_many_classes(tmp_path):
    from task_types.classification import PLOT_MAX_INCHES

    n_classes, rng = 120, np.random.default_rng(0)
    truth = np.repeat(np.arange(n_classes), 5)
    proba = rng.dirichlet(np.ones(n_classes), size=len(truth)).astype(np.float32)
    metrics = write_split_report(truth, proba, [f"class-{i}" for i in range(n_classes)], "validation", tmp_path)
    assert len(metrics["per_class"]) == n_classes
    limit = PLOT_MAX_INCHES * 110
    for png in tmp_path.glob("*.png"):
        width, height = _png_size(png)
        assert width <= limit and height <= limit, (png.name, width, height)
